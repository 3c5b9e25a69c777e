import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { parseArgs } from 'node:util';
import yaml from 'js-yaml';
import { API_VERSION, CLUSTER_TARGET, WATCH_LABEL, YAML_LIMITS, loadYamlDocument } from '../api/index.ts';
import { MemberApi, MemberKubeConfig, vetKubeconfig } from '../clusters/index.ts';
import { describeApiError } from '../runtime/index.ts';
import { CliError, EXIT, hubFromKubeconfig, requireCrds } from './common.ts';

export const clusterAddHelp = `usage: rowcast cluster add NAME --context CONTEXT [flags]

Registers a member cluster with the hub: a Secret holding a kubeconfig for
CONTEXT (file references inlined, only that context kept) and a ClusterTarget
NAME pointing at it, both applied with server-side apply.

flags:
  --context NAME               the member's context in the source kubeconfig (required)
  --source-kubeconfig PATH     where that context is (default: $KUBECONFIG, ~/.kube/config)
  --kubeconfig PATH            the hub's kubeconfig (default: $KUBECONFIG, ~/.kube/config)
  --hub-context NAME           the hub's context (default: the current one)
  -n, --namespace NS           hub namespace of the ClusterTarget and Secret (default: default)
  --label KEY=VALUE            a label on the ClusterTarget, for clusterSelector (repeatable)
  --allow-exec-auth            store an exec/auth-provider kubeconfig (the controller must run with --allow-exec-auth)
  --allow-insecure-kubeconfigs store a kubeconfig with insecure-skip-tls-verify or plain http (the controller must run with that flag too)
  --service-account NS         instead of copying CONTEXT's credentials: create ServiceAccount
                               rowcast-manager in member namespace NS with a ClusterRole bounded to
                               the kinds Rowcast manages (--resource), and register a token for it
  --resource GROUP/RESOURCE    with --service-account: a kind Rowcast may manage, e.g. /configmaps,
                               apps/deployments (repeatable; default: /configmaps)
  --token-duration HOURS       with --service-account: how long the token lasts (default: 8760, a year;
                               the member's --service-account-max-token-expiration may cap it)
  --dry-run                    print the Secret and ClusterTarget instead of applying them
  -h, --help                   this text

The member must answer (GET /version) before anything is written to the hub;
if the hub refuses the ClusterTarget, the Secret written for it is removed.

exit codes: 0 registered, 1 the member did not answer or the hub refused, 2 bad usage or a kubeconfig Rowcast would refuse`;

interface Named {
  name: string;
  [key: string]: unknown;
}

function defaultKubeconfigPath(): string {
  return process.env['KUBECONFIG']?.split(delimiter)[0] ?? join(homedir(), '.kube', 'config');
}

