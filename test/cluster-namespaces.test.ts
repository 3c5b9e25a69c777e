import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { parseControllerOptions } from '../src/config/index.ts';
import { HubController } from '../src/hub/index.ts';
import { Metrics, SecretScrubber, createLogger } from '../src/telemetry/index.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { startStallProxy, type StallProxy } from './helpers/stall-proxy.ts';
import { openTestEnv, type TestCluster } from './harness/test-env.ts';
import { applyHub, configMaps, dqrStatus, eventually, getHub, dqrPath, putDatabaseSecret, putDqr } from './helpers/hub-fixture.ts';

// Two ClusterTargets named alike in two namespaces: names are unique only per namespace.
const env = await openTestEnv('cluster-namespaces');
const [east, west] = env.members as [TestCluster, TestCluster];
const teamA = `${env.namespace}-a`;
const teamB = `${env.namespace}-b`;
let controller: HubController | undefined;
let metrics: Metrics | undefined;
const proxies: StallProxy[] = [];

/**
 * Through a proxy of the test's own: this controller watches every namespace,
 * and the targets other test files left on the shared hub reach the members
 * at their own URLs, which would make these duplicates.
 */
async function putTarget(namespace: string, member: TestCluster): Promise<void> {
  const proxy = await startStallProxy(Number(new URL(member.info.server).port));
  proxies.push(proxy);
  const kubeconfig = member.info.kubeconfig.replace(member.info.server, `https://127.0.0.1:${proxy.port}`);
  await applyHub(env, `/api/v1/namespaces/${namespace}/secrets`, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'kubeconfig', labels: { 'rowcast.dev/watch': 'true' } },
    data: { kubeconfig: Buffer.from(kubeconfig).toString('base64') },
  });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'east' },
    spec: { kubeconfigSecretRef: { name: 'kubeconfig', key: 'kubeconfig' }, allowedSourceNamespaces: [env.namespace] },
  });
}

before(async () => {
  for (const namespace of [teamA, teamB]) {
    const created = await adminRequest(env.state.hub, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
    assert.ok(created.status < 300, created.body);
  }
  await putTarget(teamA, east);
  await putTarget(teamB, west);
  await putDatabaseSecret(env);
  await env.sql("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1), (2), (3), (4), (5), (6)");
  // Every namespace: the targets live outside the DQR's.
  const parsed = parseControllerOptions(['--probe-interval', '2s', '--request-timeout', '3s', '--hub-id', `hub-${env.namespace}`, '--log-level', 'error'], {});
  assert.ok(parsed.ok);
  const scrubber = new SecretScrubber();
  metrics = new Metrics();
  controller = new HubController({ options: parsed.options, logger: createLogger({ level: 'error', scrubber, write: () => undefined }), scrubber, metrics, hubKubeconfig: env.hub.info.kubeconfig });
  await controller.start();
});

env.defer(async () => {
  await controller?.stop();
  for (const proxy of proxies) await proxy.close();
});

const names = async (member: TestCluster): Promise<string> => [...(await configMaps(member, env.namespace)).keys()].sort().join(',');

test('two ClusterTargets named alike in two namespaces are kept apart in the ledger, the metrics, the status and the prune', async () => {
  await putDqr(env, 'items', {
    query: 'SELECT id FROM items ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: item-{{row.id}}\n',
    ledger: { table: 'ledger' },
  });
  const all = 'item-1,item-2,item-3,item-4,item-5,item-6';
  await eventually('applied on both members', async () => ((await names(east)) === all && (await names(west)) === all ? true : undefined));
  const ledgerClusters = async (): Promise<string> =>
    (await env.sql<{ cluster: string; n: string }>('SELECT cluster, count(*) AS n FROM ledger GROUP BY cluster ORDER BY cluster')).rows.map((r) => `${r.cluster}=${r.n}`).join(' ');
  await eventually('one ledger row per object per cluster', async () => ((await ledgerClusters()) === `${teamA}/east=6 ${teamB}/east=6` ? true : undefined));
  await eventually('status names each cluster by namespace/name', async () =>
    ((await dqrStatus(env, 'items')).clusters ?? []).map((c) => `${c.name}:${c.applied}`).join(' ') === `${teamA}/east:6 ${teamB}/east:6` ? true : undefined,
  );
  // The status is written before the sync's metrics are counted: wait for them.
  const text = await eventually('metrics of both clusters', async () => {
    const scraped = (await metrics?.registry.metrics()) ?? '';
    const sample = (series: string): number => Number(scraped.split('\n').find((line) => line.startsWith(`${series} `))?.split(' ')[1] ?? Number.NaN);
    return [teamA, teamB].every(
      (namespace) => sample(`rowcast_member_reachable{cluster="${namespace}/east"}`) === 1 && sample(`rowcast_applies_total{cluster="${namespace}/east",result="applied"}`) >= 6,
    )
      ? scraped
      : undefined;
  });
  assert.doesNotMatch(text, /cluster="east"/);

  await env.sql('DELETE FROM items WHERE id = 6');
  const five = 'item-1,item-2,item-3,item-4,item-5';
  await eventually('pruned on both members', async () => ((await names(east)) === five && (await names(west)) === five ? true : undefined));
  await eventually('ledger rows of the pruned object gone on both', async () => ((await ledgerClusters()) === `${teamA}/east=5 ${teamB}/east=5` ? true : undefined));

  await env.sql('DELETE FROM items WHERE id > 1');
  const pending = await eventually('a prune over the limit waits', async () => {
    const status = (await getHub(env, dqrPath(env, 'items')))?.['status'] as { pendingPrune?: { clusters: { name: string; managed: number }[] } } | undefined;
    return status?.pendingPrune;
  });
  assert.deepEqual(
    pending.clusters.map((c) => `${c.name}=${c.managed}`).sort(),
    [`${teamA}/east=5`, `${teamB}/east=5`],
  );
});
