import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import {
  applyCount,
  condition,
  configMaps,
  dqrStatus,
  eventually,
  getHub,
  putDatabaseSecret,
  putDqr,
  registerMembers,
  startController,
  type RunningController,
} from './helpers/hub-fixture.ts';

const env = await openTestEnv('pipeline');
const [east, west] = env.members;
assert.ok(east !== undefined && west !== undefined);
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

const template = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: user-{{row.id}}
data:
  email: {{quote row.email}}
  region: {{quote cluster.labels.region}}
`;

before(async () => {
  await env.sql('CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, clusters text)');
  await env.sql("INSERT INTO users VALUES (1, 'ada@example.com', NULL), (2, 'bob@example.com', NULL), (3, 'cy & co <x>', NULL)");
  await registerMembers(env);
  await putDatabaseSecret(env);
  baseline = await env.leaks();
  running = await startController(env);
  await putDqr(env, 'users', { query: 'SELECT id, email FROM users ORDER BY id', template });
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

const wantUsers = async (cluster: TestCluster, ids: number[]): Promise<Map<string, Record<string, string>>> =>
  eventually(`users ${ids.join(',')} on ${cluster.info.name}`, async () => {
    const maps = await configMaps(cluster, env.namespace);
    const names = [...maps.keys()].sort();
    return JSON.stringify(names) === JSON.stringify(ids.map((i) => `user-${i}`).sort()) ? maps : undefined;
  });

test('every row becomes a ConfigMap on both members, rendered per cluster, and the DQR is Ready', async () => {
  const onEast = await wantUsers(east, [1, 2, 3]);
  const onWest = await wantUsers(west, [1, 2, 3]);
  assert.equal(onEast.get('user-1')?.['region'], 'east');
  assert.equal(onWest.get('user-1')?.['region'], 'west');
  assert.equal(onEast.get('user-3')?.['email'], 'cy & co <x>', 'no HTML escaping');
  const status = await eventually('Ready', async () => {
    const s = await dqrStatus(env, 'users');
    return condition(s, 'Ready')?.status === 'True' ? s : undefined;
  });
  assert.equal(status.rowCount, 3);
  assert.deepEqual(status.clusters?.map((c) => [c.name, c.applied, c.failed]).sort(), [
    ['member-1', 3, 0],
    ['member-2', 3, 0],
  ]);
  await eventually('the ClusterTarget counts what Rowcast manages there', async () => {
    const ct = await getHub(env, `/apis/rowcast.dev/v1alpha1/namespaces/${env.namespace}/clustertargets/member-1`);
    return (ct?.['status'] as { managedObjects?: number } | undefined)?.managedObjects === 3 ? true : undefined;
  });
});

test('an unchanged resync sends no writes to the members', async () => {
  const before = [await applyCount(east, 'configmaps'), await applyCount(west, 'configmaps')];
  const synced = (await dqrStatus(env, 'users')).conditions?.find((c) => c.type === 'Synced');
  assert.equal(synced?.status, 'True');
  // pollInterval is 1s: wait for several resyncs.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  const afterwards = [await applyCount(east, 'configmaps'), await applyCount(west, 'configmaps')];
  assert.deepEqual(afterwards, before);
  assert.ok(running !== undefined && running.logs.filter((l) => l.includes('"msg":"query read; nothing changed for the members"')).length >= 3, 'it did run the query');
});

test('a changed row updates its objects, a deleted row prunes them', async () => {
  await env.sql("UPDATE users SET email = 'ada@new.example' WHERE id = 1");
  await env.sql('DELETE FROM users WHERE id = 2');
  for (const cluster of [east, west]) {
    const maps = await wantUsers(cluster, [1, 3]);
    await eventually('the update', async () => ((await configMaps(cluster, env.namespace)).get('user-1')?.['email'] === 'ada@new.example' ? true : undefined));
    assert.ok(maps.has('user-3'));
  }
  const status = await eventually('pruned counts', async () => {
    const s = await dqrStatus(env, 'users');
    return s.rowCount === 2 ? s : undefined;
  });
  assert.ok(status.clusters?.every((c) => c.failed === 0));
});

test('a row picks its own clusters through rowClusterColumn', async () => {
  await env.sql('CREATE TABLE placed (id int PRIMARY KEY, v text, clusters text)');
  await env.sql("INSERT INTO placed VALUES (1, 'a', 'member-1'), (2, 'b', 'member-2'), (3, 'c', 'member-1,member-2'), (4, 'd', NULL)");
  await putDqr(env, 'placed', {
    query: 'SELECT id, v, clusters FROM placed ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: placed-{{row.id}}\ndata:\n  v: {{quote row.v}}\n',
    targets: { rowClusterColumn: 'clusters' },
  });
  const placed = async (cluster: TestCluster): Promise<string> =>
    [...(await configMaps(cluster, env.namespace)).keys()]
      .filter((n) => n.startsWith('placed-'))
      .sort()
      .join(',');
  await eventually('rows on their clusters', async () => ((await placed(east)) === 'placed-1,placed-3' && (await placed(west)) === 'placed-2,placed-3' ? true : undefined));
  await env.sql("UPDATE placed SET clusters = 'member-2' WHERE id = 1");
  await eventually('row 1 moved', async () => ((await placed(east)) === 'placed-3' && (await placed(west)) === 'placed-1,placed-2,placed-3' ? true : undefined));
});

test("a ClusterTarget's allowedNamespaces refuses objects elsewhere, by name in the status", async () => {
  await registerMembers(env, { allowedNamespaces: ['somewhere-else'] });
  await putDqr(env, 'fenced', {
    query: 'SELECT 1 AS id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fenced-{{row.id}}\n',
  });
  const status = await eventually('refusal in status', async () => {
    const s = await dqrStatus(env, 'fenced');
    return (s.failingRows?.length ?? 0) >= 2 ? s : undefined;
  });
  assert.ok(status.failingRows?.every((r) => r.field === 'metadata.namespace' && r.message.includes(`namespace ${env.namespace} is not allowed`)));
  assert.equal((await configMaps(east, env.namespace)).has('fenced-1'), false);
  await registerMembers(env);
});

test('a changed connection Secret requeues the DQRs that read it at once, not at the next poll', async () => {
  await putDqr(env, 'slow-poll', { database: { connectionSecretRef: { name: 'db-slow' } }, query: 'SELECT 1 AS id', template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: slow-{{row.id}}\n', pollInterval: '1h' });
  await putDatabaseSecret(env, 'db-slow');
  await eventually('slow-poll synced', async () => (condition(await dqrStatus(env, 'slow-poll'), 'Synced')?.status === 'True' ? true : undefined));
  await putDatabaseSecret(env, 'db-slow', { port: '1' });
  const connected = await eventually(
    'the Secret change seen',
    async () => {
      const c = condition(await dqrStatus(env, 'slow-poll'), 'DatabaseConnected');
      return c?.status === 'False' ? c : undefined;
    },
    10_000,
  );
  assert.equal(connected.reason, 'ConnectionFailed');
});
