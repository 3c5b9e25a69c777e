import { parseArgs } from 'node:util';
import { API_VERSION, DATABASE_QUERY_RESOURCE, parseDatabaseQueryResource, type DatabaseQueryResourceStatus } from '../api/index.ts';
import { MemberRegistry } from '../clusters/index.ts';
import { readSecretKeys, type SecretLike } from '../runtime/index.ts';
import { listOwned, statusClusterName, targetKey } from '../sync/index.ts';
import { ownerMatcher } from '../render/index.ts';
import { SecretScrubber } from '../telemetry/index.ts';
import { CliError, EXIT, hubFromKubeconfig, outputFormat, printStructured, requireCrds, selectedOnHub } from './common.ts';

export const statusHelp = `usage: rowcast status NAME [flags]

Per cluster, which rows of DatabaseQueryResource NAME are applied, failing,
conflicting, blocked or pending: from its status on the hub and from the
objects it owns on each member (listed by its owner label). Reads nothing from
the database and writes nothing.

flags:
  -n, --namespace NS           the DQR's namespace (default: default)
  --cluster NAME               only this cluster (one the DQR selects)
  --kubeconfig PATH            the hub's kubeconfig (default: $KUBECONFIG, ~/.kube/config)
  --context NAME               the hub's context
  --hub-id ID                  the controller's --hub-id, if it sets one
  --allow-exec-auth            accept member kubeconfigs with exec plugins (runs them here)
  --allow-insecure-kubeconfigs accept member kubeconfigs with insecure-skip-tls-verify or plain http
  -o, --output FORMAT          text (default), json or yaml
  -h, --help                   this text

exit codes: 0 every row applied everywhere, 1 something failing, conflicting, blocked, pending or unreachable, 2 bad usage`;

interface ClusterReport {
  name: string;
  /** Rows with objects on the member and no failure there. */
  applied: string[];
  failing: { row: string; message: string }[];
  conflicting: { row: string; message: string }[];
  /** Objects whose prune waits for rowcast.dev/confirm-prune. */
  blocked: number;
  /** Why the cluster is not (yet) in step, when it is not: never synced, or its last error. */
  pending?: string;
  unreachable?: string;
}

const byRow = (a: string, b: string): number => a.localeCompare(b, 'en', { numeric: true });

