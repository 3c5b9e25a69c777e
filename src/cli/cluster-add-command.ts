import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { parseArgs } from 'node:util';
import yaml from 'js-yaml';
import { API_VERSION, CLUSTER_TARGET, WATCH_LABEL, YAML_LIMITS, loadYamlDocument } from '../api/index.ts';
import { vetKubeconfig } from '../clusters/index.ts';
import { CliError, EXIT, hubFromKubeconfig } from './common.ts';

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
  --dry-run                    print the Secret and ClusterTarget instead of applying them
  -h, --help                   this text

exit codes: 0 registered, 1 the hub refused, 2 bad usage or a kubeconfig Rowcast would refuse`;

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
  const kubeconfig = standaloneKubeconfig(sourceText, values.context, dirname(sourcePath));
  const vetted = vetKubeconfig(kubeconfig, { allowExecAuth: values['allow-exec-auth'] === true, allowFilePaths: false, allowInsecure: values['allow-insecure-kubeconfigs'] === true });
  if (!vetted.ok) {
    throw new CliError(`the controller would refuse this kubeconfig:\n${vetted.problems.map((p) => `  ${p.field}: ${p.message}`).join('\n')}`, EXIT.usage);
  }
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
    await apply(`/api/v1/namespaces/${namespace}/secrets/${secretName}`, secret);
    await apply(`/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}/${name}`, target);
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
