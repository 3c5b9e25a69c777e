import assert from 'node:assert/strict';
import test from 'node:test';
import type { PruneLimit } from '../../src/api/index.ts';
import { combinePending, confirmedBy, decidePrune, pruneBudget, type LiveObject, type PruneClusterInput, type PruneDecisionInput } from '../../src/sync/index.ts';

const half: PruneLimit = { kind: 'percent', percent: 50 };

function objects(cluster: string, count: number, from = 0): LiveObject[] {
  return Array.from({ length: count }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    namespace: 'ns',
    name: `cm-${from + i}`,
    uid: `${cluster}-uid-${from + i}`,
    resourceVersion: '1',
    hash: 'h',
    rowKey: String(from + i),
  }));
}

function cluster(name: string, managedBefore: number, candidates: number, failed = false): PruneClusterInput {
  return { cluster: name, managedBefore, candidates: objects(name, candidates), failed };
}

function input(clusters: PruneClusterInput[], extra: Partial<PruneDecisionInput> = {}): PruneDecisionInput {
  return { prune: true, limit: half, unkeyedRows: 0, clusters, confirmation: undefined, ...extra };
}

const prunedCount = (d: ReturnType<typeof decidePrune>): number => d.prune.reduce((n, p) => n + p.objects.length, 0);

test('re-keying every row is over the limit: the share is of what was managed before the sync, not of what it just created', () => {
  // 100 rows re-keyed: 100 new objects applied and 100 originals as candidates on each of two clusters.
  const decision = decidePrune(input([cluster('east', 100, 100), cluster('west', 100, 100)]));
  assert.equal(prunedCount(decision), 0);
  assert.deepEqual([decision.pending?.wanted, decision.pending?.allowed, decision.pending?.managed], [200, 100, 200]);
  assert.match(decision.pending?.id ?? '', /^[0-9a-f]{16}$/);

  // The next sync lists the 100 new objects as managed too: measured against them, 200 of 400 would pass.
  const next = decidePrune(input([cluster('east', 200, 100), cluster('west', 200, 100)], { baseline: decision.pending?.clusters }));
  assert.equal(prunedCount(next), 0);
  assert.equal(next.pending?.id, decision.pending?.id);
  assert.deepEqual(next.pending?.clusters, [
    { name: 'east', managed: 100 },
    { name: 'west', managed: 100 },
  ]);

  // The rows come back under their old keys: nothing to prune, the pending prune is gone.
  const back = decidePrune(input([cluster('east', 200, 0), cluster('west', 200, 0)], { baseline: decision.pending?.clusters }));
  assert.equal(back.pending, undefined);
  assert.equal(back.evaluated, true);
});

test('a prune within the limit goes through on every prunable cluster', () => {
  const decision = decidePrune(input([cluster('east', 10, 3), cluster('west', 10, 2)]));
  assert.equal(decision.pending, undefined);
  assert.equal(decision.evaluated, true);
  assert.deepEqual(
    decision.prune.map((p) => [p.cluster, p.objects.length]),
    [
      ['east', 3],
      ['west', 2],
    ],
  );
});

test('a failed cluster is neither pruned nor part of the denominator', () => {
  // west failed: its 100 objects must not make east's 6 of 10 look small.
  const decision = decidePrune(input([cluster('east', 10, 6), cluster('west', 100, 0, true)]));
  assert.equal(prunedCount(decision), 0);
  assert.deepEqual({ wanted: decision.pending?.wanted, allowed: decision.pending?.allowed, managed: decision.pending?.managed }, { wanted: 6, allowed: 5, managed: 10 });

  const within = decidePrune(input([cluster('east', 10, 2), cluster('west', 100, 7, true)]));
  assert.deepEqual(
    within.prune.map((p) => p.cluster),
    ['east'],
    'candidates of a failed cluster are never pruned',
  );
});

test('the per-cluster cap applies the same rule to each cluster on its own', () => {
  // 60 of east's 100 is over 50%, though 60 of 300 across three clusters is not.
  const decision = decidePrune(input([cluster('a', 100, 60), cluster('b', 100, 0), cluster('c', 100, 0)]));
  assert.equal(prunedCount(decision), 0);
  assert.equal(decision.pending?.cluster, 'a');
  assert.deepEqual([decision.pending.wanted, decision.pending.allowed, decision.pending.managed], [60, 50, 100]);
});

test('a count limit caps the whole DQR and each cluster', () => {
  const count: PruneLimit = { kind: 'count', count: 3 };
  assert.equal(decidePrune(input([cluster('a', 10, 2), cluster('b', 10, 1)], { limit: count })).pending, undefined);
  assert.equal(decidePrune(input([cluster('a', 10, 2), cluster('b', 10, 2)], { limit: count })).pending?.wanted, 4);
});

