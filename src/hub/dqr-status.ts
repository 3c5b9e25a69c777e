import { ANNOTATIONS, API_VERSION, CONDITION_TYPES, DATABASE_QUERY_RESOURCE, REASONS, STATUS_LIMITS, type Condition } from '../api/index.ts';
import { setConditions, transitioned, truncateMessage, type ConditionUpdate } from '../status/index.ts';
import { statusClusterName, type ClusterSyncOutcome, type DqrSyncOutcome, type PendingPrune, type RenderedRows } from '../sync/index.ts';
import type { HubContext, HubObject } from './context.ts';

export function dqrPath(namespace: string, name: string): string {
  return `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}/${name}`;
}

export interface Reporter {
  conditions(updates: ConditionUpdate[], extra?: Record<string, unknown>): Promise<void>;
  warn(reason: string, message: string): Promise<void>;
}

/**
 * What status says is failing also goes to the log, once: when it first
 * appears or changes, again after it cleared, never per retry. Conditions that
 * repeat another's message are one line.
 */
function logFailures(ctx: HubContext, key: string, conditions: readonly Condition[]): void {
  // Drifted is the one condition whose True is the trouble.
  const failed = conditions.filter((c) => (c.type === CONDITION_TYPES.drifted ? c.status === 'True' : c.status === 'False'));
  // Ready sums up the others; alone (a DQR stuck deleting) it is the failure.
  const specific = failed.filter((c) => c.type !== CONDITION_TYPES.ready);
  const failing = specific.length > 0 ? specific : failed;
  const messages = [...new Map(failing.map((c) => [c.message, c])).values()];
  const signature = JSON.stringify(messages.map((c) => [c.type, c.reason, c.message]));
  if (messages.length === 0) {
    ctx.loggedFailures.delete(key);
    return;
  }
  if (ctx.loggedFailures.get(key) === signature) return;
  ctx.loggedFailures.set(key, signature);
  for (const c of messages) ctx.logger.warn('sync failing', { dqr: key, condition: c.type, reason: c.reason, message: c.message });
}

export function reporter(ctx: HubContext, raw: HubObject, namespace: string, name: string): Reporter {
  const key = `${namespace}/${name}`;
  let previous = (raw.status?.['conditions'] ?? []) as Condition[];
  const generation = raw.metadata?.generation;
  const ref = { apiVersion: API_VERSION, kind: DATABASE_QUERY_RESOURCE.kind, namespace, name, uid: raw.metadata?.uid };
  return {
    conditions: async (updates, extra = {}) => {
      const conditions = setConditions(previous, updates, generation, new Date());
      const ready = updates.find((u) => u.type === CONDITION_TYPES.ready);
      if (ready !== undefined) ctx.metrics.dqrReady.labels(namespace, name).set(ready.status === 'True' ? 1 : 0);
      ctx.fence(key);
      await ctx.writer.patchStatus(dqrPath(namespace, name), { observedGeneration: generation, conditions, ...extra });
      logFailures(ctx, key, conditions);
      for (const type of [CONDITION_TYPES.ready, CONDITION_TYPES.databaseConnected]) {
        const changed = transitioned(previous, conditions, type);
        if (changed !== undefined && changed.status === 'False') await ctx.writer.event(ref, 'Warning', changed.reason, changed.message);
        if (changed !== undefined && changed.status === 'True' && type === CONDITION_TYPES.ready) await ctx.writer.event(ref, 'Normal', changed.reason, changed.message);
      }
      previous = conditions;
    },
    warn: (reason, message) => ctx.writer.event(ref, 'Warning', reason, message),
  };
}

/** A blocked prune as status.pendingPrune names its clusters (see statusClusterName); read back with targetKeyFromStatus. */
function pendingPruneStatus(namespace: string, pending: PendingPrune): PendingPrune {
  return {
    ...pending,
    ...(pending.cluster === undefined ? {} : { cluster: statusClusterName(namespace, pending.cluster) }),
    clusters: pending.clusters.map((c) => ({ name: statusClusterName(namespace, c.name), managed: c.managed })),
  };
}

