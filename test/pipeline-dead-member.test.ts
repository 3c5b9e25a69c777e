import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { adminRequest, startApiserver, type RunningApiserver } from './harness/kube-apiserver.ts';
import { waitFor } from './harness/ports.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { applyHub, condition, dqrStatus, eventually, putDatabaseSecret, putDqr, putSecret, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('dead-member');
let running: RunningController | undefined;
let baseline: LeakCount | undefined;
let third: RunningApiserver | undefined;

before(async () => {
  // A member of this file's own on the shared etcd, so stopping it harms no other file.
  third = await startApiserver(env.state.binaries.kubeApiserver, `third-${env.namespace}`, env.state.runDir, env.state.etcdUrl);
  const created = await adminRequest(third.info, 'POST', '/api/v1/namespaces', { metadata: { name: env.namespace } });
  assert.equal(created.status, 201);
  await registerMembers(env);
  await putSecret(env, 'third-kubeconfig', { kubeconfig: third.info.kubeconfig });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'third' },
    spec: { kubeconfigSecretRef: { name: 'third-kubeconfig', key: 'kubeconfig' } },
  });
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE items (id int PRIMARY KEY)');
  await env.sql('INSERT INTO items VALUES (1), (2)');
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  await third?.process.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

async function onThird(name: string): Promise<string | undefined> {
  if (third === undefined) return undefined;
  const got = await adminRequest(third.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps/${name}`);
  return got.status === 200 ? (JSON.parse(got.body) as { metadata: { uid: string } }).metadata.uid : undefined;
}

test('a stopped member prunes nothing and holds up no one; back again, it is brought in line', async () => {
  assert.ok(third !== undefined);
  await putDqr(env, 'items', { query: 'SELECT id FROM items ORDER BY id', template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: item-{{row.id}}\n', pruneLimit: '100%' });
  const uid = await eventually('items on the third member', async () => ((await onThird('item-2')) === undefined ? undefined : onThird('item-1')));

  await third.process.stop();
  await env.sql('DELETE FROM items WHERE id = 2');
  const [east, west] = env.members;
  for (const member of [east, west]) {
    assert.ok(member !== undefined);
    await eventually(`item-2 pruned on ${member.info.name}`, async () => {
      const list = await member.core.listNamespacedConfigMap({ namespace: env.namespace });
      return list.items.some((c) => c.metadata?.name === 'item-2') ? undefined : true;
    });
  }
  const status = await eventually('the third member reported failing', async () => {
    const s = await dqrStatus(env, 'items');
    return s.clusters?.find((c) => c.name === 'third')?.lastError !== undefined ? s : undefined;
  });
  assert.equal(condition(status, 'Synced')?.status, 'False');
  assert.equal(status.clusters?.find((c) => c.name === 'third')?.pruned, 0);

  third.process.start();
  await waitFor('the third member back', async () => (await adminRequest(third?.info ?? env.state.hub, 'GET', '/readyz')).status === 200, 60_000, 200);
  await eventually('item-2 pruned on the third member once it is back', async () => ((await onThird('item-2')) === undefined ? true : undefined), 60_000);
  assert.equal(await onThird('item-1'), uid, 'item-1 on the third member was never deleted and recreated');
});
