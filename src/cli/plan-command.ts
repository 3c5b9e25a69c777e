import { parseArgs } from 'node:util';
import { createTwoFilesPatch } from 'diff';
import yaml from 'js-yaml';
import { ANNOTATIONS, API_VERSION, DATABASE_QUERY_RESOURCE, type PendingPruneStatus } from '../api/index.ts';
import { MemberRegistry, type MemberApi } from '../clusters/index.ts';
import { PoolRegistry, type ConnectionSettings } from '../db/index.ts';
import { readSecretKeys, unfenced, type SecretLike } from '../runtime/index.ts';
import { connectionSettingsFromSecret, describeObject, syncDqr, type DqrSyncOutcome, type SyncCluster } from '../sync/index.ts';
import { SecretScrubber, createLogger } from '../telemetry/index.ts';
import { CliError, EXIT, compileDqrTemplate, hubFromKubeconfig, readDqrFile, requireCrds, selectedOnHub, settingsFromUrl } from './common.ts';

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
  -h, --help                   this text

exit codes: 0 planned, 1 failures (rows, conflicts, unreachable members), 2 bad usage or input, 3 changes pending (with --detailed-exitcode)`;

/** The fields a diff should not show: the server's bookkeeping, not the object's content. */
function comparable(object: Record<string, unknown> | undefined): string {
  if (object === undefined) return '';
  const bookkeeping = new Set(['managedFields', 'resourceVersion', 'uid', 'creationTimestamp', 'generation']);
  const metadata = Object.fromEntries(Object.entries(object['metadata'] as Record<string, unknown>).filter(([key]) => !bookkeeping.has(key)));
  const content = Object.fromEntries(Object.entries(object).filter(([key]) => key !== 'status'));
  return yaml.dump({ ...content, metadata }, { sortKeys: true, lineWidth: -1, noRefs: true });
}

async function getOrUndefined<T>(hub: MemberApi, path: string): Promise<T | undefined> {
  try {
    return await hub.request<T>('GET', path);
  } catch (error) {
    if ((error as { code?: number }).code === 404) return undefined;
    throw error;
  }
}

function print(outcome: DqrSyncOutcome, limit: string): { changes: number; problems: number } {
  let changes = 0;
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  for (const cluster of outcome.clusters) {
    out(`cluster ${cluster.name}:`);
    if (cluster.lastError !== undefined) out(`  ! ${cluster.lastError}`);
    for (const change of cluster.planned) {
      changes++;
      const what = describeObject({ kind: change.object.kind, namespace: change.object.namespace, name: change.object.name });
      if (change.action === 'create') {
        out(`  + create ${what} (row ${change.object.rowKey})`);
      } else {
        out(`  ~ update ${what} (row ${change.object.rowKey})`);
        const patch = createTwoFilesPatch('live', 'planned', comparable(change.live), comparable(change.planned), undefined, undefined, { context: 2 });
        for (const line of patch.split('\n').slice(2)) if (line !== '') out(`      ${line}`);
      }
    }
    if (cluster.unchanged > 0) out(`  = ${cluster.unchanged} unchanged`);
    for (const object of cluster.pruneCandidates) {
      changes++;
      out(`  - prune ${describeObject(object)} (row ${object.rowKey ?? '?'})`);
    }
    for (const failure of outcome.failures.filter((f) => f.cluster === cluster.name)) {
      out(`  ${failure.conflict ? '! conflict' : 'x failed'} row ${JSON.stringify(failure.rowKey)}${failure.field === '' ? '' : ` (${failure.field})`}: ${failure.message}`);
    }
  }
  for (const failure of outcome.failures.filter((f) => f.cluster === '')) out(`x row ${JSON.stringify(failure.rowKey)} (${failure.field}): ${failure.message}`);
  if (outcome.pruneBlocked !== undefined) {
    const { id, wanted, allowed, managed, cluster } = outcome.pruneBlocked;
    const where = cluster === undefined ? '' : ` on cluster ${cluster}`;
    out(`prune BLOCKED: ${wanted} of ${managed} objects${where} is more than spec.pruneLimit ${limit} allows (${allowed}); the controller would wait for ${ANNOTATIONS.confirmPrune}=${id}`);
  }
  const problems = outcome.failures.length + outcome.clusters.filter((c) => c.lastError !== undefined).length;
  out(`${outcome.rowCount} rows; ${changes} change(s); ${problems} problem(s)`);
  return { changes, problems };
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
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${planHelp}\n`);
    return EXIT.ok;
  }
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
    for (const refusal of selection.refused) process.stderr.write(`rowcast: ${refusal.message}\n`);
    const clusters: SyncCluster[] = [];
    for (const target of selection.selected) {
      const ns = target.metadata.namespace ?? '';
      let kubeconfig = hub.kubeConfig.exportConfig();
      if (!target.spec.inCluster) {
        const ref = target.spec.kubeconfigSecretRef;
        const secret = await getOrUndefined<SecretLike>(hub, `/api/v1/namespaces/${ns}/secrets/${ref.name}`);
        const read = secret === undefined ? undefined : readSecretKeys(secret, { kubeconfig: ref.key }, new Set(), scrubber);
        if (read?.ok !== true) {
          process.stdout.write(`cluster ${target.metadata.name}: ! kubeconfig Secret ${ns}/${ref.name} or its key ${ref.key} not found\n`);
          continue;
        }
        kubeconfig = read.values['kubeconfig'] ?? '';
      }
      const member = await members.ensure({ key: `${ns}/${target.metadata.name}`, name: target.metadata.name, labels: { ...target.metadata.labels }, kubeconfig, scrubSource: 'command-line', trusted: target.spec.inCluster, rateLimit: target.spec.rateLimit });
      if (!member.ok) {
        process.stdout.write(`cluster ${target.metadata.name}: ! kubeconfig refused: ${member.problems.map((p) => `${p.field}: ${p.message}`).join('; ')}\n`);
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
    const { changes, problems } = print(outcome, limit);
    if (problems + selection.refused.length > 0) return EXIT.failed;
    return values['detailed-exitcode'] === true && changes > 0 ? EXIT.changes : EXIT.ok;
  } finally {
    await members.closeAll();
    await pools.closeAll();
    await hub.close();
  }
}
