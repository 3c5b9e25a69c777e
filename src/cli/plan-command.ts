import { parseArgs } from 'node:util';
import { createTwoFilesPatch } from 'diff';
import yaml from 'js-yaml';
import { ANNOTATIONS, API_VERSION, DATABASE_QUERY_RESOURCE, type PendingPruneStatus } from '../api/index.ts';
import { MemberRegistry, type MemberApi } from '../clusters/index.ts';
import { PoolRegistry, type ConnectionSettings } from '../db/index.ts';
import { readSecretKeys, unfenced, type SecretLike } from '../runtime/index.ts';
import { connectionSettingsFromSecret, describeObject, statusClusterName, syncDqr, type DqrSyncOutcome, type SyncCluster } from '../sync/index.ts';
import { SecretScrubber, createLogger } from '../telemetry/index.ts';
import { CliError, EXIT, compileDqrTemplate, outputFormat, printStructured, hubFromKubeconfig, readDqrFile, requireCrds, selectedOnHub, settingsFromUrl } from './common.ts';

export const planHelp = `usage: rowcast plan -f FILE [flags]

Shows, per member cluster, what syncing a DatabaseQueryResource would create,
update (with a diff), leave unchanged, prune, block or refuse as a conflict,
using server-side dry runs against the live hub and members. Nothing changes.

flags:
  -f, --file FILE              the DatabaseQueryResource (YAML)
  --kubeconfig PATH            the hub's kubeconfig (default: $KUBECONFIG, ~/.kube/config)
  --context NAME               the hub's context
  -n, --namespace NS           the DQR's namespace on the hub (default: the file's, else default)
  --database-url URL           query this database instead of the one in the DQR's Secret
  --hub-id ID                  the controller's --hub-id, if it sets one
  --allow-exec-auth            accept member kubeconfigs with exec plugins (runs them here)
  --allow-insecure-kubeconfigs accept member kubeconfigs with insecure-skip-tls-verify or plain http
  --detailed-exitcode          exit 3 when the plan has changes
  -o, --output FORMAT          text (default), json or yaml: per cluster the creates, updates (each with
                               a unified diff, --- live / +++ planned), prunes, conflicts and failures
  -h, --help                   this text

exit codes: 0 planned, 1 failures (rows, conflicts, unreachable members), 2 bad usage or input, 3 changes pending (with --detailed-exitcode)`;

/** The fields a diff should not show: the server's bookkeeping and Rowcast's content hash, not the object's content. */
function comparable(object: Record<string, unknown> | undefined): string {
  if (object === undefined) return '';
  const bookkeeping = new Set(['managedFields', 'resourceVersion', 'uid', 'creationTimestamp', 'generation']);
  const metadata = Object.fromEntries(Object.entries(object['metadata'] as Record<string, unknown>).filter(([key]) => !bookkeeping.has(key)));
  const annotations = metadata['annotations'] as Record<string, string> | undefined;
  if (annotations !== undefined) {
    const kept = Object.fromEntries(Object.entries(annotations).filter(([key]) => key !== ANNOTATIONS.hash));
    if (Object.keys(kept).length === 0) Reflect.deleteProperty(metadata, 'annotations');
    else metadata['annotations'] = kept;
  }
  const content = Object.fromEntries(Object.entries(object).filter(([key]) => key !== 'status'));
  return yaml.dump({ ...content, metadata }, { sortKeys: true, lineWidth: -1, noRefs: true });
}

/** A unified diff, `--- live` / `+++ planned`, that patch(1) applies to the live object's YAML. */
function unifiedDiff(live: Record<string, unknown> | undefined, planned: Record<string, unknown>): string {
  const patch = createTwoFilesPatch('live', 'planned', comparable(live), comparable(planned), undefined, undefined, { context: 3 });
  return patch.slice(patch.indexOf('--- live'));
}

const byRow = (a: { row: string }, b: { row: string }): number => a.row.localeCompare(b.row, 'en', { numeric: true });

/** The plan as -o json/yaml prints it, and as the text view reads it. */
interface PlanReport {
  dqr: string;
  rows: number;
  clusters: {
    name: string;
    error?: string;
    creates: { row: string; object: string }[];
    updates: { row: string; object: string; diff: string }[];
    unchanged: number;
    prunes: { row: string | null; object: string }[];
    conflicts: { row: string; field: string; message: string }[];
    failures: { row: string; field: string; message: string }[];
  }[];
  /** Rows that failed before reaching any cluster (the query's shape, a template error). */
  failures: { row: string; field: string; message: string }[];
  refused: string[];
  pruneBlocked?: { id: string; cluster?: string; wanted: number; allowed: number; managed: number; confirmWith: string };
  changes: number;
  problems: number;
}