export async function statusCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      namespace: { type: 'string', short: 'n' },
      cluster: { type: 'string' },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      'hub-id': { type: 'string' },
      'allow-exec-auth': { type: 'boolean' },
      'allow-insecure-kubeconfigs': { type: 'boolean' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${statusHelp}\n`);
    return EXIT.ok;
  }
  const [name, ...extra] = positionals;
  if (name === undefined || extra.length > 0) throw new CliError(`one DatabaseQueryResource NAME is required\n\n${statusHelp}`, EXIT.usage);
  const output = outputFormat(values.output);
  const namespace = values.namespace ?? 'default';
  const scrubber = new SecretScrubber();
  const hub = hubFromKubeconfig(values.kubeconfig, values.context);
  const members = new MemberRegistry({ policy: { allowExecAuth: values['allow-exec-auth'] === true, allowFilePaths: false, allowInsecure: values['allow-insecure-kubeconfigs'] === true }, scrubber, requestTimeoutMs: 15_000 });
  try {
    await requireCrds(hub);
    const path = `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}/${name}`;
    const selection = await selectedOnHub(hub, await hub.request('GET', path).then(
      (raw) => {
        const parsed = parseDatabaseQueryResource(raw);
        if (!parsed.ok) throw new CliError(`${namespace}/${name} has an invalid spec: ${parsed.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`);
        return parsed.value;
      },
      (error: unknown) => {
        if ((error as { code?: number }).code === 404) throw new CliError(`DatabaseQueryResource ${namespace}/${name} not found`);
        throw error;
      },
    ));
    const raw = await hub.request<{ metadata: { uid: string }; status?: DatabaseQueryResourceStatus }>('GET', path);
    const status = raw.status ?? {};
    let targets = selection.selected;
    if (values.cluster !== undefined) {
      targets = targets.filter((t) => t.metadata.name === values.cluster);
      if (targets.length === 0) throw new CliError(`--cluster ${values.cluster}: ${namespace}/${name} does not select it; it selects: ${selection.selected.map((t) => t.metadata.name).join(', ')}`, EXIT.usage);
    }
    const hubId = values['hub-id'] ?? (await hub.request<{ metadata: { uid: string } }>('GET', '/api/v1/namespaces/kube-system')).metadata.uid;
    const signal = AbortSignal.timeout(5 * 60_000);
    const reports: ClusterReport[] = [];
    for (const target of targets) {
      const key = targetKey(target);
      // As the DQR's status names this target: its name alone only in the DQR's own namespace.
      const named = statusClusterName(namespace, key);
      const failures = (status.failingRows ?? []).filter((r) => r.cluster === undefined || r.cluster === named);
      const recorded = status.clusters?.find((c) => c.name === named);
      const blocked = status.pendingPrune !== undefined && (status.pendingPrune.cluster === undefined || status.pendingPrune.cluster === named) ? status.pendingPrune.wanted : 0;
      const report: ClusterReport = {
        name: named,
        applied: [],
        failing: failures.filter((r) => r.conflict !== true).map((r) => ({ row: r.rowKey, message: r.message })),
        conflicting: failures.filter((r) => r.conflict === true).map((r) => ({ row: r.rowKey, message: r.message })),
        blocked,
        ...(recorded === undefined ? { pending: 'not synced yet' } : recorded.lastError === undefined ? {} : { pending: recorded.lastError }),
      };
      let kubeconfig = hub.kubeConfig.exportConfig();
      if (!target.spec.inCluster) {
        const ref = target.spec.kubeconfigSecretRef;
        const secret = await hub.request<SecretLike>('GET', `/api/v1/namespaces/${target.metadata.namespace ?? ''}/secrets/${ref.name}`).catch(() => undefined);
        const read = secret === undefined ? undefined : readSecretKeys(secret, { kubeconfig: ref.key }, new Set(), scrubber);
        if (read?.ok !== true) {
          reports.push({ ...report, unreachable: `kubeconfig Secret ${ref.name} or its key ${ref.key} not readable` });
          continue;
        }
        kubeconfig = read.values['kubeconfig'] ?? '';
      }
      const member = await members.ensure({ key, name: target.metadata.name, labels: { ...target.metadata.labels }, kubeconfig, scrubSource: 'command-line', trusted: target.spec.inCluster, rateLimit: target.spec.rateLimit });
      if (!member.ok) {
        reports.push({ ...report, unreachable: `kubeconfig refused: ${member.problems.map((p) => `${p.field}: ${p.message}`).join('; ')}` });
        continue;
      }
      try {
        const kinds = [];
        for (const resource of status.managedResources ?? []) {
          const [apiVersion = '', kind = ''] = resource.split('|');
          kinds.push({ apiVersion, kind, resource: await member.member.api.resourceFor(apiVersion, kind) });
        }
        const owned = await listOwned(member.member, target, kinds, ownerMatcher({ hubId, namespace, name, uid: raw.metadata.uid, target: key }), signal);
        const failingRows = new Set([...report.failing, ...report.conflicting].map((f) => f.row));
        report.applied = [...new Set(owned.map((o) => o.rowKey).filter((r): r is string => r !== undefined && !failingRows.has(r)))].sort(byRow);
      } catch (error) {
        report.unreachable = scrubber.scrub(error instanceof Error ? error.message.split('\n')[0] ?? '' : String(error));
      }
      reports.push(report);
    }
    const troubled = reports.filter((r) => r.failing.length + r.conflicting.length > 0 || r.blocked > 0 || r.pending !== undefined || r.unreachable !== undefined);
    if (output === 'text') {
      const rows = (list: readonly { row: string; message: string }[]): string => list.map((f) => `${f.row} (${f.message})`).join('; ');
      for (const r of reports) {
        process.stdout.write(`cluster ${r.name}:\n`);
        process.stdout.write(`  applied      ${r.applied.length}${r.applied.length === 0 ? '' : `: rows ${r.applied.join(', ')}`}\n`);
        if (r.failing.length > 0) process.stdout.write(`  failing      ${r.failing.length}: ${rows(r.failing)}\n`);
        if (r.conflicting.length > 0) process.stdout.write(`  conflicting  ${r.conflicting.length}: ${rows(r.conflicting)}\n`);
        if (r.blocked > 0) process.stdout.write(`  blocked      ${r.blocked} prune(s)${status.pendingPrune?.cluster === undefined ? ' (on all its clusters together)' : ''} wait for rowcast.dev/confirm-prune=${status.pendingPrune?.id ?? '?'}\n`);
        if (r.pending !== undefined) process.stdout.write(`  pending      ${r.pending}\n`);
        if (r.unreachable !== undefined) process.stdout.write(`  unreachable  ${r.unreachable}\n`);
      }
    } else {
      printStructured({ dqr: `${namespace}/${name}`, rows: status.rowCount ?? null, clusters: reports }, output);
    }
    return troubled.length > 0 ? EXIT.failed : EXIT.ok;
  } finally {
    await members.closeAll();
    await hub.close();
  }
}
