import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
import yaml from 'js-yaml';
import { parse as parseConnectionString } from 'pg-connection-string';
import {
  API_VERSION,
  CLUSTER_TARGET,
  DATABASE_QUERY_RESOURCE,
  GROUP,
  YAML_LIMITS,
  loadYamlDocuments,
  parseClusterTarget,
  parseDatabaseQueryResource,
  type ClusterTarget,
  type DatabaseQueryResource,
} from '../api/index.ts';
import { selectTargets, type TargetRefusal } from '../sync/index.ts';
import { TemplateError, compileTemplate, type CompiledTemplate } from '../render/index.ts';
import { MemberApi, MemberKubeConfig } from '../clusters/index.ts';
import { sslModes, withConnectionDefaults, type ConnectionSettings, type SslMode } from '../db/index.ts';

/** Exit codes the commands share, for scripts: 0 done, 1 something failed, 2 bad usage or input. */
export const EXIT = { ok: 0, failed: 1, usage: 2, changes: 3 } as const;

/** A command's error for the person at the terminal; exits with `code`. */
export class CliError extends Error {
  readonly code: number;
  constructor(message: string, code: number = EXIT.failed) {
    super(message);
    this.code = code;
  }
}

/** The DatabaseQueryResource in a file (the first such document), parsed and defaulted, or every problem with its field. */
export async function readDqrFile(path: string, namespace: string | undefined): Promise<{ dqr: DatabaseQueryResource; raw: Record<string, unknown> }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, EXIT.usage);
  }
  const loaded = loadYamlDocuments(text, YAML_LIMITS.file);
  if (!loaded.ok) {
    const what = loaded.problem.kind === 'invalid' ? 'is not valid YAML' : 'is refused';
    throw new CliError(`${path} ${what}: ${loaded.problem.message}`, EXIT.usage);
  }
  const raw = loaded.documents.find((d): d is Record<string, unknown> => typeof d === 'object' && d !== null && (d as { kind?: unknown }).kind === DATABASE_QUERY_RESOURCE.kind);
  if (raw === undefined) throw new CliError(`${path} holds no ${DATABASE_QUERY_RESOURCE.kind}`, EXIT.usage);
  const metadata = { ...((raw['metadata'] ?? {}) as Record<string, unknown>) };
  if (namespace !== undefined) metadata['namespace'] = namespace;
  metadata['namespace'] ??= 'default';
  const withNamespace = { ...raw, metadata };
  const parsed = parseDatabaseQueryResource(withNamespace);
  if (!parsed.ok) throw new CliError(`${path}: invalid ${DATABASE_QUERY_RESOURCE.kind}:\n${parsed.errors.map((e) => `  ${e.path}: ${e.message}`).join('\n')}`, EXIT.usage);
  return { dqr: parsed.value, raw: withNamespace };
}

/** postgres://user:password@host:port/db?sslmode=... into the settings Rowcast's pools take. */
export function settingsFromUrl(url: string, pool: DatabaseQueryResource['spec']['database']['pool']): ConnectionSettings {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1];
  if (scheme === undefined) throw new CliError('--database-url: not a URL; expected postgres://user:password@host:port/database', EXIT.usage);
  if (scheme !== 'postgres' && scheme !== 'postgresql') throw new CliError(`--database-url: scheme ${JSON.stringify(scheme)}: Rowcast reads PostgreSQL only (postgres:// or postgresql://)`, EXIT.usage);
  let parsed: ReturnType<typeof parseConnectionString>;
  let sslmode: string | undefined;
  try {
    parsed = parseConnectionString(url);
    sslmode = new URL(url.replace(/^postgres(ql)?:/, 'http:')).searchParams.get('sslmode') ?? undefined;
  } catch {
    // The URL itself is not echoed: it holds the password.
    throw new CliError('--database-url: malformed URL; expected postgres://user:password@host:port/database', EXIT.usage);
  }
  if (sslmode !== undefined && !sslModes.includes(sslmode as SslMode)) throw new CliError(`--database-url: unknown sslmode ${JSON.stringify(sslmode)}`, EXIT.usage);
  if ((parsed.host ?? '') === '' || (parsed.database ?? '') === '') {
    throw new CliError('--database-url: expected postgres://user:password@host:port/database', EXIT.usage);
  }
  return withConnectionDefaults({
    host: parsed.host ?? '',
    port: (parsed.port ?? '') === '' ? undefined : Number(parsed.port),
    database: parsed.database ?? '',
    user: parsed.user ?? '',
    password: parsed.password ?? '',
    sslmode: sslmode as SslMode | undefined,
    pool: { max: 2, idleTimeoutMs: pool.idleTimeoutMs, statementTimeoutMs: pool.statementTimeoutMs },
  });
}

/** The hub, from a kubeconfig file (or $KUBECONFIG, or ~/.kube/config) and an optional context. */
export function hubFromKubeconfig(path: string | undefined, context: string | undefined): MemberApi {
  const kubeConfig = new KubeConfig();
  try {
    if (path === undefined) kubeConfig.loadFromDefault();
    else kubeConfig.loadFromFile(path);
    if (context !== undefined) kubeConfig.setCurrentContext(context);
  } catch (error) {
    throw new CliError(`cannot load the hub kubeconfig: ${error instanceof Error ? error.message : String(error)}`, EXIT.usage);
  }
  if (kubeConfig.getCurrentCluster() === null) throw new CliError('the hub kubeconfig has no current cluster (pass --kubeconfig or --context)', EXIT.usage);
  try {
    return new MemberApi(new MemberKubeConfig(kubeConfig.exportConfig(), { requestTimeoutMs: 30_000 }));
  } catch (error) {
    throw new CliError(`cannot load the hub kubeconfig: ${error instanceof Error ? error.message : String(error)}`, EXIT.usage);
  }
}