/** What one query of a DQR found. */
export function recordQueryMetrics(ctx: HubContext, namespace: string, name: string, rendered: RenderedRows): void {
  const m = ctx.metrics;
  m.dqrRows.labels(namespace, name).set(rendered.rowCount);
  m.rowFailures.labels(namespace, name).set(new Set(rendered.failures.map((f) => f.rowKey)).size);
  m.dbQueryDuration.labels(namespace, name).observe(rendered.queryMs / 1000);
}

/** What one member's work item did; `changedAt`: when the change it carries happened (SyncDecision.seenAt). */
export function recordClusterMetrics(ctx: HubContext, namespace: string, name: string, outcome: ClusterSyncOutcome, changedAt: number): void {
  const m = ctx.metrics;
  const c = outcome.cluster;
  if (outcome.pruneBlocked !== undefined) m.prunesBlocked.labels(namespace, name).inc();
  m.applies.labels(c.name, 'applied').inc(c.applied - c.unchanged);
  m.applies.labels(c.name, 'unchanged').inc(c.unchanged);
  m.applies.labels(c.name, 'conflict').inc(c.conflicts);
  m.applies.labels(c.name, 'failed').inc(outcome.failures.filter((f) => !f.conflict).length);
  m.prunes.labels(c.name).inc(c.pruned);
  if (c.lastError === undefined) m.syncFreshness.labels(c.name).observe(Math.max(0, c.appliedAt - changedAt) / 1000);
}

/** A member that has not finished the latest snapshot, as status names it. */
export interface BehindMember {
  cluster: string;
  /** Since when it has been behind (epoch ms). */
  since: number;
  /** Its last attempt's error, if it failed. */
  lastError: string | undefined;
}

