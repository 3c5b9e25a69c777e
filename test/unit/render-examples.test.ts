// Every example under examples/ must keep rendering the same objects for
// rows like those of its examples/sql file: the expected bodies in
// test/fixtures/examples-rendered.json were recorded before the escaping of
// `{{...}}` output changed and must not move with it (Rowcast's own labels
// and annotations left out).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { load } from 'js-yaml';
import { parseDatabaseQueryResource } from '../../src/api/index.ts';
import { allowedKindKey, compileTemplate, renderRow, type RenderContext } from '../../src/render/index.ts';

interface Case {
  rows: Record<string, unknown>[];
  clusters: RenderContext['cluster'][];
}

/** pg's types: integer → number, bigint → string, text[] → array. */
const CASES: Record<string, Case> = {
  'app-rollouts': {
    rows: [
      { name: 'checkout', image: 'registry.example.com/checkout:2.4.0', replicas: 3, target_clusters: ['east-1', 'hub'] },
      { name: 'search', image: 'registry.example.com/search:5.1.3', replicas: 2, target_clusters: ['east-1'] },
    ],
    clusters: [{ name: 'east-1', labels: { environment: 'production', region: 'us-east', tier: 'large' } }],
  },
  'tenant-deployments': {
    rows: [
      { slug: 'acme', image_tag: '1.8.2', plan: 'enterprise', replicas: 4 },
      { slug: 'globex', image_tag: '1.8.2', plan: 'team', replicas: 2 },
    ],
    clusters: [
      { name: 'east-1', labels: { environment: 'production', region: 'us-east', tier: 'large' } },
      { name: 'west-2', labels: { environment: 'production', region: 'us-west', tier: 'small' } },
    ],
  },
  'user-configmaps': {
    rows: [
      { id: '1', username: 'ada', email: 'ada@example.com', plan: 'enterprise' },
      { id: '2', username: 'grace', email: 'grace@example.com', plan: 'team' },
      { id: '3', username: "o'neil: the #1 \"fan\"", email: 'o.neil+rowcast@example.com', plan: 'free' },
    ],
    clusters: [{ name: 'hub', labels: {} }],
  },
};

const owner = { hubId: 'hub-1', namespace: 'examples', name: 'example', uid: '00000000-0000-0000-0000-000000000001', target: 'examples/east-1' };

/** The body without Rowcast's own marks: their form is ownership's business, not the template's. */
function unstamped(body: Record<string, unknown>): Record<string, unknown> {
  const own = (map: unknown): [string, unknown][] => Object.entries((map ?? {}) as Record<string, unknown>).filter(([name]) => !name.startsWith('rowcast.dev/'));
  const metadata = Object.fromEntries(
    Object.entries(body.metadata as Record<string, unknown>)
      .map(([key, value]): [string, unknown] => [key, key === 'labels' || key === 'annotations' ? Object.fromEntries(own(value)) : value])
      .filter(([key, value]) => !((key === 'labels' || key === 'annotations') && Object.keys(value as object).length === 0)),
  );
  return { ...body, metadata };
}

export function renderExamples(): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [name, { rows, clusters }] of Object.entries(CASES)) {
    const parsed = parseDatabaseQueryResource(load(readFileSync(new URL(`../../examples/${name}.yaml`, import.meta.url), 'utf8')));
    if (!parsed.ok) throw new Error(`examples/${name}.yaml: ${JSON.stringify(parsed.errors)}`);
    const dqr = parsed.value;
    const template = compileTemplate(dqr.spec.template);
    const bodies: unknown[] = [];
    for (const cluster of clusters) {
      for (const row of rows) {
        const context: RenderContext = {
          row,
          metadata: { name: dqr.metadata.name, namespace: 'examples', labels: {}, annotations: {} },
          cluster,
        };
        const result = renderRow(template, context, {
          rowKey: String(row[dqr.spec.rowKey?.[0] ?? '']),
          defaultNamespace: 'examples',
          owner,
          ...(dqr.spec.allowedKinds === undefined ? {} : { allowedKinds: new Set(dqr.spec.allowedKinds.map(allowedKindKey)) }),
        });
        if (!result.ok) throw new Error(`examples/${name}.yaml: ${result.failure.field}: ${result.failure.message}`);
        bodies.push(...result.objects.map((object) => unstamped(object.body)));
      }
    }
    out[name] = bodies;
  }
  return out;
}

test('every example renders the objects recorded in test/fixtures/examples-rendered.json', () => {
  const expected = JSON.parse(readFileSync(new URL('../fixtures/examples-rendered.json', import.meta.url), 'utf8')) as unknown;
  assert.deepEqual(renderExamples(), expected);
});