/** name or name:key=value,key=value */
export function parseClusterFlag(flag: string): { name: string; labels: Record<string, string> } {
  const colon = flag.indexOf(':');
  const name = colon === -1 ? flag : flag.slice(0, colon);
  const labels: Record<string, string> = {};
  if (colon !== -1) {
    for (const pair of flag.slice(colon + 1).split(',').filter((p) => p !== '')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new CliError(`--cluster ${flag}: expected NAME or NAME:key=value,...`, EXIT.usage);
      labels[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) throw new CliError(`--cluster ${flag}: ${JSON.stringify(name)} is not a cluster name`, EXIT.usage);
  return { name, labels };
}

/** The DQR's template compiled, or a usage error naming the template line. */
export function compileDqrTemplate(dqr: DatabaseQueryResource): CompiledTemplate {
  try {
    return compileTemplate(dqr.spec.template);
  } catch (error) {
    const where = error instanceof TemplateError && error.line !== undefined ? ` line ${error.line}` : '';
    throw new CliError(`spec.template${where}: ${error instanceof Error ? error.message : String(error)}`, EXIT.usage);
  }
}

/** The version in package.json, the one place it is kept. */
export function rowcastVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** A hub without the CRDs answers 404 to every Rowcast path: say that instead. */
export async function requireCrds(hub: MemberApi): Promise<void> {
  const wanted = [DATABASE_QUERY_RESOURCE.plural, CLUSTER_TARGET.plural];
  let served: string[] = [];
  try {
    served = (await hub.request<{ resources?: { name: string }[] }>('GET', `/apis/${API_VERSION}`)).resources?.map((r) => r.name) ?? [];
  } catch (error) {
    if ((error as { code?: number }).code !== 404) throw error;
  }
  const missing = wanted.filter((plural) => !served.includes(plural));
  if (missing.length > 0) {
    throw new CliError(`the hub does not serve ${missing.map((p) => `${p}.${GROUP}`).join(' and ')}: the Rowcast CRDs are not installed (kubectl apply --server-side -f crds/)`);
  }
}

/**
 * The ClusterTargets a DQR selects on the hub, and those it names but may not use.
 * Selecting none is an error: there would be nothing to render or plan.
 */
export async function selectedOnHub(hub: MemberApi, dqr: DatabaseQueryResource): Promise<{ selected: ClusterTarget[]; refused: TargetRefusal[] }> {
  await requireCrds(hub);
  const namespace = dqr.metadata.namespace ?? 'default';
  // Without cluster-wide list rights, the DQR's own namespace is what can be seen.
  const list = await hub
    .request<{ items: unknown[] }>('GET', `/apis/${API_VERSION}/${CLUSTER_TARGET.plural}`)
    .catch(() => hub.request<{ items: unknown[] }>('GET', `/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}`));
  const all: ClusterTarget[] = [];
  for (const item of list.items) {
    const parsed = parseClusterTarget(item);
    if (parsed.ok) all.push(parsed.value);
  }
  const selection = selectTargets(namespace, dqr.spec.targets, all);
  if (selection.selected.length === 0) {
    const why = selection.refused.length > 0 ? selection.refused.map((r) => r.message).join('; ') : `no ClusterTarget matches spec.targets (${all.length} on the hub)`;
    throw new CliError(`${namespace}/${dqr.metadata.name} selects no ClusterTarget: ${why}`);
  }
  return selection;
}

/** --cluster flags checked against the DQR's targets, as if each were a ClusterTarget in the DQR's namespace. */
export function selectedFlagClusters(dqr: DatabaseQueryResource, flags: readonly { name: string; labels: Record<string, string> }[]): ClusterTarget[] {
  const namespace = dqr.metadata.namespace ?? 'default';
  const targets: ClusterTarget[] = [];
  for (const flag of flags) {
    const parsed = parseClusterTarget({ apiVersion: API_VERSION, kind: CLUSTER_TARGET.kind, metadata: { name: flag.name, namespace, labels: flag.labels }, spec: { kubeconfigSecretRef: { name: 'none', key: 'kubeconfig' } } });
    if (!parsed.ok) throw new CliError(`--cluster ${flag.name}: ${parsed.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, EXIT.usage);
    targets.push(parsed.value);
  }
  const selected = new Set(selectTargets(namespace, dqr.spec.targets, targets).selected.map((t) => t.metadata.name));
  for (const flag of flags) {
    if (!selected.has(flag.name)) throw new CliError(`--cluster ${flag.name}: the DQR's spec.targets do not select a cluster with this name and labels`, EXIT.usage);
  }
  return targets;
}

export type OutputFormat = 'text' | 'json' | 'yaml';

/** -o: text for people, json or yaml for scripts. */
export function outputFormat(value: string | undefined): OutputFormat {
  if (value === undefined || value === 'text' || value === 'json' || value === 'yaml') return value ?? 'text';
  throw new CliError(`-o ${JSON.stringify(value)}: expected text, json or yaml`, EXIT.usage);
}

export function printStructured(value: unknown, format: 'json' | 'yaml'): void {
  process.stdout.write(format === 'json' ? `${JSON.stringify(value, null, 2)}\n` : yaml.dump(value, { lineWidth: -1, noRefs: true }));
}
