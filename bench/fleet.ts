// What the cluster-side benches share: a hub namespace holding one
// ClusterTarget (and kubeconfig Secret) per member and the database Secret.
import { API_VERSION, CLUSTER_TARGET, type RateLimit } from '../src/api/index.ts';
import type { HarnessState } from '../test/harness/control-plane.ts';
import { adminRequest, type ClusterInfo } from '../test/harness/kube-apiserver.ts';

export async function post(cluster: ClusterInfo, path: string, body: unknown): Promise<void> {
  const response = await adminRequest(cluster, 'POST', path, body, 30_000);
  if (response.status >= 300) throw new Error(`POST ${path}: ${response.status} ${response.body}`);
}

/** The namespace on the hub and every member, a ClusterTarget per member, and Secret `db` for the harness's PostgreSQL. */
export async function registerFleet(state: HarnessState, namespace: string, rateLimit: RateLimit): Promise<void> {
  const { hub, members, postgres } = state;
  await post(hub, '/api/v1/namespaces', { metadata: { name: namespace } });
  for (const member of members) {
    await post(member, '/api/v1/namespaces', { metadata: { name: namespace } });
    await post(hub, `/api/v1/namespaces/${namespace}/secrets`, { metadata: { name: member.name, labels: { 'rowcast.dev/watch': 'true' } }, stringData: { kubeconfig: member.kubeconfig } });
    await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}`, {
      apiVersion: API_VERSION,
      kind: CLUSTER_TARGET.kind,
      metadata: { name: member.name },
      spec: { kubeconfigSecretRef: { name: member.name, key: 'kubeconfig' }, rateLimit },
    });
  }
  await post(hub, `/api/v1/namespaces/${namespace}/secrets`, {
    metadata: { name: 'db', labels: { 'rowcast.dev/watch': 'true' } },
    stringData: { host: postgres.host, port: String(postgres.port), username: postgres.user, password: postgres.password, dbname: 'postgres', sslmode: 'disable' },
  });
}
