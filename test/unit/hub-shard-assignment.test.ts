import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { rateLimitShare } from '../../src/hub/cluster-target-reconciler.ts';
import { planAssignments, rendezvousShard, type AssignedDqr, type ShardAction } from '../../src/hub/shard-assignment.ts';

const keys = Array.from({ length: 30 }, (_, i) => `team-a/dqr-${i}`);

/** Applies a plan as the sharder and the owners would: drains are handed over and then assigned. */
function settle(dqrs: AssignedDqr[], ready: string[], fencing = new Set<string>()): { dqrs: AssignedDqr[]; moves: number } {
  let moves = 0;
  let current = dqrs;
  for (let round = 0; round < 5; round++) {
    const actions = planAssignments(current, ready, fencing);
    if (actions.length === 0) return { dqrs: current, moves };
    const byKey = new Map<string, ShardAction>(actions.map((a) => [a.key, a]));
    current = current.map((d) => {
      const action = byKey.get(d.key);
      if (action === undefined) return d;
      if (action.kind === 'drain') {
        moves++;
        return { key: d.key, shard: undefined, draining: false };
      }
      if (action.from !== undefined) moves++;
      return { key: d.key, shard: action.shard, draining: false };
    });
  }
  assert.fail('the plan did not settle in five rounds');
}

function split(dqrs: AssignedDqr[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const d of dqrs) counts[d.shard ?? '(none)'] = (counts[d.shard ?? '(none)'] ?? 0) + 1;
  return counts;
}

test('rendezvous hashing: a key keeps its shard when another shard joins, unless it prefers the new one', () => {
  const before = keys.map((k) => rendezvousShard(k, ['a', 'b']));
  const after = keys.map((k) => rendezvousShard(k, ['a', 'b', 'c']));
  for (const [i, shard] of after.entries()) if (shard !== 'c') assert.equal(shard, before[i]);
  assert.equal(rendezvousShard('x/y', []), undefined);
});

test('30 unassigned DQRs on 3 shards: every one assigned, 10 each', () => {
  const { dqrs } = settle(keys.map((key) => ({ key, shard: undefined, draining: false })), ['r1', 'r2', 'r3']);
  assert.deepEqual(split(dqrs), { r1: 10, r2: 10, r3: 10 });
});

test('a third shard joining two: only DQRs over the kept share drain, and only to the new shard', () => {
  const start = settle(keys.map((key) => ({ key, shard: undefined, draining: false })), ['r1', 'r2']).dqrs;
  assert.deepEqual(split(start), { r1: 15, r2: 15 });
  const actions = planAssignments(start, ['r1', 'r2', 'r3'], new Set());
  assert.ok(actions.every((a) => a.kind === 'drain' && a.to === 'r3'), JSON.stringify(actions));
  const { dqrs, moves } = settle(start, ['r1', 'r2', 'r3']);
  assert.equal(moves, 8);
  assert.deepEqual(split(dqrs), { r1: 11, r2: 11, r3: 8 });
});

test('a dead shard: its DQRs are assigned to the others at once, no drain; the others keep theirs', () => {
  const start = settle(keys.map((key) => ({ key, shard: undefined, draining: false })), ['r1', 'r2', 'r3']).dqrs;
  const actions = planAssignments(start, ['r1', 'r2'], new Set());
  assert.equal(actions.length, 10);
  assert.ok(actions.every((a) => a.kind === 'assign' && a.from === 'r3' && a.shard !== 'r3'));
  assert.deepEqual(split(settle(start, ['r1', 'r2']).dqrs), { r1: 15, r2: 15 });
});

test('a shard whose Lease expired but is not taken over yet: its DQRs wait where they are', () => {
  const start = settle(keys.map((key) => ({ key, shard: undefined, draining: false })), ['r1', 'r2', 'r3']).dqrs;
  assert.deepEqual(planAssignments(start, ['r1', 'r2'], new Set(['r3'])), []);
});

test('a draining DQR on a live shard waits for its owner; on a dead one it is assigned', () => {
  const dqrs: AssignedDqr[] = [
    { key: 'a/1', shard: 'r1', draining: true },
    { key: 'a/2', shard: 'gone', draining: true },
  ];
  const actions = planAssignments(dqrs, ['r1', 'r2'], new Set());
  assert.deepEqual(
    actions.map((a) => [a.kind, a.key]),
    [['assign', 'a/2']],
  );
});

test('no ready shard: nothing is assigned', () => {
  assert.deepEqual(planAssignments([{ key: 'a/1', shard: undefined, draining: false }], [], new Set()), []);
});

test("a member's rate limit is shared among the ring's shards: the parts add up to the budget, never below one call", () => {
  assert.deepEqual(rateLimitShare({ qps: 300, burst: 300, concurrency: 9 }, 3), { qps: 100, burst: 100, concurrency: 3 });
  assert.deepEqual(rateLimitShare({ qps: 50, burst: 100, concurrency: 8 }, 1), { qps: 50, burst: 100, concurrency: 8 });
  assert.deepEqual(rateLimitShare({ qps: 5, burst: 1, concurrency: 1 }, 2), { qps: 2.5, burst: 1, concurrency: 1 });
});

test('while DQRs drain, the even share stays that of all DQRs: no shard is asked to drain more than its excess', () => {
  const start = settle(keys.map((key) => ({ key, shard: undefined, draining: false })), ['r1', 'r2']).dqrs;
  const first = planAssignments(start, ['r1', 'r2', 'r3'], new Set());
  const draining = new Set(first.map((a) => a.key));
  // The owners have not handed them over yet: the next pass must ask for nothing more.
  const during = start.map((d) => (draining.has(d.key) ? { ...d, draining: true } : d));
  assert.deepEqual(planAssignments(during, ['r1', 'r2', 'r3'], new Set()), []);
});

test('the plan is the same whatever the locale of the replica that makes it', () => {
  // Danish collation sorts "aa" after "z": an order taken from the locale would place DQRs differently after a leader change.
  const dqrs: AssignedDqr[] = ['aa', 'z', 'ab', 'aaa', 'å', 'Z', 'a-b', 'a_b', 'a.b'].flatMap((name) => [`ns/${name}`, `team-aa/${name}`]).map((key) => ({ key, shard: undefined, draining: false }));
  const ready = ['shard-aa', 'shard-z', 'shard-ab'];
  const script = `
    const { planAssignments } = await import(${JSON.stringify(new URL('../../src/hub/shard-assignment.ts', import.meta.url).href)});
    process.stdout.write(JSON.stringify(planAssignments(${JSON.stringify(dqrs)}, ${JSON.stringify(ready)}, new Set())));`;
  const plans = ['C.UTF-8', 'da_DK.UTF-8', 'sv_SE.UTF-8'].map((locale) => {
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, LANG: locale, LC_ALL: locale }, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return run.stdout;
  });
  const here = JSON.stringify(planAssignments(dqrs, ready, new Set()));
  assert.deepEqual(plans, [here, here, here]);
});