/** Reads `key` (a path relative to the kubeconfig) into `key-data`, as base64; the hub cannot read this machine's files. */
function inline(entry: Record<string, unknown>, key: string, dataKey: string, base: string): void {
  const file = entry[key];
  if (typeof file !== 'string') return;
  const path = isAbsolute(file) ? file : join(base, file);
  try {
    entry[dataKey] = key === 'token-file' ? readFileSync(path, 'utf8').trim() : readFileSync(path).toString('base64');
  } catch (error) {
    throw new CliError(`cannot read ${key} ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, EXIT.usage);
  }
  Reflect.deleteProperty(entry, key);
}

/** One context of a kubeconfig, self-contained. */
export function standaloneKubeconfig(text: string, context: string, base: string): string {
  const loaded = loadYamlDocument(text, YAML_LIMITS.kubeconfig);
  if (!loaded.ok) throw new CliError(`the source kubeconfig ${loaded.problem.kind === 'invalid' ? 'is not valid YAML' : 'is refused'}: ${loaded.problem.message}`, EXIT.usage);
  const doc = loaded.value as { contexts?: Named[]; clusters?: Named[]; users?: Named[] } | undefined;
  const ctx = doc?.contexts?.find((c) => c.name === context);
  if (ctx === undefined) throw new CliError(`context ${JSON.stringify(context)} not found in the source kubeconfig`, EXIT.usage);
  const body = (ctx['context'] ?? {}) as { cluster?: string; user?: string };
  const cluster = structuredClone(doc?.clusters?.find((c) => c.name === body.cluster));
  const user = structuredClone(doc?.users?.find((u) => u.name === body.user));
  if (cluster === undefined) throw new CliError(`context ${context}: cluster ${String(body.cluster)} not found`, EXIT.usage);
  const clusterBody = (cluster['cluster'] ?? {}) as Record<string, unknown>;
  inline(clusterBody, 'certificate-authority', 'certificate-authority-data', base);
  if (user !== undefined) {
    const userBody = (user['user'] ?? {}) as Record<string, unknown>;
    inline(userBody, 'client-certificate', 'client-certificate-data', base);
    inline(userBody, 'client-key', 'client-key-data', base);
    inline(userBody, 'token-file', 'token', base);
  }
  return yaml.dump({ apiVersion: 'v1', kind: 'Config', clusters: [cluster], users: user === undefined ? [] : [user], contexts: [ctx], 'current-context': context });
}

/** Registering a member that does not answer would only move the failure to the controller's status. */
async function memberAnswers(kubeconfig: string): Promise<void> {
  const api = new MemberApi(new MemberKubeConfig(kubeconfig, { requestTimeoutMs: 10_000 }));
  const server = api.server;
  try {
    await api.request('GET', '/version');
  } catch (error) {
    throw new CliError(`the member at ${server} does not answer: ${describeApiError(error).message.split('\n')[0] ?? ''}; nothing was registered`);
  } finally {
    await api.close();
  }
}

const SERVICE_ACCOUNT = 'rowcast-manager';

/**
 * Like `argocd cluster add`: a ServiceAccount on the member with a ClusterRole
 * that covers only the kinds Rowcast will manage there, and a kubeconfig that
 * authenticates with its token instead of CONTEXT's own credentials.
 */
async function serviceAccountKubeconfig(admin: string, namespace: string, resources: readonly string[], durationHours: string | undefined): Promise<string> {
  const hours = durationHours === undefined ? 8760 : Number(durationHours);
  if (!Number.isInteger(hours) || hours < 1) throw new CliError(`--token-duration ${durationHours ?? ''}: expected a whole number of hours`, EXIT.usage);
  const rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] = [];
  for (const entry of resources) {
    const slash = entry.indexOf('/');
    if (slash === -1 || entry.slice(slash + 1) === '') throw new CliError(`--resource ${entry}: expected GROUP/RESOURCE, e.g. /configmaps or apps/deployments`, EXIT.usage);
    rules.push({ apiGroups: [entry.slice(0, slash)], resources: [entry.slice(slash + 1)], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] });
  }
  const api = new MemberApi(new MemberKubeConfig(admin, { requestTimeoutMs: 30_000 }));
  const apply = (path: string, body: Record<string, unknown>): Promise<unknown> =>
    api.request('PATCH', path, { query: { fieldManager: 'rowcast-cli', force: 'true' }, body, contentType: 'application/apply-patch+yaml' });
  const labels = { 'app.kubernetes.io/managed-by': 'rowcast-cli' };
  try {
    await apply(`/api/v1/namespaces/${namespace}`, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
    await apply(`/api/v1/namespaces/${namespace}/serviceaccounts/${SERVICE_ACCOUNT}`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: SERVICE_ACCOUNT, namespace, labels } });
    await apply(`/apis/rbac.authorization.k8s.io/v1/clusterroles/${SERVICE_ACCOUNT}`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: SERVICE_ACCOUNT, labels },
      // Besides the managed kinds: discovery (which resource a kind is) and the probe's /readyz.
      rules: [...rules, { nonResourceURLs: ['/readyz', '/version', '/api', '/api/*', '/apis', '/apis/*'], verbs: ['get'] }],
    });
    await apply(`/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${SERVICE_ACCOUNT}`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: SERVICE_ACCOUNT, labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: SERVICE_ACCOUNT },
      subjects: [{ kind: 'ServiceAccount', name: SERVICE_ACCOUNT, namespace }],
    });
    const issued = await api.request<{ status: { token: string; expirationTimestamp: string } }>('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${SERVICE_ACCOUNT}/token`, {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: hours * 3600 } },
    });
    process.stderr.write(`note: ServiceAccount ${namespace}/${SERVICE_ACCOUNT} on the member; its token expires ${issued.status.expirationTimestamp}: run cluster add --service-account again before then\n`);
    const doc = yaml.load(admin) as { users: { name: string; user: Record<string, unknown> }[] };
    for (const user of doc.users) user.user = { token: issued.status.token };
    return yaml.dump(doc);
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(`the member refused the ServiceAccount, its ClusterRole or its token: ${describeApiError(error).message.split('\n')[0] ?? ''}; nothing was registered`);
  } finally {
    await api.close();
  }
}

