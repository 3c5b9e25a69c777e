import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { MemberApi, MemberKubeConfig, MemberQueue, type Member } from '../src/clusters/index.ts';
import { pruneMember, type LiveObject } from '../src/sync/index.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { condition, configMaps, dqrPath, dqrStatus, eventually, getHub, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';
import { adminRequest } from './harness/kube-apiserver.ts';

const env = await openTestEnv('prune-safety');
const [east, west] = env.members;
assert.ok(east !== undefined && west !== undefined);
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

interface PendingPrune {
  id: string;
  wanted: number;
  allowed: number;
  managed: number;
}

function template(extra = ''): string {
  return `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{metadata.name}}-{{row.id}}
data:
  v: {{quote row.v}}
${extra}`;
}

async function names(cluster: TestCluster, prefix: string): Promise<string[]> {
  return [...(await configMaps(cluster, env.namespace)).keys()].filter((n) => n.startsWith(`${prefix}-`)).sort();
}

async function waitCount(cluster: TestCluster, prefix: string, count: number): Promise<void> {
  await eventually(`${count} ${prefix} objects on ${cluster.info.name}`, async () => ((await names(cluster, prefix)).length === count ? true : undefined), 60_000);
}

async function waitNames(cluster: TestCluster, prefix: string, want: string[]): Promise<void> {
  await eventually(`${want.join(',')} on ${cluster.info.name}`, async () => (JSON.stringify(await names(cluster, prefix)) === JSON.stringify([...want].sort()) ? true : undefined));
}

async function pendingPrune(dqr: string): Promise<PendingPrune | undefined> {
  return ((await getHub(env, dqrPath(env, dqr)))?.['status'] as { pendingPrune?: PendingPrune } | undefined)?.pendingPrune;
}

async function annotation(dqr: string): Promise<string | undefined> {
  return ((await getHub(env, dqrPath(env, dqr)))?.['metadata'] as { annotations?: Record<string, string> }).annotations?.['rowcast.dev/confirm-prune'];
}

async function confirm(dqr: string, value: string): Promise<void> {
  await adminRequest(env.state.hub, 'PATCH', dqrPath(env, dqr), { metadata: { annotations: { 'rowcast.dev/confirm-prune': value } } });
}

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 2000));

