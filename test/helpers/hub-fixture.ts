import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE } from '../../src/api/index.ts';
import { parseControllerOptions, type ControllerOptions } from '../../src/config/index.ts';
import { HubController } from '../../src/hub/index.ts';
import { Metrics, SecretScrubber, createLogger } from '../../src/telemetry/index.ts';
import { adminRequest } from '../harness/kube-apiserver.ts';
import type { TestCluster, TestEnv } from '../harness/test-env.ts';

/** A running controller watching only the test file's namespace, with its log lines kept for inspection. */
export interface RunningController {
  controller: HubController;
  metrics: Metrics;
  logs: string[];
  stop(): Promise<void>;
}

/** `scrubber`: share one with the test's tracing, as main shares its own. */
export async function startController(env: TestEnv, flags: string[] = [], scrubber = new SecretScrubber()): Promise<RunningController> {
  const parsed = parseControllerOptions(
    ['--namespace', env.namespace, '--probe-interval', '2s', '--request-timeout', '3s', '--hub-id', `hub-${env.namespace}`, '--log-level', 'debug', ...flags],
    {},
  );
  if (!parsed.ok) throw new Error(parsed.help ? 'help' : parsed.error);
  const options: ControllerOptions = parsed.options;
  const logs: string[] = [];
  const logger = createLogger({ level: options.logLevel, scrubber, write: (line) => logs.push(line) });
  const metrics = new Metrics();
  const controller = new HubController({ options, logger, scrubber, metrics, hubKubeconfig: env.hub.info.kubeconfig });
  await controller.start();
  return { controller, metrics, logs, stop: () => controller.stop() };
}

const b64 = (text: string): string => Buffer.from(text).toString('base64');

export async function applyHub(env: TestEnv, path: string, body: Record<string, unknown>): Promise<void> {
  const response = await adminRequest(env.state.hub, 'POST', path, body);
  if (response.status === 409) {
    const name = (body['metadata'] as { name: string }).name;
    // The controller writes the object (status, finalizer, annotations) between our GET and PUT at times: read again and retry.
    for (let attempt = 1; ; attempt++) {
      const current = await adminRequest(env.state.hub, 'GET', `${path}/${name}`);
      const resourceVersion = (JSON.parse(current.body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
      const replaced = await adminRequest(env.state.hub, 'PUT', `${path}/${name}`, { ...body, metadata: { ...(body['metadata'] as object), resourceVersion } });
      if (replaced.status === 409 && attempt < 5) continue;
      if (replaced.status >= 300) throw new Error(`PUT ${path}/${name}: ${replaced.status} ${replaced.body}`);
      return;
    }
  }
  if (response.status >= 300) throw new Error(`POST ${path}: ${response.status} ${response.body}`);
}

export async function putSecret(env: TestEnv, name: string, data: Record<string, string>): Promise<void> {
  await applyHub(env, `/api/v1/namespaces/${env.namespace}/secrets`, {
    apiVersion: 'v1',
    kind: 'Secret',
    // Rowcast reads only Secrets labelled for it.
    metadata: { name, labels: { 'rowcast.dev/watch': 'true' } },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
  });
}

/** A ClusterTarget in the test namespace and the Secret `<name>-kubeconfig` its kubeconfig is read from. */
export async function putClusterTarget(env: TestEnv, name: string, kubeconfig: string, spec: Record<string, unknown> = {}): Promise<void> {
  await putSecret(env, `${name}-kubeconfig`, { kubeconfig });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name },
    spec: { kubeconfigSecretRef: { name: `${name}-kubeconfig`, key: 'kubeconfig' }, ...spec },
  });
}

/** Registers every member as a ClusterTarget (kubeconfig in a Secret), labelled region=<name>. */
export async function registerMembers(env: TestEnv, extraSpec: Record<string, unknown> = {}): Promise<void> {
  for (const member of env.members) {
    await putSecret(env, `${member.info.name}-kubeconfig`, { kubeconfig: member.info.kubeconfig });
    await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
      apiVersion: API_VERSION,
      kind: CLUSTER_TARGET.kind,
      metadata: { name: member.info.name, labels: { region: member.info.name === 'member-1' ? 'east' : 'west' } },
      spec: { kubeconfigSecretRef: { name: `${member.info.name}-kubeconfig`, key: 'kubeconfig' }, ...extraSpec },
    });
  }
}

export async function putDatabaseSecret(env: TestEnv, name = 'db', overrides: Record<string, string> = {}): Promise<void> {
  await putSecret(env, name, {
    host: env.db.host,
    port: String(env.db.port),
    username: env.db.user,
    password: env.db.password,
    dbname: env.db.database,
    sslmode: 'disable',
    ...overrides,
  });
}

export async function putDqr(env: TestEnv, name: string, spec: Record<string, unknown>, metadata: Record<string, unknown> = {}): Promise<void> {
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${DATABASE_QUERY_RESOURCE.plural}`, {
    apiVersion: API_VERSION,
    kind: DATABASE_QUERY_RESOURCE.kind,
    metadata: { name, ...metadata },
    spec: { database: { connectionSecretRef: { name: 'db' } }, pollInterval: '1s', targets: { clusterSelector: {} }, ...spec },
  });
}

export async function getHub(env: TestEnv, path: string): Promise<Record<string, unknown> | undefined> {
  const response = await adminRequest(env.state.hub, 'GET', path);
  if (response.status === 404) return undefined;
  if (response.status >= 300) throw new Error(`GET ${path}: ${response.status}`);
  return JSON.parse(response.body) as Record<string, unknown>;
}

export function dqrPath(env: TestEnv, name: string): string {
  return `/apis/${API_VERSION}/namespaces/${env.namespace}/${DATABASE_QUERY_RESOURCE.plural}/${name}`;
}

export interface DqrStatus {
  observedGeneration?: number;
  rowCount?: number;
  conditions?: { type: string; status: string; reason: string; message: string }[];
  clusters?: { name: string; applied?: number; failed?: number; pruned?: number; lastError?: string }[];
  failingRows?: { rowKey: string; cluster?: string; field?: string; message: string }[];
}

export async function dqrStatus(env: TestEnv, name: string): Promise<DqrStatus> {
  return ((await getHub(env, dqrPath(env, name)))?.['status'] ?? {});
}

export function condition(status: DqrStatus, type: string): { status: string; reason: string; message: string } | undefined {
  return status.conditions?.find((c) => c.type === type);
}

/** Polls until check returns a value (not undefined) or fails with the last seen state. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`, { cause: last });
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

export async function configMaps(cluster: TestCluster, namespace: string): Promise<Map<string, Record<string, string>>> {
  const list = await cluster.core.listNamespacedConfigMap({ namespace });
  return new Map(list.items.filter((c) => c.metadata?.name !== 'kube-root-ca.crt').map((c) => [c.metadata?.name ?? '', c.data ?? {}]));
}

/** Server-side apply requests the member's apiserver has served for a resource (its own counter). */
export async function applyCount(cluster: TestCluster, resource: string): Promise<number> {
  const metrics = await adminRequest(cluster.info, 'GET', '/metrics');
  let total = 0;
  for (const line of metrics.body.split('\n')) {
    if (line.startsWith('apiserver_request_total{') && line.includes('verb="APPLY"') && line.includes(`resource="${resource}"`)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}