/** Clusters named as the DQR's status names them (statusClusterName). */
function planReport(dqrKey: string, outcome: DqrSyncOutcome, refused: readonly string[]): PlanReport {
  const namespace = dqrKey.slice(0, dqrKey.indexOf('/'));
  const failure = (f: DqrSyncOutcome['failures'][number]): { row: string; field: string; message: string } => ({ row: f.rowKey, field: f.field, message: f.message });
  const clusters = outcome.clusters.map((cluster) => {
    const mine = outcome.failures.filter((f) => f.cluster === cluster.name);
    return {
      name: statusClusterName(namespace, cluster.name),
      ...(cluster.lastError === undefined ? {} : { error: cluster.lastError }),
      creates: cluster.planned
        .filter((c) => c.action === 'create')
        .map((c) => ({ row: c.object.rowKey, object: describeObject({ kind: c.object.kind, namespace: c.object.namespace, name: c.object.name }) }))
        .sort(byRow),
      updates: cluster.planned
        .filter((c) => c.action === 'update')
        .map((c) => ({ row: c.object.rowKey, object: describeObject({ kind: c.object.kind, namespace: c.object.namespace, name: c.object.name }), diff: unifiedDiff(c.live, c.planned) }))
        .sort(byRow),
      unchanged: cluster.unchanged,
      prunes: cluster.pruneCandidates
        .map((o) => ({ row: o.rowKey ?? null, object: describeObject(o) }))
        .sort((a, b) => byRow({ row: a.row ?? '' }, { row: b.row ?? '' })),
      conflicts: mine.filter((f) => f.conflict).map(failure).sort(byRow),
      failures: mine.filter((f) => !f.conflict).map(failure).sort(byRow),
    };
  });
  const changes = clusters.reduce((n, c) => n + c.creates.length + c.updates.length + c.prunes.length, 0);
  const problems = outcome.failures.length + outcome.clusters.filter((c) => c.lastError !== undefined).length + refused.length;
  const blocked = outcome.pruneBlocked;
  return {
    dqr: dqrKey,
    rows: outcome.rowCount,
    clusters,
    failures: outcome.failures.filter((f) => f.cluster === '').map(failure).sort(byRow),
    refused: [...refused],
    ...(blocked === undefined
      ? {}
      : {
          pruneBlocked: {
            id: blocked.id,
            ...(blocked.cluster === undefined ? {} : { cluster: statusClusterName(namespace, blocked.cluster) }),
            wanted: blocked.wanted,
            allowed: blocked.allowed,
            managed: blocked.managed,
            confirmWith: `kubectl annotate dqr ${dqrKey.split('/')[1] ?? ''} -n ${dqrKey.split('/')[0] ?? ''} ${ANNOTATIONS.confirmPrune}=${blocked.id}`,
          },
        }),
    changes,
    problems,
  };
}

function printText(report: PlanReport, limit: string): void {
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  for (const refusal of report.refused) out(`refused: ${refusal}`);
  for (const cluster of report.clusters) {
    out(`cluster ${cluster.name}:`);
    if (cluster.error !== undefined) out(`  ! ${cluster.error}`);
    for (const c of cluster.creates) out(`  + create ${c.object} (row ${c.row})`);
    for (const u of cluster.updates) {
      out(`  ~ update ${u.object} (row ${u.row})`);
      for (const line of u.diff.split('\n')) if (line !== '') out(`      ${line}`);
    }
    if (cluster.unchanged > 0) out(`  = ${cluster.unchanged} unchanged`);
    for (const p of cluster.prunes) out(`  - prune ${p.object} (row ${p.row ?? '?'})`);
    for (const f of cluster.conflicts) out(`  ! conflict row ${JSON.stringify(f.row)}${f.field === '' ? '' : ` (${f.field})`}: ${f.message}`);
    for (const f of cluster.failures) out(`  x failed row ${JSON.stringify(f.row)}${f.field === '' ? '' : ` (${f.field})`}: ${f.message}`);
  }
  for (const f of report.failures) out(`x row ${JSON.stringify(f.row)} (${f.field}): ${f.message}`);
  if (report.pruneBlocked !== undefined) {
    const { wanted, allowed, managed, cluster, confirmWith } = report.pruneBlocked;
    const where = cluster === undefined ? '' : ` on cluster ${cluster}`;
    out(`prune BLOCKED: ${wanted} of ${managed} objects${where} is more than spec.pruneLimit ${limit} allows (${allowed}); the controller would wait for: ${confirmWith}`);
  }
  out(`${report.rows} rows; ${report.changes} change(s); ${report.problems} problem(s)`);
}

async function getOrUndefined<T>(hub: MemberApi, path: string): Promise<T | undefined> {
  try {
    return await hub.request<T>('GET', path);
  } catch (error) {
    if ((error as { code?: number }).code === 404) return undefined;
    throw error;
  }
}

