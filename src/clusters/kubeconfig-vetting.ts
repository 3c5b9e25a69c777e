import { YAML_LIMITS, loadYamlDocument } from '../api/index.ts';

export interface KubeconfigPolicy {
  /** exec and auth-provider plugins run code or read files on the hub. */
  allowExecAuth: boolean;
  /** Paths to files on the hub (certificate-authority, token-file, ...) could hand the hub's own credentials to a member. */
  allowFilePaths: boolean;
  /** insecure-skip-tls-verify and plain http:// let anyone on the path read the credentials and forge the member. */
  allowInsecure: boolean;
}

export interface KubeconfigProblem {
  /** Path inside the kubeconfig, e.g. `users[0].user.exec`. */
  field: string;
  message: string;
  /** `refused`: valid, but against the controller's policy; `too-large`: over the YAML limits; otherwise invalid. */
  kind?: 'refused' | 'too-large';
}

export interface VettedKubeconfig {
  server: string;
  contextName: string;
  /** The kubeconfig reduced to its current context, safe to hand to KubeConfig.loadFromString. */
  text: string;
}

export type VetResult = { ok: true; value: VettedKubeconfig } | { ok: false; problems: KubeconfigProblem[] };

type Named<T> = { name?: unknown } & T;
type Entry = Record<string, unknown>;

const clusterFilePaths = ['certificate-authority'];
// tokenFile is client-go's spelling, token-file client-node's: Rowcast reads both.
const userFilePaths = ['client-certificate', 'client-key', 'token-file', 'tokenFile'];

function asRecord(value: unknown): Entry | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Entry) : undefined;
}

function findNamed(list: unknown, name: string): { index: number; entry: Named<Entry> } | undefined {
  if (!Array.isArray(list)) return undefined;
  const index = list.findIndex((item) => asRecord(item)?.['name'] === name);
  const entry = asRecord(list[index]);
  return entry === undefined ? undefined : { index, entry };
}

/**
 * Checks a member's kubeconfig before client-node sees it: loading alone would
 * read token files from disk, and exec plugins would run programs on the hub.
 * Only the current context is kept, so nothing else in the file is ever used.
 */
export function vetKubeconfig(text: string, policy: KubeconfigPolicy): VetResult {
  const problems: KubeconfigProblem[] = [];
  const loaded = loadYamlDocument(text, YAML_LIMITS.kubeconfig);
  if (!loaded.ok) {
    const { kind, message } = loaded.problem;
    if (kind === 'invalid') return { ok: false, problems: [{ field: '', message: `not valid YAML: ${message}` }] };
    return { ok: false, problems: [{ field: '', message: `YAML refused: ${message}`, kind: 'too-large' }] };
  }
  const doc = asRecord(loaded.value);
  if (doc === undefined) return { ok: false, problems: [{ field: '', message: 'not a kubeconfig: expected a mapping' }] };

  const contextName = doc['current-context'];
  if (typeof contextName !== 'string' || contextName === '') return { ok: false, problems: [{ field: 'current-context', message: 'must name a context' }] };
  const context = findNamed(doc['contexts'], contextName);
  const contextBody = asRecord(context?.entry['context']);
  if (context === undefined || contextBody === undefined) return { ok: false, problems: [{ field: 'current-context', message: `context "${contextName}" not found` }] };
  const clusterName = contextBody['cluster'];
  const userName = contextBody['user'];
  const cluster = typeof clusterName === 'string' ? findNamed(doc['clusters'], clusterName) : undefined;
  const clusterBody = asRecord(cluster?.entry['cluster']);
  if (cluster === undefined || clusterBody === undefined) {
    return { ok: false, problems: [{ field: `contexts[${context.index}].context.cluster`, message: `cluster ${JSON.stringify(clusterName)} not found` }] };
  }
  const user = typeof userName === 'string' ? findNamed(doc['users'], userName) : undefined;
  const userBody = asRecord(user?.entry['user']) ?? {};
  if (userName !== undefined && user === undefined) {
    problems.push({ field: `contexts[${context.index}].context.user`, message: `user ${JSON.stringify(userName)} not found` });
  }

  const server = clusterBody['server'];
  const clusterPath = `clusters[${cluster.index}].cluster`;
  const userPath = `users[${user?.index ?? 0}].user`;
  const insecureFlag = 'unless the controller runs with --allow-insecure-kubeconfigs';
  if (typeof server !== 'string' || !/^https?:\/\//.test(server)) {
    problems.push({ field: `${clusterPath}.server`, message: 'must be an http(s) URL' });
  } else if (server.startsWith('http://') && !policy.allowInsecure) {
    problems.push({ field: `${clusterPath}.server`, message: `plain http is refused ${insecureFlag}`, kind: 'refused' });
  } else if (server.startsWith('http://') && clusterBody['insecure-skip-tls-verify'] !== true) {
    problems.push({ field: `${clusterPath}.server`, message: 'plain http is refused unless insecure-skip-tls-verify is set', kind: 'refused' });
  }
  if (clusterBody['insecure-skip-tls-verify'] === true && !policy.allowInsecure) {
    problems.push({ field: `${clusterPath}.insecure-skip-tls-verify`, message: `skipping TLS verification is refused ${insecureFlag}`, kind: 'refused' });
  }
  if (clusterBody['proxy-url'] !== undefined) {
    problems.push({ field: `${clusterPath}.proxy-url`, message: 'proxies are not supported yet' });
  }
  if (!policy.allowFilePaths) {
    for (const key of clusterFilePaths) {
      if (clusterBody[key] !== undefined) problems.push({ field: `${clusterPath}.${key}`, message: `file paths are refused; use ${key}-data`, kind: 'refused' });
    }
    for (const key of userFilePaths) {
      if (userBody[key] !== undefined) {
        const inline = key.startsWith('token') ? 'token' : `${key}-data`;
        problems.push({ field: `${userPath}.${key}`, message: `file paths are refused; use ${inline}`, kind: 'refused' });
      }
    }
    if (asRecord(asRecord(userBody['auth-provider'])?.['config'])?.['tokenFile'] !== undefined) {
      problems.push({ field: `${userPath}.auth-provider.config.tokenFile`, message: 'file paths are refused', kind: 'refused' });
    }
  }
  if (!policy.allowExecAuth) {
    for (const key of ['exec', 'auth-provider']) {
      if (userBody[key] !== undefined) {
        problems.push({ field: `${userPath}.${key}`, message: `${key} plugins are refused unless the controller runs with --allow-exec-auth`, kind: 'refused' });
      }
    }
  }
  if (problems.length > 0 || typeof server !== 'string') return { ok: false, problems };

  const reduced = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [cluster.entry],
    users: user === undefined ? [] : [user.entry],
    contexts: [context.entry],
    'current-context': contextName,
  };
  return { ok: true, value: { server, contextName, text: JSON.stringify(reduced) } };
}
