import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { renderApiDocs } from '../../scripts/generate-api-docs.ts';
import { customResourceDefinitions } from '../../src/api/index.ts';

const API_MD = join(import.meta.dirname, '..', '..', 'docs', 'api.md');

/** Every field path a person could set or read, as the generator writes them. */
function fieldPaths(schema: Record<string, unknown>, path: string): string[] {
  const out: string[] = [];
  const properties = schema['properties'];
  if (typeof properties === 'object' && properties !== null) {
    for (const [key, child] of Object.entries(properties as Record<string, Record<string, unknown>>)) {
      out.push(`${path}.${key}`, ...fieldPaths(child, `${path}.${key}`));
    }
  }
  const items = schema['items'] as Record<string, unknown> | undefined;
  if (items !== undefined) out.push(...fieldPaths(items, `${path}[]`));
  return out;
}

function openApi(crd: Record<string, unknown>): Record<string, Record<string, unknown>> {
  const spec = crd['spec'] as { versions: { schema: { openAPIV3Schema: { properties: Record<string, Record<string, unknown>> } } }[] };
  const [version] = spec.versions;
  assert.ok(version !== undefined);
  return version.schema.openAPIV3Schema.properties;
}

describe('docs/api.md', () => {
  test('is what scripts/generate-api-docs.ts writes now (regenerate: node scripts/generate-api-docs.ts)', () => {
    const committed = readFileSync(API_MD, 'utf8');
    const generated = renderApiDocs();
    if (committed === generated) return;
    // The whole-file diff of two long strings is unreadable; name the first line that differs.
    const a = committed.split('\n');
    const b = generated.split('\n');
    const line = a.findIndex((text, i) => text !== b[i]);
    const at = line < 0 ? a.length : line;
    assert.fail(
      `docs/api.md is out of date from line ${at + 1}; run node scripts/generate-api-docs.ts\n` +
        `committed: ${a[at] ?? '(end of file)'}\ngenerated: ${b[at] ?? '(end of file)'}`,
    );
  });

  test('has a row for every spec and status field of every kind', () => {
    const doc = renderApiDocs();
    for (const { crd } of customResourceDefinitions()) {
      const properties = openApi(crd);
      for (const part of ['spec', 'status']) {
        const schema = properties[part];
        assert.ok(schema !== undefined);
        const missing = fieldPaths(schema, part).filter((p) => !doc.includes(`| \`${p}\` |`));
        assert.deepEqual(missing, [], `${part} fields missing from docs/api.md`);
      }
    }
  });

  test('every table row has as many cells as its header (pipes in patterns and text are escaped)', () => {
    let columns = 0;
    for (const line of renderApiDocs().split('\n')) {
      if (!line.startsWith('|')) {
        columns = 0;
        continue;
      }
      const cells = line.split(/(?<!\\)\|/).length - 2;
      if (columns === 0) columns = cells;
      assert.equal(cells, columns, line);
    }
  });

  test('follows the schemas: a changed description, default or rule shows up', () => {
    // Guards against a renderer that ignores its input and a test that compares a file with itself.
    const crds = customResourceDefinitions();
    const changed = crds.map(({ fileName, crd }) => ({ fileName, crd: structuredClone(crd) }));
    const [first] = changed;
    assert.ok(first !== undefined);
    const spec = openApi(first.crd)['spec'] as { description: string; properties: Record<string, { default?: unknown; 'x-kubernetes-validations'?: { message: string }[] }> };
    spec.description = 'A description nobody wrote.';
    const pollInterval = spec.properties['pollInterval'];
    assert.ok(pollInterval?.['x-kubernetes-validations']?.[0] !== undefined);
    pollInterval.default = '42s';
    pollInterval['x-kubernetes-validations'][0].message = 'a rule message nobody wrote';
    const doc = renderApiDocs(changed);
    assert.notEqual(doc, renderApiDocs(crds));
    assert.match(doc, /A description nobody wrote\./);
    assert.match(doc, /\| `spec\.pollInterval` \| `string` \| `42s` \|.*rule: a rule message nobody wrote/);
  });
});
