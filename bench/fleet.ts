// What the cluster-side benches share: a hub namespace holding one
// ClusterTarget (and kubeconfig Secret) per member and the database Secret, a
// controller in the bench's process, and a watch on the members' ConfigMaps.
import { API_VERSION, CLUSTER_TARGET, type RateLimit } from '../src/api/index.ts';
import { MemberApi, MemberKubeConfig } from '../src/clusters/index.ts';
import { parseControllerOptions } from '../src/config/index.ts';
import { HubController } from '../src/hub/index.ts';
import { Metrics, SecretScrubber, createLogger } from '../src/telemetry/index.ts';
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

/** A controller in this process, watching only `namespace`, quiet but for errors. */
export async function startBenchController(hub: ClusterInfo, namespace: string, flags: readonly string[] = []): Promise<HubController> {
  const parsed = parseControllerOptions(['--namespace', namespace, ...flags], {});
  if (!parsed.ok) throw new Error(parsed.help ? 'help' : parsed.error);
  const scrubber = new SecretScrubber();
  const controller = new HubController({ options: parsed.options, logger: createLogger({ level: 'error', scrubber }), scrubber, metrics: new Metrics(), hubKubeconfig: hub.kubeconfig });
  await controller.start();
  return controller;
}

/** Each member's ConfigMaps in `namespace`, watched: `seen[i]` holds data.v by name, as member i has it now. */
export interface ConfigMapWatch {
  seen: Map<string, string>[];
  /** Resolves once `check` holds, tried again at every event. */
  until: (check: () => boolean) => Promise<void>;
  stop: () => void;
}

export async function watchConfigMaps(members: readonly ClusterInfo[], namespace: string): Promise<ConfigMapWatch> {
  const seen = members.map(() => new Map<string, string>());
  const waiters: (() => void)[] = [];
  const aborts: AbortController[] = [];
  for (const [i, member] of members.entries()) {
    const abort = new AbortController();
    aborts.push(abort);
    const api = new MemberApi(new MemberKubeConfig(member.kubeconfig, { requestTimeoutMs: 30_000 }));
    const lines = await api.watch(`/api/v1/namespaces/${namespace}/configmaps`, {}, abort.signal);
    void (async () => {
      try {
        for await (const line of lines) {
          const { object } = JSON.parse(line) as { object: { metadata?: { name?: string }; data?: Record<string, string> } };
          seen[i]?.set(object.metadata?.name ?? '', object.data?.['v'] ?? '');
          for (const wake of waiters.splice(0)) wake();
        }
      } catch {
        // Stopped.
      } finally {
        await api.close();
      }
    })();
  }
  return {
    seen,
    until: async (check) => {
      while (!check()) await new Promise<void>((resolve) => waiters.push(resolve));
    },
    stop: () => {
      for (const abort of aborts) abort.abort();
    },
  };
}
