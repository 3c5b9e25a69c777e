import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import yaml from 'js-yaml';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { adminRequest, startApiserver, type ClusterCredentials, type RunningApiserver } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { applyHub, configMaps, putDatabaseSecret, putDqr, putSecret, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const ROWS = 400;
const env = await openTestEnv('throttled-member');
let running: RunningController | undefined;
let baseline: LeakCount | undefined;
let throttled: RunningApiserver | undefined;

async function ok(cluster: ClusterCredentials, method: string, path: string, body: unknown): Promise<string> {
  const response = await adminRequest(cluster, method, path, body);
  assert.ok(response.status < 300, `${method} ${path}: ${response.status} ${response.body}`);
  return response.body;
}

/**
 * Rowcast's credentials on the throttled member: a ServiceAccount's token,
 * because the apiserver exempts system:masters (the harness admin) from its
 * in-flight limits.
 */
async function serviceAccountKubeconfig(cluster: ClusterCredentials): Promise<string> {
  await ok(cluster, 'POST', `/api/v1/namespaces/${env.namespace}/serviceaccounts`, { metadata: { name: 'rowcast' } });
  await ok(cluster, 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    metadata: { name: `rowcast-${env.namespace}` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
    subjects: [{ kind: 'ServiceAccount', name: 'rowcast', namespace: env.namespace }],
  });
  const issued = await ok(cluster, 'POST', `/api/v1/namespaces/${env.namespace}/serviceaccounts/rowcast/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3600 },
  });
  const token = (JSON.parse(issued) as { status: { token: string } }).status.token;
  return yaml.dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'throttled', cluster: { server: cluster.server, 'certificate-authority-data': Buffer.from(cluster.caCert).toString('base64') } }],
    users: [{ name: 'rowcast', user: { token } }],
    contexts: [{ name: 'throttled', context: { cluster: 'throttled', user: 'rowcast' } }],
    'current-context': 'throttled',
  });
}

before(async () => {
  // One mutating request in flight at a time, without priority and fairness
  // (which would queue rather than refuse): every other write is answered 429.
  throttled = await startApiserver(env.state.binaries.kubeApiserver, `throttled-${env.namespace}`, env.state.runDir, env.state.etcdUrl, [
    '--enable-priority-and-fairness=false',
    '--max-mutating-requests-inflight=1',
  ]);
  await ok(throttled.info, 'POST', '/api/v1/namespaces', { metadata: { name: env.namespace } });
  await registerMembers(env);
  await putSecret(env, 'throttled-kubeconfig', { kubeconfig: await serviceAccountKubeconfig(throttled.info) });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'throttled' },
    spec: { kubeconfigSecretRef: { name: 'throttled-kubeconfig', key: 'kubeconfig' } },
  });
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE items (id int PRIMARY KEY)');
  await env.sql(`INSERT INTO items SELECT generate_series(1, ${ROWS})`);
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  await throttled?.process.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

/** The member's own count of requests by code: its writes (apply of configmaps) and every 429 it answered. */
async function memberCounts(cluster: ClusterCredentials): Promise<{ writes: number; throttled: number }> {
  const metrics = await adminRequest(cluster, 'GET', '/metrics');
  let writes = 0;
  let throttledCount = 0;
  for (const line of metrics.body.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.includes('code="429"')) throttledCount += value;
    else if (line.includes('verb="APPLY"') && line.includes('resource="configmaps"') && /code="20[01]"/.test(line)) writes += value;
  }
  return { writes, throttled: throttledCount };
}

async function countOn(cluster: ClusterCredentials): Promise<number> {
  const listed = await ok(cluster, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps?labelSelector=app%3Ditems`, undefined);
  return (JSON.parse(listed) as { items: unknown[] }).items.length;
}

test(`a member that answers 429 converges at the rate it admits, with 429s a small multiple of its writes, and holds up no other member`, async () => {
  assert.ok(throttled !== undefined);
  const member = throttled.info;
  const before = await memberCounts(member);
  const started = performance.now();
  await putDqr(env, 'items', {
    query: 'SELECT id FROM items ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: item-{{row.id}}\n  labels:\n    app: items\ndata:\n  id: "{{row.id}}"\n',
    pruneLimit: '100%',
  });

  const healthySeconds: Record<string, number> = {};
  let last = { writes: 0, throttled: 0, objects: 0 };
  const deadline = Date.now() + 540_000;
  const concurrency = async (): Promise<number | undefined> =>
    (await running?.metrics.registry.getSingleMetric('rowcast_member_concurrency')?.get())?.values.find((v) => v.labels['cluster'] === `${env.namespace}/throttled`)?.value;
  let lowest = Infinity;
  while (last.objects < ROWS) {
    assert.ok(Date.now() < deadline, `${ROWS} objects on the throttled member: ${last.objects} there after 9 minutes, ${last.throttled} 429s against ${last.writes} writes`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const healthy of env.members) {
      if (healthySeconds[healthy.info.name] === undefined && (await configMaps(healthy, env.namespace)).size === ROWS) {
        healthySeconds[healthy.info.name] = (performance.now() - started) / 1000;
      }
    }
    lowest = Math.min(lowest, (await concurrency()) ?? Infinity);
    const now = await memberCounts(member);
    last = { writes: now.writes - before.writes, throttled: now.throttled - before.throttled, objects: await countOn(member) };
    // Throughout, not only at the end: a client that hammers a refusing member is wrong long before it gives up.
    assert.ok(last.throttled <= 3 * last.writes + 30, `${last.throttled} 429s against ${last.writes} writes (${last.objects} of ${ROWS} objects there)`);
  }
  const convergedSeconds = (performance.now() - started) / 1000;
  for (const healthy of env.members) assert.equal((await configMaps(healthy, env.namespace)).size, ROWS, `every object on ${healthy.info.name}`);
  const rowcast429 = (await running?.metrics.registry.getSingleMetric('rowcast_member_throttled_total')?.get())?.values.find((v) => v.labels['cluster'] === `${env.namespace}/throttled`)?.value;
  console.log(
    `throttled member (--max-mutating-requests-inflight=1): ${ROWS} objects in ${convergedSeconds.toFixed(1)} s; ` +
      `${last.throttled} 429s for ${last.writes} writes (${(last.throttled / Math.max(1, last.writes)).toFixed(2)} per write; rowcast_member_throttled_total ${rowcast429}); ` +
      `rowcast_member_concurrency 8 at first, as low as ${lowest}, ${await concurrency()} at the end; ` +
      `healthy members converged after ${Object.entries(healthySeconds).map(([name, s]) => `${name} ${s.toFixed(1)} s`).join(', ')}`,
  );
  assert.equal(rowcast429, last.throttled, 'rowcast_member_throttled_total counts every 429 the member answered');
  assert.ok(lowest < 8, `rowcast_member_concurrency shows the lowered concurrency (lowest seen: ${lowest})`);
});
