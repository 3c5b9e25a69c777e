import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { adminRequest, startApiserver, type RunningApiserver } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { applyHub, condition, configMaps, dqrStatus, eventually, putDatabaseSecret, putDqr, putSecret, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';
import { startStallProxy, type StallProxy } from './helpers/stall-proxy.ts';

// A member that answers and then goes silent mid-response holds back only itself.
const env = await openTestEnv('stalled-member');
const [east, west] = env.members as [TestCluster, TestCluster];
let running: RunningController | undefined;
let baseline: LeakCount | undefined;
let third: RunningApiserver | undefined;
let proxy: StallProxy | undefined;

before(async () => {
  third = await startApiserver(env.state.binaries.kubeApiserver, `third-${env.namespace}`, env.state.runDir, env.state.etcdUrl);
  const created = await adminRequest(third.info, 'POST', '/api/v1/namespaces', { metadata: { name: env.namespace } });
  assert.equal(created.status, 201);
  proxy = await startStallProxy(Number(new URL(third.info.server).port));
  await registerMembers(env);
  await putSecret(env, 'third-kubeconfig', { kubeconfig: third.info.kubeconfig.replace(third.info.server, `https://127.0.0.1:${proxy.port}`) });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'third' },
    spec: { kubeconfigSecretRef: { name: 'third-kubeconfig', key: 'kubeconfig' } },
  });
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)');
  await env.sql("INSERT INTO items VALUES (1, 'a'), (2, 'a')");
  baseline = await env.leaks();
  // Long enough that the stalled call outlives the test: only per-member work lets the others go on.
  running = await startController(env, ['--request-timeout', '10m']);
});

env.defer(async () => {
  proxy?.release();
  await running?.stop();
  await proxy?.close();
  await third?.process.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

/** The third member's ConfigMaps, read past the proxy. */
async function onThird(): Promise<Map<string, string | undefined>> {
  assert.ok(third !== undefined);
  const got = await adminRequest(third.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps`);
  const list = JSON.parse(got.body) as { items: { metadata: { name: string }; data?: Record<string, string> }[] };
  return new Map(list.items.filter((c) => c.metadata.name.startsWith('item-')).map((c) => [c.metadata.name, c.data?.['v']]));
}

const values = async (member: TestCluster): Promise<string> => {
  const maps = await configMaps(member, env.namespace);
  return [...maps].map(([name, data]) => `${name}=${data['v'] ?? ''}`).sort().join(',');
};

test('a member stalled mid-response holds back no other member: changes and prunes reach them while it is still behind', async () => {
  assert.ok(proxy !== undefined);
  await putDqr(env, 'items', {
    query: 'SELECT id, v FROM items ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: item-{{row.id}}\ndata:\n  v: "{{row.v}}"\n',
    pruneLimit: '100%',
  });
  for (const member of [east, west]) await eventually(`items on ${member.info.name}`, async () => ((await values(member)) === 'item-1=a,item-2=a' ? true : undefined));
  await eventually('items on the third member', async () => ((await onThird()).size === 2 ? true : undefined));

  // The next sync's calls to the third member get a first chunk and then silence.
  proxy.stallNextResponse();
  await env.sql("UPDATE items SET v = 'b'");
  await proxy.stalled;
  await env.sql("UPDATE items SET v = 'c' WHERE id = 1");
  await env.sql('DELETE FROM items WHERE id = 2');
  for (const member of [east, west]) {
    await eventually(`the change and the prune on ${member.info.name}`, async () => ((await values(member)) === 'item-1=c' ? true : undefined), 60_000);
  }
  const behind = await onThird();
  assert.ok(behind.has('item-2'), 'item-2 is still on the stalled member: it was neither pruned nor lost');
  assert.notEqual(behind.get('item-1'), 'c', 'the stalled member has not got the latest change');
  const status = await eventually('the DQR says which member is behind', async () => {
    const s = await dqrStatus(env, 'items');
    const ready = condition(s, 'Ready');
    return ready?.status === 'False' && ready.reason === 'MembersBehind' && /third/.test(ready.message) ? s : undefined;
  });
  assert.match(condition(status, 'Ready')?.message ?? '', /1 of 3 members behind/);

  // Back again: the third member catches up with the latest rows, nothing of item-1 lost on the way.
  proxy.release();
  await eventually('the third member caught up', async () => {
    const now = await onThird();
    return now.size === 1 && now.get('item-1') === 'c' ? true : undefined;
  }, 120_000);
  await eventually('Ready once every member caught up', async () => (condition(await dqrStatus(env, 'items'), 'Ready')?.status === 'True' ? true : undefined), 60_000);
});