export async function clusterAddCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      context: { type: 'string' },
      'source-kubeconfig': { type: 'string' },
      kubeconfig: { type: 'string' },
      'hub-context': { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      label: { type: 'string', multiple: true },
      'allow-exec-auth': { type: 'boolean' },
      'allow-insecure-kubeconfigs': { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      'service-account': { type: 'string' },
      resource: { type: 'string', multiple: true },
      'token-duration': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${clusterAddHelp}\n`);
    return EXIT.ok;
  }
  const [name, ...extra] = positionals;
  if (name === undefined || extra.length > 0 || values.context === undefined) throw new CliError(`NAME and --context are required\n\n${clusterAddHelp}`, EXIT.usage);
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) throw new CliError(`${JSON.stringify(name)} is not a valid ClusterTarget name (a DNS label)`, EXIT.usage);
  const labels: Record<string, string> = {};
  for (const pair of values.label ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliError(`--label ${pair}: expected KEY=VALUE`, EXIT.usage);
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const sourcePath = values['source-kubeconfig'] ?? defaultKubeconfigPath();
  let sourceText: string;
  try {
    sourceText = readFileSync(sourcePath, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read ${sourcePath}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, EXIT.usage);
  }
  const policy = { allowExecAuth: values['allow-exec-auth'] === true, allowFilePaths: false, allowInsecure: values['allow-insecure-kubeconfigs'] === true };
  const vet = (text: string): ReturnType<typeof vetKubeconfig> & { ok: true } => {
    const vetted = vetKubeconfig(text, policy);
    if (!vetted.ok) throw new CliError(`the controller would refuse this kubeconfig:\n${vetted.problems.map((p) => `  ${p.field}: ${p.message}`).join('\n')}`, EXIT.usage);
    return vetted;
  };
  let kubeconfig = standaloneKubeconfig(sourceText, values.context, dirname(sourcePath));
  // With --service-account the context's own credentials (an exec plugin, say) are used here only, never stored.
  if (values['service-account'] === undefined) vet(kubeconfig);
  if (values['dry-run'] !== true) {
    // The hub first: nothing is created on the member for a hub that cannot take the ClusterTarget.
    const hub = hubFromKubeconfig(values.kubeconfig, values['hub-context']);
    try {
      await requireCrds(hub);
    } finally {
      await hub.close();
    }
    await memberAnswers(kubeconfig);
    if (values['service-account'] !== undefined) kubeconfig = await serviceAccountKubeconfig(kubeconfig, values['service-account'], values.resource ?? ['/configmaps'], values['token-duration']);
  }
  const vetted = vet(kubeconfig);
  const namespace = values.namespace ?? 'default';
  const secretName = `${name}-kubeconfig`;
  const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: secretName, namespace, labels: { 'app.kubernetes.io/managed-by': 'rowcast-cli', [WATCH_LABEL]: 'true' } }, type: 'Opaque', stringData: { kubeconfig } };
  const target = {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name, namespace, labels },
    spec: { kubeconfigSecretRef: { name: secretName, key: 'kubeconfig' } },
  };
  if (values['dry-run'] === true) {
    process.stdout.write(`---\n${yaml.dump({ ...secret, stringData: { kubeconfig: '<redacted>' } })}---\n${yaml.dump(target)}`);
    return EXIT.ok;
  }
  const hub = hubFromKubeconfig(values.kubeconfig, values['hub-context']);
  try {
    const apply = (path: string, body: unknown): Promise<unknown> =>
      hub.request('PATCH', path, { query: { fieldManager: 'rowcast-cli', force: 'true' }, body, contentType: 'application/apply-patch+yaml' });
    const secretPath = `/api/v1/namespaces/${namespace}/secrets/${secretName}`;
    const existed = await hub.request('GET', secretPath).then(
      () => true,
      (error: unknown) => {
        if ((error as { code?: number }).code === 404) return false;
        throw error;
      },
    );
    await apply(secretPath, secret);
    try {
      await apply(`/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}/${name}`, target);
    } catch (error) {
      // A Secret of ours with no ClusterTarget to read it is a credential lying about.
      if (!existed) await hub.request('DELETE', secretPath).catch(() => undefined);
      throw error;
    }
  } catch (error) {
    const status = (error as { body?: string }).body;
    let message = error instanceof Error ? error.message : String(error);
    try {
      message = (JSON.parse(status ?? '') as { message?: string }).message ?? message;
    } catch {
      // not a Status body
    }
    throw new CliError(`the hub refused: ${message}`);
  } finally {
    await hub.close();
  }
  process.stdout.write(`registered ${namespace}/${name} (${vetted.value.server}); Secret ${namespace}/${secretName}\nwatch it connect: kubectl -n ${namespace} get ct ${name}\n`);
  return EXIT.ok;
}
