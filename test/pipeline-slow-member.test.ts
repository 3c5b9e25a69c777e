import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { applyHub, configMaps, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

// A member that admits 2 writes a second, with 500 to take: the other member of the DQR does not wait for it.
const env = await openTestEnv('slow-member');
const [east, west] = env.members as [TestCluster, TestCluster];
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

before(async () => {
  await registerMembers(env);
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: west.info.name, labels: { region: 'west' } },
    spec: { kubeconfigSecretRef: { name: `${west.info.name}-kubeconfig`, key: 'kubeconfig' }, rateLimit: { qps: 2, burst: 1, concurrency: 1 } },
  });
  await putDatabaseSecret(env);
  await env.sql("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL); INSERT INTO items SELECT g, 'a' FROM generate_series(1, 500) g");
  baseline = await env.leaks();
  running = await startController(env, ['--shutdown-grace', '1s']);
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('a member rate-limited to 2 writes a second holds back no other member: changes and prunes reach the fast one while it is far behind', async () => {
  await putDqr(env, 'items', {
    query: 'SELECT id, v FROM items ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: item-{{row.id}}\ndata:\n  v: "{{row.v}}"\n',
    pruneLimit: '100%',
  });
  await eventually('500 items on the fast member', async () => ((await configMaps(east, env.namespace)).size === 500 ? true : undefined), 60_000);

  await env.sql("UPDATE items SET v = 'b' WHERE id = 1");
  await env.sql('DELETE FROM items WHERE id = 2');
  await eventually('the change and the prune on the fast member', async () => {
    const maps = await configMaps(east, env.namespace);
    return maps.get('item-1')?.['v'] === 'b' && !maps.has('item-2') ? true : undefined;
  }, 30_000);
  const slow = await configMaps(west, env.namespace);
  assert.ok(slow.size < 450, `the slow member is still far behind (${slow.size} of 500): it held back nothing`);
});