test('a confirmation releases exactly the blocked prune whose id it names', () => {
  const clusters = [cluster('east', 4, 3), cluster('west', 4, 3)];
  const blocked = decidePrune(input(clusters));
  const id = blocked.pending?.id;
  assert.ok(id !== undefined);
  assert.equal(decidePrune(input(clusters)).pending?.id, id, 'the same prune keeps its id from sync to sync');

  const wrong = decidePrune(input(clusters, { confirmation: '1' }));
  assert.equal(prunedCount(wrong), 0, 'a generation or any other value is no confirmation');
  assert.equal(wrong.confirmed, false);

  const confirmed = decidePrune(input(clusters, { confirmation: id }));
  assert.equal(confirmed.pending, undefined);
  assert.equal(confirmed.confirmed, true);
  assert.equal(prunedCount(confirmed), 6);

  // One more row gone since the confirmation: another prune, another id, blocked again.
  const grown = decidePrune(input([cluster('east', 4, 4), cluster('west', 4, 3)], { confirmation: id }));
  assert.equal(prunedCount(grown), 0);
  assert.notEqual(grown.pending?.id, id);
});

test('a confirmation is not used by a prune within the limit', () => {
  const decision = decidePrune(input([cluster('east', 10, 1)], { confirmation: 'abc' }));
  assert.equal(decision.confirmed, false);
  assert.equal(prunedCount(decision), 1);
});

test('unkeyed rows or spec.prune false prune nothing anywhere, without a pending prune', () => {
  for (const extra of [{ unkeyedRows: 1 }, { prune: false }]) {
    const decision = decidePrune(input([cluster('east', 10, 1)], extra));
    assert.equal(prunedCount(decision), 0);
    assert.equal(decision.pending, undefined);
    assert.equal(decision.evaluated, false);
  }
});

test('nothing to prune is within any limit, even 0', () => {
  const decision = decidePrune(input([cluster('east', 10, 0)], { limit: { kind: 'count', count: 0 } }));
  assert.equal(decision.pending, undefined);
  assert.equal(decision.evaluated, true);
  assert.equal(decidePrune(input([cluster('east', 10, 1)], { limit: { kind: 'count', count: 0 } })).pending?.wanted, 1);
});

test('members decided one at a time: a count limit still bounds the DQR through the budget they share', () => {
  const count: PruneLimit = { kind: 'count', count: 3 };
  const budget = pruneBudget(count, [10, 10]);
  assert.deepEqual(budget, { allowed: 3, managed: 20 });
  assert.equal(pruneBudget(half, [10, 10]), undefined, "a percentage is met by every member keeping to its own share");
  const first = decidePrune(input([cluster('a', 10, 2)], { limit: count, allowance: budget }));
  assert.equal(prunedCount(first), 2);
  const second = decidePrune(input([cluster('b', 10, 2)], { limit: count, allowance: { allowed: 1, managed: 20 } }));
  assert.equal(prunedCount(second), 0, 'within its own cap, over what the DQR has left this round');
  assert.deepEqual([second.pending?.wanted, second.pending?.allowed, second.pending?.managed, second.pending?.cluster], [2, 1, 20, undefined], "the figures are the DQR's, not one cluster's");
});

test('several members blocked are one pending prune; its id releases each of them, and only theirs', () => {
  const east = decidePrune(input([cluster('east', 4, 3)])).pending;
  const west = decidePrune(input([cluster('west', 4, 3)])).pending;
  assert.ok(east !== undefined && west !== undefined);
  assert.equal(east.cluster, 'east', 'a member blocked alone is named');
  assert.equal(combinePending([east]), east);
  assert.equal(combinePending([]), undefined);
  const both = combinePending([east, west]);
  assert.ok(both !== undefined);
  assert.deepEqual([both.wanted, both.allowed, both.managed, both.cluster], [6, 4, 8, undefined]);
  assert.equal(combinePending([west, east])?.id, both.id, 'the same prunes give the same id in any order');
  assert.deepEqual([...confirmedBy(both.id, [east, west])].sort(), [east.id, west.id].sort());
  assert.deepEqual([...confirmedBy(east.id, [east, west])], [east.id], "one member's own id releases that member only");
  assert.equal(confirmedBy(both.id, [east]).size, 0, 'a combined id naming prunes that changed releases nothing');
  assert.equal(confirmedBy(undefined, [east, west]).size, 0);
});