export async function planCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      file: { type: 'string', short: 'f' },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      'database-url': { type: 'string' },
      'hub-id': { type: 'string' },
      'allow-exec-auth': { type: 'boolean' },
      'allow-insecure-kubeconfigs': { type: 'boolean' },
      'detailed-exitcode': { type: 'boolean' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${planHelp}\n`);
    return EXIT.ok;
  }
  const output = outputFormat(values.output);
  if (values.file === undefined) throw new CliError(`-f is required\n\n${planHelp}`, EXIT.usage);
  const { dqr } = await readDqrFile(values.file, values.namespace);
  const namespace = dqr.metadata.namespace ?? 'default';
  const template = compileDqrTemplate(dqr);
  const scrubber = new SecretScrubber();
  const logger = createLogger({ level: 'error', scrubber, write: (line) => process.stderr.write(`${line}\n`) });
  const hub = hubFromKubeconfig(values.kubeconfig, values.context);
  const members = new MemberRegistry({ policy: { allowExecAuth: values['allow-exec-auth'] === true, allowFilePaths: false, allowInsecure: values['allow-insecure-kubeconfigs'] === true }, scrubber, requestTimeoutMs: 15_000 });
  const pools = new PoolRegistry({ logger });
  try {
    await requireCrds(hub);
    const hubId = values['hub-id'] ?? (await hub.request<{ metadata: { uid: string } }>('GET', '/api/v1/namespaces/kube-system')).metadata.uid;
    const live = await getOrUndefined<{ metadata: { uid: string; generation?: number; annotations?: Record<string, string> }; status?: { managedResources?: string[]; pendingPrune?: PendingPruneStatus; rowKeyColumns?: string[] } }>(
      hub,
      `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}/${dqr.metadata.name}`,
    );
    if (live === undefined) process.stderr.write(`note: ${namespace}/${dqr.metadata.name} is not on the hub yet: everything is a create\n`);

    let settings: ConnectionSettings;
    if (values['database-url'] !== undefined) {
      settings = settingsFromUrl(values['database-url'], dqr.spec.database.pool);
      scrubber.register(settings.password, 'command-line');
    } else {
      const secret = await getOrUndefined<SecretLike>(hub, `/api/v1/namespaces/${namespace}/secrets/${dqr.spec.database.connectionSecretRef.name}`);
      const connection = connectionSettingsFromSecret(dqr, namespace, secret, scrubber);
      if (!connection.ok) throw new CliError(`${connection.message} (or pass --database-url)`);
      settings = connection.settings;
    }

    const selection = await selectedOnHub(hub, dqr);
    const clusters: SyncCluster[] = [];
    const unreadable: string[] = [];
    for (const target of selection.selected) {
      const ns = target.metadata.namespace ?? '';
      let kubeconfig = hub.kubeConfig.exportConfig();
      if (!target.spec.inCluster) {
        const ref = target.spec.kubeconfigSecretRef;
        const secret = await getOrUndefined<SecretLike>(hub, `/api/v1/namespaces/${ns}/secrets/${ref.name}`);
        const read = secret === undefined ? undefined : readSecretKeys(secret, { kubeconfig: ref.key }, new Set(), scrubber);
        if (read?.ok !== true) {
          unreadable.push(`cluster ${target.metadata.name}: kubeconfig Secret ${ns}/${ref.name} or its key ${ref.key} not found`);
          continue;
        }
        kubeconfig = read.values['kubeconfig'] ?? '';
      }
      const member = await members.ensure({ key: `${ns}/${target.metadata.name}`, name: target.metadata.name, labels: { ...target.metadata.labels }, kubeconfig, scrubSource: 'command-line', trusted: target.spec.inCluster, rateLimit: target.spec.rateLimit });
      if (!member.ok) {
        unreadable.push(`cluster ${target.metadata.name}: kubeconfig refused: ${member.problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`);
        continue;
      }
      clusters.push({ target, member: member.member });
    }

    const lease = pools.acquire(settings);
    let outcome: DqrSyncOutcome;
    try {
      outcome = await syncDqr({
        dqr,
        pool: lease.pool,
        template,
        owner: { hubId, namespace, name: dqr.metadata.name, uid: live?.metadata.uid ?? '' },
        clusters,
        previousResources: live?.status?.managedResources ?? [],
        pruneBaseline: live?.status?.pendingPrune?.clusters,
        previousKeyColumns: live?.status?.rowKeyColumns?.length === 0 ? undefined : live?.status?.rowKeyColumns,
        confirmation: () => Promise.resolve(live?.metadata.annotations?.[ANNOTATIONS.confirmPrune]),
        dryRun: true,
        // A dry run writes nothing.
        fence: unfenced,
        signal: AbortSignal.timeout(10 * 60_000),
      });
    } catch (error) {
      throw new CliError(`query failed: ${scrubber.scrub(error instanceof Error ? error.message : String(error))}`);
    } finally {
      await lease.release();
    }
    const limit = dqr.spec.pruneLimit.kind === 'count' ? String(dqr.spec.pruneLimit.count) : `${dqr.spec.pruneLimit.percent}%`;
    const report = planReport(`${namespace}/${dqr.metadata.name}`, outcome, [...selection.refused.map((r) => r.message), ...unreadable]);
    if (output === 'text') printText(report, limit);
    else printStructured(report, output);
    if (report.problems > 0) return EXIT.failed;
    return values['detailed-exitcode'] === true && report.changes > 0 ? EXIT.changes : EXIT.ok;
  } finally {
    await members.closeAll();
    await pools.closeAll();
    await hub.close();
  }
}
