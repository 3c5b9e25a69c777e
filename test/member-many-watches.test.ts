import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { adminRequest } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { startHttp1Proxy, type Http1Proxy } from './helpers/http1-proxy.ts';
import { eventually, putClusterTarget, putDatabaseSecret, putDqr, startController, type RunningController } from './helpers/hub-fixture.ts';

// A tenant's ClusterTarget with many allowed namespaces, reached through a
// proxy that speaks HTTP/1.1 only: Rowcast keeps a watch per (kind,
// namespace) for its cache and another for status write-back, each holding a
// connection for as long as it streams, far more than a member's pool of
// request connections. None may hold an apply, a list or another watch waiting.
const env = await openTestEnv('member-many-watches');
const [east] = env.members as [TestCluster, TestCluster];
const count = 24;
const namespaces = Array.from({ length: count }, (_, i) => `${env.namespace}-w${String(i + 1).padStart(2, '0')}`);
let proxy: Http1Proxy | undefined;
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

async function valueOn(namespace: string, name: string): Promise<string | undefined> {
  const got = await adminRequest(east.info, 'GET', `/api/v1/namespaces/${namespace}/configmaps/${name}`);
  return got.status === 200 ? (JSON.parse(got.body) as { data?: { v?: string } }).data?.v : undefined;
}

before(async () => {
  for (const namespace of namespaces) {
    const created = await adminRequest(east.info, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
    assert.ok(created.status < 300, created.body);
  }
  await env.sql('CREATE TABLE spread (id int PRIMARY KEY, ns text NOT NULL, v int NOT NULL DEFAULT 0, seen int)');
  for (const [i, namespace] of namespaces.entries()) await env.sql('INSERT INTO spread (id, ns) VALUES ($1, $2)', [i + 1, namespace]);
  proxy = await startHttp1Proxy(east.info);
  await putClusterTarget(env, 'east', proxy.kubeconfig, { allowedNamespaces: namespaces });
  await putDatabaseSecret(env);
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  await proxy?.close();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
  for (const namespace of namespaces) await adminRequest(east.info, 'DELETE', `/api/v1/namespaces/${namespace}`);
});

test('a member with more watches than request connections still takes applies at once: a watch never holds another call', async (t) => {
  await putDqr(env, 'spread', {
    query: 'SELECT id, ns, v FROM spread ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: spread-{{row.id}}\n  namespace: {{row.ns}}\ndata:\n  v: "{{row.v}}"\n',
    targets: { clusters: ['east'] },
    pollInterval: '1s',
    statusUpdateQueryTemplate: 'UPDATE spread SET seen = 1 WHERE id = {{param row.id}}',
  });
  const first = Date.now();
  await eventually(
    `a ConfigMap in each of the ${count} namespaces`,
    async () => ((await Promise.all(namespaces.map((ns, i) => valueOn(ns, `spread-${i + 1}`)))).every((v) => v === '0') ? true : undefined),
    60_000,
  );
  t.diagnostic(`first sync of ${count} namespaces (${2 * count} watches): ${Date.now() - first} ms`);
  // Every watch is open now, and the apiserver ends each within a minute: a change must not wait for one to end.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  for (const round of [1, 2, 3]) {
    const changed = Date.now();
    await env.sql('UPDATE spread SET v = $1 WHERE id = $2', [round, count - round]);
    await eventually(`change ${round} on the member`, async () => ((await valueOn(namespaces[count - round - 1] ?? '', `spread-${count - round}`)) === String(round) ? true : undefined), 60_000);
    const took = Date.now() - changed;
    t.diagnostic(`change ${round} reached the member in ${took} ms`);
    assert.ok(took < 10_000, `change ${round} took ${took} ms: a watch held the apply`);
  }
  assert.ok(running !== undefined);
  assert.ok(!running.logs.some((l) => l.includes('informer failed')), `an informer failed: ${running.logs.find((l) => l.includes('informer failed'))}`);
});