export interface OutcomeReport {
  namespace: string;
  outcome: DqrSyncOutcome;
  refusals: readonly string[];
  selectedCount: number;
  trigger: string;
  writeBackFailure: string | undefined;
  hadPendingPrune: boolean;
  rowKeyColumns: string[] | undefined;
  held: readonly { target: string; lastError: string }[];
  behind: readonly BehindMember[];
  /** The Drifted condition (hub/drift.ts). */
  drift: ConditionUpdate;
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

/** Writes the outcome into status and Events. */
export async function reportOutcome(report: Reporter, r: OutcomeReport): Promise<void> {
  const { namespace, outcome, refusals, selectedCount, trigger, writeBackFailure, hadPendingPrune, rowKeyColumns, held, behind, drift } = r;
  const total = outcome.clusters.length + behind.filter((b) => !outcome.clusters.some((c) => c.name === b.cluster)).length;
  const behindText =
    behind.length === 0
      ? undefined
      : `${behind.length} of ${total} members behind: ${behind
          .slice(0, 5)
          .map((b) => `${statusClusterName(namespace, b.cluster)} (${b.lastError === undefined ? 'applying' : 'failing'} for ${ago(Date.now() - b.since)})`)
          .join(', ')}${behind.length > 5 ? ', …' : ''}`;
  const clusterErrors = outcome.clusters.filter((c) => c.lastError !== undefined);
  const first = outcome.failures[0];
  const describeFailure = (f: NonNullable<typeof first>): string =>
    `row ${JSON.stringify(f.rowKey)}${f.cluster === '' ? '' : ` on cluster ${statusClusterName(namespace, f.cluster)}`}${f.field === '' ? '' : ` (${f.field})`}: ${f.message}`;
  let synced: ConditionUpdate;
  if (outcome.pruneBlocked !== undefined) {
    const { id, wanted, allowed, managed, cluster } = outcome.pruneBlocked;
    const where = cluster === undefined ? '' : ` on cluster ${statusClusterName(namespace, cluster)}`;
    const message = `would prune ${wanted} of ${managed} objects${where}, more than spec.pruneLimit allows (${allowed}); nothing was pruned. To confirm this prune (status.pendingPrune), annotate the DatabaseQueryResource with ${ANNOTATIONS.confirmPrune}=${id}`;
    synced = { type: CONDITION_TYPES.synced, status: 'False', reason: REASONS.pruneBlocked, message };
    await report.warn(REASONS.pruneBlocked, message);
  } else if (clusterErrors.length > 0 || outcome.failures.length > 0 || refusals.length > 0) {
    const parts = [
      ...refusals,
      ...clusterErrors.map((c) => `cluster ${statusClusterName(namespace, c.name)}: ${c.lastError ?? ''}`),
      ...(first === undefined ? [] : [`${outcome.failures.length} failure(s); first: ${describeFailure(first)}`]),
      ...(behindText === undefined ? [] : [behindText]),
    ];
    // Partial means something reached a cluster; when nothing did, the DQR did not sync at all.
    const reached = outcome.clusters.some((c) => c.lastError === undefined && (c.applied > 0 || c.failed === 0));
    synced = { type: CONDITION_TYPES.synced, status: 'False', reason: reached ? REASONS.partiallySynced : REASONS.syncFailed, message: parts.join('; ') };
    for (const failure of outcome.failures.slice(0, 5)) await report.warn(failure.conflict ? 'ObjectConflict' : 'RowFailed', describeFailure(failure));
  } else if (behindText !== undefined) {
    synced = { type: CONDITION_TYPES.synced, status: 'False', reason: REASONS.membersBehind, message: behindText };
  } else if (selectedCount === 0) {
    synced = { type: CONDITION_TYPES.synced, status: 'False', reason: REASONS.noClustersSelected, message: 'spec.targets selects no ClusterTarget' };
  } else {
    synced = { type: CONDITION_TYPES.synced, status: 'True', reason: REASONS.synced, message: `${outcome.rowCount} rows applied on ${outcome.clusters.length} cluster(s); this sync was fired by: ${trigger}` };
  }
  // Applies went through; only the way back to the database fails: Ready says so, Synced does not.
  const ready: ConditionUpdate =
    synced.status === 'True' && writeBackFailure !== undefined
      ? { type: CONDITION_TYPES.ready, status: 'False', reason: REASONS.writeBackFailed, message: writeBackFailure }
      : { ...synced, type: CONDITION_TYPES.ready };
  const failingRows = outcome.failures.slice(0, STATUS_LIMITS.failingRows).map((f) => ({
    rowKey: f.rowKey.slice(0, STATUS_LIMITS.rowKeyLength),
    ...(f.cluster === '' ? {} : { cluster: statusClusterName(namespace, f.cluster) }),
    ...(f.field === '' ? {} : { field: f.field.slice(0, 1024) }),
    message: truncateMessage(f.message),
    ...(f.conflict ? { conflict: true } : {}),
  }));
  await report.conditions(
    [{ type: CONDITION_TYPES.databaseConnected, status: 'True', reason: REASONS.connected, message: 'the query ran' }, synced, ready, drift],
    {
      rowCount: outcome.rowCount,
      clusterCount: total,
      lastSyncTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      managedResources: outcome.resources.slice(0, STATUS_LIMITS.managedResources),
      // A cluster left behind stays listed while anything of this DQR may be left there: the finalizer and the next sync act on this list.
      clusters: [
        ...outcome.clusters
          .filter((c) => !c.leaving || c.managed > 0 || c.lastError !== undefined)
          .map((c) => ({
            name: statusClusterName(namespace, c.target),
            applied: c.applied,
            failed: c.failed,
            pruned: c.pruned,
            ...(c.lastError === undefined ? {} : { lastError: truncateMessage(c.lastError) }),
          })),
        // Behind and never finished here: it may have written, so it is listed for the finalizer.
        ...behind.filter((b) => !outcome.clusters.some((c) => c.name === b.cluster)).map((b) => ({ name: statusClusterName(namespace, b.cluster), lastError: truncateMessage(`behind: ${b.lastError ?? 'applying'}`) })),
        ...held.map((h) => ({ name: statusClusterName(namespace, h.target), lastError: truncateMessage(h.lastError) })),
      ].slice(0, STATUS_LIMITS.clusters),
      failingRowCount: new Set(outcome.failures.map((f) => f.rowKey)).size,
      failingRows,
      // A merge patch: null removes a pending prune this sync no longer has.
      ...(rowKeyColumns === undefined ? {} : { rowKeyColumns }),
      ...(outcome.pruneBlocked !== undefined ? { pendingPrune: pendingPruneStatus(namespace, outcome.pruneBlocked) } : outcome.pruneEvaluated && hadPendingPrune ? { pendingPrune: null } : {}),
    },
  );
}