before(async () => {
  await registerMembers(env);
  await putDatabaseSecret(env);
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('re-keying every row of a 100-row DQR is a prune over the limit: blocked, nothing deleted', async () => {
  await env.sql('CREATE TABLE rekey (id int PRIMARY KEY, v text)');
  await env.sql("INSERT INTO rekey SELECT g, 'v' || g FROM generate_series(1, 100) g");
  await putDqr(env, 'rekey', { query: 'SELECT id, v FROM rekey ORDER BY id', template: template() });
  await waitCount(east, 'rekey', 100);
  await waitCount(west, 'rekey', 100);

  await env.sql('UPDATE rekey SET id = id + 1000');
  const blocked = await eventually('rekey blocked', async () => {
    const c = condition(await dqrStatus(env, 'rekey'), 'Synced');
    return c?.reason === 'PruneBlocked' ? c : undefined;
  });
  assert.match(blocked.message, /would prune 200 of 200 objects/);
  const pending = await pendingPrune('rekey');
  assert.deepEqual([pending?.wanted, pending?.allowed, pending?.managed], [200, 100, 200]);
  // Syncs go on (every second): the 100 new objects they now list must not make the same prune look like 100 of 200.
  await settle();
  await settle();
  assert.equal((await pendingPrune('rekey'))?.id, pending?.id);
  for (const cluster of [east, west]) {
    const held = await names(cluster, 'rekey');
    assert.equal(held.length, 200, `the 100 originals are still on ${cluster.info.name} beside the 100 new ones`);
    assert.ok(held.includes('rekey-1') && held.includes('rekey-1100'));
  }
});

test('a confirmation must name status.pendingPrune.id; it runs at once in timestamp mode and is then cleared', async () => {
  await env.sql(`CREATE TABLE stamped (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  await env.sql("INSERT INTO stamped (id, v) SELECT g, 'v' FROM generate_series(1, 4) g");
  const spec = (where: string): Record<string, unknown> => ({
    query: `SELECT id, v FROM stamped ${where} ORDER BY id`,
    template: template(),
    changeDetection: { mode: 'timestamp', tableName: 'stamped', timestampColumn: 'updated_at' },
  });
  await putDqr(env, 'stamped', spec(''));
  await waitCount(east, 'stamped', 4);
  await waitCount(west, 'stamped', 4);

  // A new generation drops three rows: 6 of 8 objects, over 50%.
  await putDqr(env, 'stamped', spec('WHERE id = 1'));
  const pending = await eventually('pending prune published', () => pendingPrune('stamped'));
  assert.deepEqual([pending.wanted, pending.allowed, pending.managed], [6, 4, 8]);
  assert.match(condition(await dqrStatus(env, 'stamped'), 'Synced')?.message ?? '', new RegExp(`rowcast.dev/confirm-prune=${pending.id}`));

  // The generation is no confirmation any more.
  const generation = String(((await getHub(env, dqrPath(env, 'stamped')))?.['metadata'] as { generation: number }).generation);
  await confirm('stamped', generation);
  await settle();
  assert.equal((await names(east, 'stamped')).length, 4, 'a value other than the id releases nothing');

  // The id does, at once: no row changed, max(updated_at) did not move, the full sync is minutes away.
  await confirm('stamped', pending.id);
  await waitNames(east, 'stamped', ['stamped-1']);
  await waitNames(west, 'stamped', ['stamped-1']);
  await eventually('pendingPrune and the confirmation cleared', async () => ((await pendingPrune('stamped')) === undefined && (await annotation('stamped')) === undefined ? true : undefined));
});

test('a sync back within the limit clears the pending prune and a stale confirmation', async () => {
  await env.sql('CREATE TABLE back (id int PRIMARY KEY, v text)');
  await env.sql("INSERT INTO back SELECT g, 'v' FROM generate_series(1, 4) g");
  await putDqr(env, 'back', { query: 'SELECT id, v FROM back ORDER BY id', template: template() });
  await waitCount(east, 'back', 4);
  await env.sql('CREATE TABLE back_saved AS SELECT * FROM back');
  await env.sql('DELETE FROM back WHERE id > 1');
  await eventually('pending prune published', () => pendingPrune('back'));
  await confirm('back', 'not-the-id');
  await env.sql('INSERT INTO back SELECT * FROM back_saved WHERE id > 1');
  await eventually('pendingPrune and the stale confirmation cleared', async () => ((await pendingPrune('back')) === undefined && (await annotation('back')) === undefined ? true : undefined));
  assert.equal((await names(west, 'back')).length, 4);
  assert.equal(condition(await dqrStatus(env, 'back'), 'Synced')?.status, 'True');
});

test('a row whose object moves to a namespace missing on the members fails there alone and keeps its object', async () => {
  await env.sql('CREATE TABLE moved (id int PRIMARY KEY, ns text)');
  await env.sql('INSERT INTO moved VALUES (1, $1), (2, $1)', [env.namespace]);
  const moved = `apiVersion: v1
kind: ConfigMap
metadata:
  name: moved-{{row.id}}
  namespace: {{row.ns}}
data: {}
`;
  await putDqr(env, 'moved', { query: 'SELECT id, ns FROM moved ORDER BY id', template: moved, pruneLimit: '100%' });
  await waitNames(east, 'moved', ['moved-1', 'moved-2']);
  await waitNames(west, 'moved', ['moved-1', 'moved-2']);

  await env.sql("UPDATE moved SET ns = 'no-such-namespace' WHERE id = 1");
  const status = await eventually('row 1 failing on both members', async () => {
    const s = await dqrStatus(env, 'moved');
    const rows = s.failingRows?.filter((r) => r.rowKey === '1') ?? [];
    return rows.length === 2 ? s : undefined;
  });
  await settle();
  for (const cluster of [east, west]) assert.deepEqual(await names(cluster, 'moved'), ['moved-1', 'moved-2'], `the old object of row 1 is kept on ${cluster.info.name}`);
  for (const row of status.failingRows ?? []) {
    assert.equal(row.rowKey, '1');
    assert.ok(row.cluster === 'member-1' || row.cluster === 'member-2', JSON.stringify(row));
    assert.equal(row.field, 'metadata.namespace', JSON.stringify(row));
  }
  assert.ok(status.clusters?.every((c) => c.lastError === undefined), 'a row refused by the member is no failure of the member');
});

test('a row refused for its content (HTTP 500 on binaryData) fails alone: a row deleted meanwhile is still pruned', async () => {
  await env.sql('CREATE TABLE bin (id int PRIMARY KEY, b text)');
  await env.sql("INSERT INTO bin VALUES (1, 'aGVsbG8='), (2, 'aGVsbG8='), (3, 'aGVsbG8=')");
  const binary = `apiVersion: v1
kind: ConfigMap
metadata:
  name: binary-{{row.id}}
binaryData:
  b: {{row.b}}
`;
  await putDqr(env, 'binary', { query: 'SELECT id, b FROM bin ORDER BY id', template: binary, pruneLimit: '100%' });
  await waitNames(east, 'binary', ['binary-1', 'binary-2', 'binary-3']);
  await waitNames(west, 'binary', ['binary-1', 'binary-2', 'binary-3']);

  await env.sql("UPDATE bin SET b = 'not base64!' WHERE id = 1");
  await env.sql('DELETE FROM bin WHERE id = 3');
  await waitNames(east, 'binary', ['binary-1', 'binary-2']);
  await waitNames(west, 'binary', ['binary-1', 'binary-2']);
  const status = await eventually('row 1 failing on both members', async () => {
    const s = await dqrStatus(env, 'binary');
    return (s.failingRows?.filter((r) => r.rowKey === '1').length ?? 0) === 2 ? s : undefined;
  });
  for (const row of status.failingRows ?? []) {
    assert.equal(row.rowKey, '1');
    assert.ok(row.cluster === 'member-1' || row.cluster === 'member-2', JSON.stringify(row));
    assert.match(row.field ?? '', /binaryData/, JSON.stringify(row));
  }
  assert.ok(status.clusters?.every((c) => c.lastError === undefined), JSON.stringify(status.clusters));
  const kept = await east.core.readNamespacedConfigMap({ name: 'binary-1', namespace: env.namespace });
  assert.equal(Buffer.from(kept.binaryData?.['b'] ?? '', 'base64').toString(), 'hello', 'row 1 keeps its object as it was');
});

test('rowClusterColumn: namespace/name works; NULL, unknown names, other types and arrays cast to text fail their row and keep its objects', async () => {
  await env.sql('CREATE TABLE placed (id int PRIMARY KEY, at jsonb)');
  const initial: [number, unknown][] = [
    [1, 'member-1'],
    [2, 'member-2'],
    [3, ['member-1', 'member-2']],
    [4, `${env.namespace}/member-1`],
    [5, 'member-1'],
    [6, 'member-1,member-2'],
    [7, 'member-2'],
  ];
  for (const [id, at] of initial) await env.sql('INSERT INTO placed VALUES ($1, $2::jsonb)', [id, JSON.stringify(at)]);
  await putDqr(env, 'placed', { query: 'SELECT id, at, id AS v FROM placed ORDER BY id', template: template(), targets: { rowClusterColumn: 'at' }, pruneLimit: '100%' });
  await waitNames(east, 'placed', ['placed-1', 'placed-3', 'placed-4', 'placed-5', 'placed-6']);
  await waitNames(west, 'placed', ['placed-2', 'placed-3', 'placed-6', 'placed-7']);

  await env.sql('UPDATE placed SET at = NULL WHERE id = 1');
  await env.sql(`UPDATE placed SET at = '"member-9"' WHERE id = 2`);
  await env.sql(`UPDATE placed SET at = '"{member-1,member-2}"' WHERE id = 3`);
  await env.sql(`UPDATE placed SET at = '42' WHERE id = 5`);
  await env.sql(`UPDATE placed SET at = '["member-1", 2]' WHERE id = 6`);
  await env.sql('DELETE FROM placed WHERE id = 7');
  // The deleted row is pruned: the sync ran and pruned, yet kept every object of the rows it could not place.
  await waitNames(west, 'placed', ['placed-2', 'placed-3', 'placed-6']);
  await settle();
  assert.deepEqual(await names(east, 'placed'), ['placed-1', 'placed-3', 'placed-4', 'placed-5', 'placed-6']);
  assert.deepEqual(await names(west, 'placed'), ['placed-2', 'placed-3', 'placed-6']);
  const status = await dqrStatus(env, 'placed');
  assert.deepEqual([...new Set(status.failingRows?.map((r) => r.rowKey))].sort(), ['1', '2', '3', '5', '6']);
  assert.ok(status.failingRows?.every((r) => r.field === 'row.at'), JSON.stringify(status.failingRows));
  assert.equal(condition(status, 'Synced')?.status, 'False');
});

test('rowClusterColumn naming a column the query lacks fails the whole query shape: nothing applied or pruned, the condition says why', async () => {
  await env.sql('CREATE TABLE shaped (id int PRIMARY KEY, at text, v text)');
  await env.sql("INSERT INTO shaped VALUES (1, 'member-1', 'a'), (2, 'member-2', 'b')");
  await putDqr(env, 'shaped', { query: 'SELECT id, at, v FROM shaped ORDER BY id', template: template(), targets: { rowClusterColumn: 'at' }, pruneLimit: '100%' });
  await waitNames(east, 'shaped', ['shaped-1']);
  await waitNames(west, 'shaped', ['shaped-2']);

  await putDqr(env, 'shaped', { query: 'SELECT id, at, v FROM shaped ORDER BY id', template: template(), targets: { rowClusterColumn: 'cluster' }, pruneLimit: '100%' });
  const synced = await eventually('shape failure reported', async () => {
    const s = await dqrStatus(env, 'shaped');
    const c = condition(s, 'Synced');
    return s.observedGeneration === 2 && c?.status === 'False' ? c : undefined;
  });
  assert.match(synced.message, /spec\.targets\.rowClusterColumn: the query returns no column "cluster"/);
  await settle();
  assert.deepEqual(await names(east, 'shaped'), ['shaped-1']);
  assert.deepEqual(await names(west, 'shaped'), ['shaped-2']);
});

test('a prune deletes only the object as it was listed: one changed since (another resourceVersion) is left for the next sync', async () => {
  const member: Member = {
    key: `${env.namespace}/member-1`,
    name: 'member-1',
    labels: {},
    api: new MemberApi(new MemberKubeConfig(east.info.kubeconfig, { requestTimeoutMs: 10_000 })),
    queue: new MemberQueue({ limits: { qps: 50, burst: 100, concurrency: 4 } }),
    fingerprint: 'test',
  };
  const created = await east.core.createNamespacedConfigMap({ namespace: env.namespace, body: { metadata: { name: 'listed-1' }, data: { v: 'as listed' } } });
  const listed: LiveObject = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    namespace: env.namespace,
    name: 'listed-1',
    uid: created.metadata?.uid ?? '',
    resourceVersion: created.metadata?.resourceVersion,
    hash: undefined,
    rowKey: '1',
  };
  // Someone writes to it between the listing and the delete.
  await east.core.replaceNamespacedConfigMap({ name: 'listed-1', namespace: env.namespace, body: { metadata: { name: 'listed-1', resourceVersion: created.metadata?.resourceVersion ?? '' }, data: { v: 'changed since' } } });
  const stale = await pruneMember(member, [listed], () => undefined, AbortSignal.timeout(30_000));
  assert.equal(stale.pruned, 0);
  assert.equal(stale.error, undefined, 'a changed object is no failure of the member');
  assert.equal((await east.core.readNamespacedConfigMap({ name: 'listed-1', namespace: env.namespace })).data?.['v'], 'changed since');

  const current = await east.core.readNamespacedConfigMap({ name: 'listed-1', namespace: env.namespace });
  const fresh = await pruneMember(member, [{ ...listed, resourceVersion: current.metadata?.resourceVersion }], () => undefined, AbortSignal.timeout(30_000));
  assert.equal(fresh.pruned, 1);
  assert.deepEqual(await names(east, 'listed'), []);
});

test('two rows with the same row key both fail and keep their objects', async () => {
  await env.sql('CREATE TABLE twins (id int, v text)');
  await env.sql("INSERT INTO twins VALUES (1, 'a'), (2, 'c')");
  const twins = `apiVersion: v1
kind: ConfigMap
metadata:
  name: twins-{{row.id}}-{{row.v}}
data: {}
`;
  await putDqr(env, 'twins', { query: 'SELECT id, v FROM twins ORDER BY id, v', template: twins, pruneLimit: '100%' });
  await waitNames(east, 'twins', ['twins-1-a', 'twins-2-c']);

  await env.sql("INSERT INTO twins VALUES (1, 'b')");
  const status = await eventually('both rows keyed 1 failing', async () => {
    const s = await dqrStatus(env, 'twins');
    return s.failingRows?.some((r) => r.rowKey === '1') === true ? s : undefined;
  });
  assert.ok(status.failingRows?.every((r) => r.rowKey === '1' && r.field === 'spec.rowKey' && /2 rows/.test(r.message)), JSON.stringify(status.failingRows));
  await settle();
  for (const cluster of [east, west]) assert.deepEqual(await names(cluster, 'twins'), ['twins-1-a', 'twins-2-c'], `neither twin wins on ${cluster.info.name}`);
});

test('a row that fails while the row-key format changes keeps its objects', async () => {
  await env.sql('CREATE TABLE rekeyed (id int PRIMARY KEY, v text)');
  await env.sql("INSERT INTO rekeyed VALUES (1, 'a'), (2, 'b')");
  const named = (extra: string): string => `apiVersion: v1
kind: ConfigMap
metadata:
  name: rekeyed-{{row.v}}
data:
  v: {{quote row.v}}
${extra}`;
  await putDqr(env, 'rekeyed', { query: 'SELECT id, v FROM rekeyed ORDER BY id', template: named(''), pruneLimit: '100%' });
  await waitNames(east, 'rekeyed', ['rekeyed-a', 'rekeyed-b']);
  await waitNames(west, 'rekeyed', ['rekeyed-a', 'rekeyed-b']);

  // One edit: the key becomes v (the objects carry row-key "1" and "2"), and row a no longer renders.
  await putDqr(env, 'rekeyed', {
    query: 'SELECT id, v FROM rekeyed ORDER BY id',
    rowKey: ['v'],
    template: named('{{#if (eq row.v "a")}}  x: {{row.nope}}{{/if}}'),
    pruneLimit: '100%',
  });
  await eventually('row a failing', async () => ((await dqrStatus(env, 'rekeyed')).failingRows?.some((r) => r.rowKey === 'a') === true ? true : undefined));
  await eventually('row b re-keyed', async () => {
    const cm = await east.core.readNamespacedConfigMap({ name: 'rekeyed-b', namespace: env.namespace });
    return cm.metadata?.annotations?.['rowcast.dev/row-key'] === 'b' ? true : undefined;
  });
  await settle();
  for (const cluster of [east, west]) assert.deepEqual(await names(cluster, 'rekeyed'), ['rekeyed-a', 'rekeyed-b'], `row a keeps its object on ${cluster.info.name}`);
});
