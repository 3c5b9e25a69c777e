import assert from 'node:assert/strict';
import test from 'node:test';
import { parseClusterTarget, type ClusterTarget, type Targets } from '../../src/api/index.ts';
import { identityOf, planCluster, rowClusters, selectTargets, type DesiredObject, type LiveObject } from '../../src/sync/index.ts';

function desired(name: string, rowKey: string, hash: string, apiVersion = 'v1'): DesiredObject {
  return { apiVersion, kind: 'ConfigMap', name, namespace: 'ns', namespaceDefaulted: false, body: {}, hash, document: 0, rowKey };
}

function live(name: string, rowKey: string, hash: string, apiVersion = 'v1'): LiveObject {
  return { apiVersion, kind: 'ConfigMap', name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: '1', hash, rowKey };
}

test('planning sorts desired against live into create, update, unchanged, prune and kept', () => {
  const plan = planCluster(
    [desired('a', '1', 'h1'), desired('b', '2', 'new'), desired('c', '3', 'h3')],
    [live('b', '2', 'old'), live('c', '3', 'h3'), live('d', '4', 'h4'), live('e', '5', 'h5')],
    new Set(['5']),
  );
  assert.deepEqual(
    plan.create.map((o) => o.name),
    ['a'],
  );
  assert.deepEqual(
    plan.update.map((o) => o.name),
    ['b'],
  );
  assert.deepEqual(
    plan.unchanged.map((o) => o.name),
    ['c'],
  );
  assert.deepEqual(
    plan.prune.map((o) => o.name),
    ['d'],
    'a row that is gone is pruned',
  );
  assert.deepEqual(
    plan.kept.map((o) => o.name),
    ['e'],
    'a row that failed keeps its object',
  );
});

test('a new API version of the same kind updates the object instead of pruning and recreating it', () => {
  const plan = planCluster([desired('a', '1', 'h2', 'example.com/v1')], [live('a', '1', 'h1', 'example.com/v1beta1')], new Set());
  assert.equal(plan.update.length, 1);
  assert.equal(plan.prune.length, 0);
  assert.equal(identityOf(desired('a', '1', 'h', 'apps/v1')), 'apps/ConfigMap/ns/a');
});

function target(name: string, namespace: string, spec: Record<string, unknown>, labels: Record<string, string> = {}): ClusterTarget {
  const parsed = parseClusterTarget({
    apiVersion: 'rowcast.dev/v1alpha1',
    kind: 'ClusterTarget',
    metadata: { name, namespace, labels },
    spec: { kubeconfigSecretRef: { name: 'k', key: 'kubeconfig' }, ...spec },
  });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.value;
}

const targets = (t: Partial<Targets>): Targets => ({ clusters: [], clusterSelector: undefined, rowClusterColumn: undefined, ...t });

test('targets: by name, by selector; a named target that refuses is named, another tenant\'s target a selector matches is not seen', () => {
  const all = [
    target('east', 'team-a', {}, { region: 'east' }),
    target('west', 'team-a', { paused: true }, { region: 'west' }),
    target('shared', 'platform', { allowedSourceNamespaces: ['team-a'] }, { region: 'east' }),
    target('private', 'platform', {}, { region: 'east' }),
  ];
  const byName = selectTargets('team-a', targets({ clusters: [{ namespace: undefined, name: 'east' }, { namespace: 'platform', name: 'private' }, { namespace: undefined, name: 'nope' }] }), all);
  assert.deepEqual(
    byName.selected.map((t) => t.metadata.name),
    ['east'],
  );
  assert.deepEqual(byName.refused.map((r) => r.reason).sort(), ['NotFound', 'SourceNamespaceNotAllowed']);
  assert.match(byName.refused.find((r) => r.reason === 'SourceNamespaceNotAllowed')?.message ?? '', /allowedSourceNamespaces/);

  const bySelector = selectTargets('team-a', targets({ clusterSelector: { matchLabels: { region: 'east' }, matchExpressions: [] } }), all);
  assert.deepEqual(bySelector.selected.map((t) => t.metadata.name).sort(), ['east', 'shared']);
  // Another tenant's target a selector happens to match is not this DQR's to see: skipped, never named in its status.
  assert.deepEqual(bySelector.refused, []);
  const everything = selectTargets('team-a', targets({ clusterSelector: { matchLabels: {}, matchExpressions: [] } }), all);
  assert.ok(!everything.refused.some((r) => r.cluster === 'platform/private'), 'clusterSelector: {} never lists other tenants\' ClusterTargets');
  assert.ok(!everything.selected.some((t) => t.metadata.name === 'private'));

  const paused = selectTargets('team-a', targets({ clusterSelector: { matchLabels: {}, matchExpressions: [{ key: 'region', operator: 'In', values: ['west'] }] } }), all);
  assert.deepEqual(
    paused.refused.map((r) => r.reason),
    ['Paused'],
  );
});

test('a row picks its clusters from a name, namespace/name, a comma-separated list or an array', () => {
  const clusters = [{ key: 'team/east' }, { key: 'team/west' }, { key: 'shared/central' }];
  const pick = (value: unknown): string[] | string => {
    const picked = rowClusters(value, clusters, 'team');
    return picked instanceof Set ? [...picked] : picked.error;
  };
  assert.deepEqual(pick('east, west'), ['team/east', 'team/west']);
  assert.deepEqual(pick(['east']), ['team/east']);
  assert.deepEqual(pick('team/west'), ['team/west'], 'the documented namespace/name form');
  assert.deepEqual(pick(['shared/central', 'east']), ['shared/central', 'team/east']);
  assert.deepEqual(pick(''), [], 'an empty string names no cluster, on purpose');
  assert.deepEqual(pick([]), []);
});

test('a rowClusterColumn value that cannot be read is an error, never "no cluster"', () => {
  const clusters = [{ key: 'team/east' }, { key: 'team/west' }];
  const error = (value: unknown): string => {
    const picked = rowClusters(value, clusters, 'team');
    assert.ok(!(picked instanceof Set), `${JSON.stringify(value)} was read as ${JSON.stringify(picked instanceof Set ? [...picked] : picked)}`);
    return picked.error;
  };
  assert.match(error(null), /NULL/);
  assert.match(error(undefined), /NULL/);
  assert.match(error('north'), /"north".*not one of/);
  assert.match(error('central'), /not one of/, 'a name resolves in the DQR namespace only');
  assert.match(error(42), /number/);
  assert.match(error({ east: true }), /object/);
  assert.match(error(['east', 7]), /item 1 is a number/);
  assert.match(error('{east,west}'), /array cast to text/);
});

test('a cluster given by plain name (rowcast render --cluster) is found by that name', () => {
  assert.deepEqual([...(rowClusters('local', [{ key: 'local' }], 'team') as Set<string>)], ['local']);
});
