import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { renderCrd } from '../../scripts/generate-crds.ts';
import { customResourceDefinitions } from '../../src/api/index.ts';

const CRD_DIR = join(import.meta.dirname, '..', '..', 'crds');

interface Version {
  name: string;
  subresources: { status?: object };
  additionalPrinterColumns: { name: string; jsonPath: string }[];
  schema: { openAPIV3Schema: Record<string, unknown> };
}

function versionOf(crd: Record<string, unknown>): Version {
  const spec = crd['spec'] as { versions: Version[] };
  const [version] = spec.versions;
  assert.ok(version !== undefined);
  return version;
}

// Every field a person can `kubectl explain` must say what it is for.
function undescribed(schema: Record<string, unknown>, path: string): string[] {
  const missing = typeof schema['description'] === 'string' && schema['description'] !== '' ? [] : [path];
  const children: [string, unknown][] = [];
  const properties = schema['properties'];
  if (typeof properties === 'object' && properties !== null) {
    for (const [key, value] of Object.entries(properties)) {
      if (key !== 'metadata') children.push([`${path}.${key}`, value]);
    }
  }
  if (schema['items'] !== undefined) children.push([`${path}[]`, schema['items']]);
  if (schema['additionalProperties'] !== undefined) children.push([`${path}{}`, schema['additionalProperties']]);
  return [...missing, ...children.flatMap(([p, s]) => undescribed(s as Record<string, unknown>, p))];
}

describe('crds/', () => {
  const crds = customResourceDefinitions();

  test('holds exactly the generated CRDs, byte for byte (regenerate: node scripts/generate-crds.ts)', () => {
    assert.deepEqual(
      readdirSync(CRD_DIR).sort(),
      crds.map((c) => c.fileName).sort(),
    );
    for (const { fileName, crd } of crds) {
      assert.equal(readFileSync(join(CRD_DIR, fileName), 'utf8'), renderCrd(crd), fileName);
    }
  });

  for (const { fileName, crd } of crds) {
    test(`${fileName} describes every field`, () => {
      assert.deepEqual(undescribed(versionOf(crd).schema.openAPIV3Schema, ''), []);
    });
  }

  test('names, short names, category, status subresource and printer columns', () => {
    const byName = new Map(crds.map(({ crd }) => [(crd['metadata'] as { name: string }).name, crd]));
    const expected = {
      'databasequeryresources.rowcast.dev': { shortName: 'dqr', columns: ['Ready', 'Rows', 'Clusters', 'Failing', 'Blocked', 'Reason', 'Last Sync', 'Shard', 'Age'] },
      'clustertargets.rowcast.dev': { shortName: 'ct', columns: ['Ready', 'Reachable', 'Version', 'Managed', 'Age'] },
    };
    assert.deepEqual([...byName.keys()].sort(), Object.keys(expected).sort());
    for (const [name, want] of Object.entries(expected)) {
      const crd = byName.get(name);
      assert.ok(crd !== undefined);
      const spec = crd['spec'] as { scope: string; names: { shortNames: string[]; categories: string[] } };
      assert.equal(spec.scope, 'Namespaced');
      assert.deepEqual(spec.names.shortNames, [want.shortName]);
      assert.deepEqual(spec.names.categories, ['rowcast']);
      const version = versionOf(crd);
      assert.equal(version.name, 'v1alpha1');
      assert.deepEqual(version.subresources, { status: {} });
      assert.deepEqual(
        version.additionalPrinterColumns.map((c) => c.name),
        want.columns,
      );
    }
  });
});
