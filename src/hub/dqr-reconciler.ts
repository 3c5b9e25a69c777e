import {
  ANNOTATIONS,
  API_VERSION,
  CONDITION_TYPES,
  DATABASE_QUERY_RESOURCE,
  FINALIZER,
  REASONS,
  STATUS_LIMITS,
  parseClusterTarget,
  parseDatabaseQueryResource,
  type ClusterTarget,
  type Condition,
  type DatabaseQueryResource,
  type PendingPruneStatus,
} from '../api/index.ts';
import { DbError, classifyDbError, compileStatusTemplate, ensureLedger, ledgerFootprint, rowColumnsOf, type DbErrorClassification, type PoolLease } from '../db/index.ts';
import { TemplateError, type CompiledTemplate } from '../render/index.ts';
import { FencedError, TerminalError, type ReconcileResult } from '../runtime/index.ts';
import { setConditions, transitioned, truncateMessage, type ConditionUpdate } from '../status/index.ts';
import { inRootSpan, type Logger } from '../telemetry/index.ts';
import { QueryShapeError, connectionSettingsFromSecret, selectTargets, statusClusterName, syncDqr, targetKeyFromStatus, type DqrSyncOutcome, type PendingPrune, type SyncCluster } from '../sync/index.ts';
import { closeSubscription, decideSync, recordSyncRun, type SyncDecision } from './change-detection.ts';
import { clustersWrittenTo, finalizeDqr, type LedgerFootprint } from './finalizer.ts';
import { splitKey, type HubContext, type HubObject } from './context.ts';

export function dqrPath(namespace: string, name: string): string {
  return `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}/${name}`;
}

interface Reporter {
  conditions(updates: ConditionUpdate[], extra?: Record<string, unknown>): Promise<void>;
  warn(reason: string, message: string): Promise<void>;
}

/**
 * What status says is failing also goes to the log, once: when it first
 * appears or changes, again after it cleared, never per retry. Conditions that
 * repeat another's message are one line.
 */
function logFailures(ctx: HubContext, key: string, conditions: readonly Condition[]): void {
  const failed = conditions.filter((c) => c.status === 'False');
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

function reporter(ctx: HubContext, raw: HubObject, namespace: string, name: string): Reporter {
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

function notSynced(reason: string, message: string, database: ConditionUpdate['status'] = 'Unknown', databaseReason: string = reason, databaseMessage: string = message): ConditionUpdate[] {
  return [
    { type: CONDITION_TYPES.ready, status: 'False', reason, message },
    { type: CONDITION_TYPES.synced, status: 'False', reason, message },
    { type: CONDITION_TYPES.databaseConnected, status: database, reason: databaseReason, message: databaseMessage },
  ];
}

/** DatabaseConnected after a database error: False only when the database refused the login or could not be reached. */
function databaseCondition(failure: DbErrorClassification, message: string): ConditionUpdate {
  const type = CONDITION_TYPES.databaseConnected;
  if (failure.reachability === 'answered') return { type, status: 'True', reason: REASONS.connected, message: 'the database answered; the query failed (see Synced)' };
  const reason = failure.reachability === 'login-refused' ? REASONS.authenticationFailed : REASONS.connectionFailed;
  return { type, status: 'False', reason, message };
}

/**
 * A query against the DQR's database failed (the change-detection probe or
 * the query itself): nothing was applied or pruned. A retryable error backs
 * off through the work queue; a terminal one waits for the next poll, since a
 * fix can come from the database as well as from the spec. A query cancelled
 * because the controller is stopping says nothing about the database: no
 * status is written then.
 */
async function queryFailed(report: Reporter, log: Logger, field: string, error: unknown, pollIntervalMs: number, signal: AbortSignal): Promise<ReconcileResult> {
  if (signal.aborted) throw new Error(`${field}: cancelled, the controller is stopping`, { cause: error });
  const failure = classifyDbError(error);
  const prefix = field === '' ? '' : `${field}: `;
  const database = databaseCondition(failure, `${prefix}${failure.message}`);
  const reason = database.status === 'True' ? REASONS.queryFailed : database.reason;
  const message = `${prefix}${failure.message}; nothing was applied or pruned`;
  log.warn('query failed', { reason, message });
  await report.conditions(notSynced(reason, message, database.status, database.reason, database.message));
  if (failure.retryable) throw new Error(message, { cause: error });
  return { requeueAfterMs: pollIntervalMs };
}

/**
 * With spec.ledger, what the ledger recorded this DQR wrote, for the
 * finalizer: clusters and kinds a lost or older status may not name. Best
 * effort: the ledger only adds to status.clusters, so a spec that does not
 * parse or a database that does not answer leaves the finalizer to status
 * alone (and says so in the log).
 */
async function ledgerFootprintOf(ctx: HubContext, raw: HubObject, key: string, log: Logger): Promise<LedgerFootprint> {
  const parsed = parseDatabaseQueryResource(raw);
  if (!parsed.ok || parsed.value.spec.ledger === undefined) return [];
  const { namespace } = splitKey(key);
  const connection = connectionSettingsFromSecret(parsed.value, namespace, ctx.informers.secrets.get(parsed.value.spec.database.connectionSecretRef.name, namespace), ctx.scrubber);
  if (!connection.ok) {
    log.warn('ledger not read for the finalizer', { reason: connection.reason, message: connection.message });
    return [];
  }
  const held = ctx.leases.get(key);
  let lease: PoolLease | undefined;
  try {
    lease = held ?? ctx.pools.acquire(connection.settings);
    return await ledgerFootprint(lease.pool, parsed.value.spec.ledger.table, key);
  } catch (error) {
    log.warn('ledger not read for the finalizer', { error: classifyDbError(error).message });
    return [];
  } finally {
    if (held === undefined) await lease?.release();
  }
}

/** The ClusterTargets of every namespace, parsed; ones that fail to parse are not targets. */
function clusterTargets(ctx: HubContext): ClusterTarget[] {
  const targets: ClusterTarget[] = [];
  for (const raw of ctx.informers.clusterTargets.list()) {
    const parsed = parseClusterTarget(raw);
    if (parsed.ok) targets.push(parsed.value);
  }
  return targets;
}

async function ensureFinalizer(ctx: HubContext, key: string, raw: HubObject, path: string): Promise<void> {
  const finalizers = raw.metadata?.finalizers ?? [];
  if (finalizers.includes(FINALIZER)) return;
  ctx.fence(key);
  // resourceVersion makes the patch fail rather than drop another controller's finalizer.
  await ctx.writer.patchMetadata(path, { finalizers: [...finalizers, FINALIZER], resourceVersion: raw.metadata?.resourceVersion });
}

function releaseLease(ctx: HubContext, key: string): Promise<void> {
  const lease = ctx.leases.get(key);
  ctx.leases.delete(key);
  return lease?.release() ?? Promise.resolve();
}

/**
 * One DQR, from current state: parse, hold the finalizer, read the
 * connection Secret, lease its pool, pick its clusters, sync, report. A
 * database or cluster error is reported and retried; it never prunes.
 */
export async function reconcileDqr(ctx: HubContext, key: string, signal: AbortSignal): Promise<ReconcileResult> {
  const started = performance.now();
  const { namespace, name } = splitKey(key);
  const raw = ctx.informers.dqrs.get(name, namespace);
  if (raw === undefined) {
    ctx.managed.delete(key);
    ctx.statusWatches.forgetDqr(key);
    ctx.members.releaseCaches(key);
    await releaseLease(ctx, key);
    await closeSubscription(ctx, key);
    ctx.queues.dqrs.forget(key);
    ctx.metrics.forgetDqr(namespace, name);
    return {};
  }
  const path = dqrPath(namespace, name);
  const report = reporter(ctx, raw, namespace, name);
  const log = ctx.logger.child({ dqr: key, generation: raw.metadata?.generation });
  log.debug('reconciling');

  if (raw.metadata?.deletionTimestamp !== undefined) {
    if (!(raw.metadata.finalizers ?? []).includes(FINALIZER)) return {};
    const done = await finalizeDqr(ctx, raw, signal, await ledgerFootprintOf(ctx, raw, key, log));
    if (!done.ok) {
      await report.conditions([{ type: CONDITION_TYPES.ready, status: 'False', reason: REASONS.deleting, message: done.message }]);
      return { requeueAfterMs: 5000 };
    }
    if (done.orphaned.length > 0) await report.warn(REASONS.deleting, `${ANNOTATIONS.orphanUnreachable}: objects left as they are on ${done.orphaned.join(', ')}`);
    ctx.fence(key);
    await ctx.writer.patchMetadata(path, {
      finalizers: (raw.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
      resourceVersion: raw.metadata.resourceVersion,
    });
    await releaseLease(ctx, key);
    await closeSubscription(ctx, key);
    log.info('finalized', { objects: done.objects, orphaned: done.orphaned });
    return {};
  }

  const parsed = parseDatabaseQueryResource(raw);
  if (!parsed.ok) {
    const message = parsed.errors.map((e) => `${e.path}: ${e.message}`).join('; ');
    await report.conditions(notSynced(REASONS.invalidSpec, message));
    throw new TerminalError(`invalid spec: ${message}`);
  }
  const dqr = parsed.value;
  await ensureFinalizer(ctx, key, raw, path);

  let template: CompiledTemplate;
  try {
    template = ctx.templates.get(`${raw.metadata?.uid ?? key}/${String(raw.metadata?.generation ?? 0)}`, dqr.spec.template);
  } catch (error) {
    const where = error instanceof TemplateError && error.line !== undefined ? ` (line ${error.line})` : '';
    const message = `spec.template${where}: ${error instanceof Error ? error.message : String(error)}`;
    await report.conditions(notSynced(REASONS.invalidSpec, message));
    throw new TerminalError(message);
  }

  const secretName = dqr.spec.database.connectionSecretRef.name;
  let writeBackColumns: string[] | undefined;
  if (dqr.spec.statusUpdateQueryTemplate !== undefined) {
    const compiled = compileStatusTemplate(dqr.spec.statusUpdateQueryTemplate);
    if (!compiled.ok) {
      const { line, column, message } = compiled.error;
      const text = `spec.statusUpdateQueryTemplate line ${line}, column ${column}: ${message}`;
      await report.conditions(notSynced(REASONS.invalidSpec, text));
      throw new TerminalError(text);
    }
    writeBackColumns = rowColumnsOf(compiled.statement);
  }

  const connection = connectionSettingsFromSecret(dqr, namespace, ctx.informers.secrets.get(secretName, namespace), ctx.scrubber);
  if (!connection.ok) {
    await report.conditions(notSynced(connection.reason, connection.message, 'False'));
    return { requeueAfterMs: dqr.spec.pollIntervalMs };
  }
  let lease: PoolLease;
  try {
    lease = ctx.pools.acquire(connection.settings);
  } catch (error) {
    const message = `Secret ${namespace}/${dqr.spec.database.connectionSecretRef.name}: ${ctx.scrubber.scrub(error instanceof Error ? error.message : String(error))}`;
    await report.conditions(notSynced(REASONS.secretInvalid, message, 'False'));
    return { requeueAfterMs: dqr.spec.pollIntervalMs };
  }
  // A rotated password is a new pool; the old one ends once this DQR lets go of it.
  const current = ctx.leases.get(key);
  if (current?.key === lease.key) {
    await lease.release();
    lease = current;
  } else {
    ctx.leases.set(key, lease);
    await current?.release();
  }

  const selection = selectTargets(namespace, dqr.spec.targets, clusterTargets(ctx));
  const clusters: SyncCluster[] = [];
  const unavailableClusters: string[] = [];
  const refusals = selection.refused.map((r) => r.message);
  for (const target of selection.selected) {
    const targetKey = `${target.metadata.namespace ?? ''}/${target.metadata.name}`;
    const member = ctx.members.get(targetKey);
    if (member === undefined) {
      refusals.push(`ClusterTarget ${targetKey} is not connected (see its Ready condition)`);
      unavailableClusters.push(targetKey);
    } else clusters.push({ target, member });
  }
  const { leaving, held } = leftClusters(ctx, raw, dqr, new Set([...clusters.map((c) => c.member.key), ...unavailableClusters]));

  const pendingPrune = raw.status?.['pendingPrune'] as PendingPruneStatus | undefined;
  const confirmation = dqr.metadata.annotations[ANNOTATIONS.confirmPrune];
  let decision: SyncDecision | undefined;
  try {
    decision = await decideSync(ctx, key, dqr, connection.settings, lease.pool, signal, confirmation !== undefined && confirmation === pendingPrune?.id);
  } catch (error) {
    return queryFailed(report, log, 'spec.changeDetection', error, dqr.spec.pollIntervalMs, signal);
  }
  if (decision === undefined) {
    ctx.metrics.syncTriggers.labels('skipped').inc();
    return { requeueAfterMs: dqr.spec.pollIntervalMs };
  }
  ctx.metrics.syncTriggers.labels(decision.trigger).inc();

  const ledger = dqr.spec.ledger;
  if (ledger !== undefined && !ctx.ledgers.has(`${lease.key}|${ledger.table}`)) {
    try {
      await ensureLedger(lease.pool, ledger.table);
      ctx.ledgers.add(`${lease.key}|${ledger.table}`);
    } catch (error) {
      if (signal.aborted) throw new Error('spec.ledger.table: cancelled, the controller is stopping', { cause: error });
      const failure = classifyDbError(error);
      // Rowcast's own ledger errors name the field already; the server's do not.
      const message = error instanceof DbError ? failure.message : `spec.ledger.table: ${failure.message}`;
      const database = databaseCondition(failure, message);
      const reason = database.status === 'True' ? REASONS.queryFailed : database.reason;
      await report.conditions(notSynced(reason, `${message}; nothing was applied or pruned`, database.status, database.reason, database.message));
      if (failure.retryable) throw new Error(failure.message, { cause: error });
      return { requeueAfterMs: dqr.spec.pollIntervalMs };
    }
  }

  const previousResources = (raw.status?.['managedResources'] ?? []) as string[];
  const recordedKeyColumns = raw.status?.['rowKeyColumns'] as string[] | undefined;
  const previousKeyColumns = recordedKeyColumns?.length === 0 ? undefined : recordedKeyColumns;
  let outcome: DqrSyncOutcome;
  try {
    const attributes = {
      'rowcast.dqr': key,
      'rowcast.generation': raw.metadata?.generation ?? 0,
      'rowcast.clusters': clusters.length,
      'rowcast.trigger': decision.trigger,
      // From the change being seen (a notification's receipt, a timestamp's value) to this sync starting.
      'rowcast.trigger_wait_ms': Math.max(0, Date.now() - decision.seenAt),
    };
    outcome = await inRootSpan('rowcast.sync', attributes, async (span) => {
      const result = await syncDqr({
        dqr,
        pool: lease.pool,
        template,
        owner: { hubId: ctx.hubId, namespace, name, uid: raw.metadata?.uid ?? '' },
        clusters,
        unavailableClusters,
        leaving,
        previousResources,
        previousKeyColumns,
        pruneBaseline: pendingPrune?.clusters?.map((c) => ({ name: targetKeyFromStatus(namespace, c.name), managed: c.managed })),
        // Checked live only when the cached copy has one (a new one queues its own sync), so a blocked DQR
        // polling every few seconds costs the hub no GET; unreadable is unconfirmed: the prune waits.
        ...(confirmation === undefined
          ? {}
          : {
              confirmation: () =>
                ctx.hub.request<HubObject>('GET', path, { signal }).then(
                  (live) => live.metadata?.annotations?.[ANNOTATIONS.confirmPrune],
                  () => undefined,
                ),
            }),
        ...(writeBackColumns === undefined ? {} : { keepColumns: writeBackColumns }),
        ...(ledger === undefined ? {} : { ledger: { table: ledger.table, everything: decision.trigger === 'spec' } }),
        batchSize: ctx.options.batchSize,
        fence: ctx.fence,
        signal,
      });
      span.setAttributes({ 'rowcast.rows': result.rowCount, 'rowcast.failures': result.failures.length, 'rowcast.prune_blocked': result.pruneBlocked !== undefined });
      return result;
    }, decision.link === undefined ? [] : [decision.link]);
  } catch (error) {
    // Not the leader any more: the new one reports; this process stops.
    if (error instanceof FencedError) throw error;
    recordSyncRun(ctx, key, dqr, decision, false);
    // A shape error names its own field.
    return queryFailed(report, log, error instanceof QueryShapeError ? '' : 'spec.query', error, dqr.spec.pollIntervalMs, signal);
  }

  const clean = outcome.clusters.every((c) => c.lastError === undefined);
  ctx.managed.set(key, new Map(clusters.map(({ member }) => [member.key, outcome.clusters.find((c) => c.name === member.key)?.managed ?? 0])));
  ctx.statusWatches.keyColumns.set(key, outcome.keyColumns);
  for (const c of outcome.clusters) ctx.statusWatches.recordKnown(key, c.target, c.known, c.lastError === undefined);
  if (writeBackColumns === undefined) ctx.statusWatches.rows.delete(key);
  else ctx.statusWatches.rows.set(key, outcome.rowValues);
  if (dqr.spec.statusUpdateQueryTemplate !== undefined || ledger !== undefined) {
    for (const { member } of clusters) {
      if (outcome.clusters.find((c) => c.name === member.key)?.lastError !== undefined) continue;
      for (const resource of outcome.resources) {
        const [apiVersion = '', kind = ''] = resource.split('|');
        ctx.statusWatches.ensure(member, apiVersion, kind).catch((error: unknown) => {
          log.warn('status watch not started', { cluster: member.key, kind, error });
        });
      }
    }
  }
  recordSyncRun(ctx, key, dqr, decision, clean);
  // The former key columns stay recorded until a sync without a failure has re-stamped every object under the new ones.
  const keyColumnsChanged = previousKeyColumns !== undefined && previousKeyColumns.join('\u0000') !== outcome.keyColumns.join('\u0000');
  const rowKeyColumns = outcome.keyColumns.length > 0 && (!keyColumnsChanged || (clean && outcome.failures.length === 0)) ? outcome.keyColumns : undefined;
  await reportOutcome(report, namespace, outcome, refusals, selection.selected.length, decision.trigger, ctx.statusWatches.failures.get(key), pendingPrune !== undefined, rowKeyColumns, held);
  recordMetrics(ctx, namespace, name, outcome, decision.seenAt);
  // Within the limit (or confirmed and done): a confirmation left over would only wait to release some later prune.
  if (outcome.pruneEvaluated && outcome.pruneBlocked === undefined && confirmation !== undefined) {
    ctx.fence(key);
    await ctx.writer.patchMetadata(path, { annotations: { [ANNOTATIONS.confirmPrune]: null } });
  }
  log.info('synced', {
    rows: outcome.rowCount,
    clusters: outcome.clusters.map((c) => ({ name: c.name, applied: c.applied, unchanged: c.unchanged, pruned: c.pruned, failed: c.failed })),
    failures: outcome.failures.length,
    pruneBlocked: outcome.pruneBlocked !== undefined,
    durationMs: Math.round(performance.now() - started),
  });
  return { requeueAfterMs: dqr.spec.pollIntervalMs };
}

/** A blocked prune as status.pendingPrune names its clusters (see statusClusterName); read back with targetKeyFromStatus. */
function pendingPruneStatus(namespace: string, pending: PendingPrune): PendingPrune {
  return {
    ...pending,
    ...(pending.cluster === undefined ? {} : { cluster: statusClusterName(namespace, pending.cluster) }),
    clusters: pending.clusters.map((c) => ({ name: statusClusterName(namespace, c.name), managed: c.managed })),
  };
}

/** `changedAt`: when the change this sync carries happened (SyncDecision.seenAt). */
function recordMetrics(ctx: HubContext, namespace: string, name: string, outcome: DqrSyncOutcome, changedAt: number): void {
  const m = ctx.metrics;
  m.dqrRows.labels(namespace, name).set(outcome.rowCount);
  m.rowFailures.labels(namespace, name).set(new Set(outcome.failures.map((f) => f.rowKey)).size);
  m.dbQueryDuration.labels(namespace, name).observe(outcome.queryMs / 1000);
  if (outcome.pruneBlocked !== undefined) m.prunesBlocked.labels(namespace, name).inc();
  for (const c of outcome.clusters) {
    const failedHere = outcome.failures.filter((f) => f.cluster === c.name && !f.conflict).length;
    m.applies.labels(c.name, 'applied').inc(c.applied - c.unchanged);
    m.applies.labels(c.name, 'unchanged').inc(c.unchanged);
    m.applies.labels(c.name, 'conflict').inc(c.conflicts);
    m.applies.labels(c.name, 'failed').inc(failedHere);
    m.prunes.labels(c.name).inc(c.pruned);
    if (c.lastError === undefined) m.syncFreshness.labels(c.name).observe(Math.max(0, c.appliedAt - changedAt) / 1000);
  }
}

/**
 * Clusters this DQR wrote to (status.clusters) that this sync does not
 * sync: a connected one it no longer selects is left (deletionPolicy applies
 * there); a paused one is left untouched until it is unpaused or removed, and
 * one not connected waits, both still listed; one whose ClusterTarget is gone
 * is forgotten, as nothing can reach it.
 */
function leftClusters(ctx: HubContext, raw: HubObject, dqr: DatabaseQueryResource, syncing: ReadonlySet<string>): { leaving: SyncCluster[]; held: { target: string; lastError: string }[] } {
  const leaving: SyncCluster[] = [];
  const held: { target: string; lastError: string }[] = [];
  for (const key of clustersWrittenTo(raw)) {
    if (syncing.has(key)) continue;
    const { namespace, name } = splitKey(key);
    const targetRaw = ctx.informers.clusterTargets.get(name, namespace);
    if (targetRaw === undefined) continue;
    const target = parseClusterTarget(targetRaw);
    const member = ctx.members.get(key);
    if (!target.ok) held.push({ target: key, lastError: `ClusterTarget ${key} has an invalid spec: what this DatabaseQueryResource left there waits for it` });
    else if (target.value.spec.paused) held.push({ target: key, lastError: `ClusterTarget ${key} is paused: what this DatabaseQueryResource left there is untouched until it is unpaused or removed` });
    else if (member === undefined) held.push({ target: key, lastError: `ClusterTarget ${key} is not connected: spec.deletionPolicy ${dqr.spec.deletionPolicy} waits for it` });
    else leaving.push({ target: target.value, member });
  }
  return { leaving, held };
}

/** Writes the outcome into status and Events. */
async function reportOutcome(
  report: Reporter,
  namespace: string,
  outcome: DqrSyncOutcome,
  refusals: string[],
  selectedCount: number,
  trigger: string,
  writeBackFailure: string | undefined,
  hadPendingPrune: boolean,
  rowKeyColumns: string[] | undefined,
  held: readonly { target: string; lastError: string }[],
): Promise<void> {
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
    ];
    // Partial means something reached a cluster; when nothing did, the DQR did not sync at all.
    const reached = outcome.clusters.some((c) => c.lastError === undefined && (c.applied > 0 || c.failed === 0));
    synced = { type: CONDITION_TYPES.synced, status: 'False', reason: reached ? REASONS.partiallySynced : REASONS.syncFailed, message: parts.join('; ') };
    for (const failure of outcome.failures.slice(0, 5)) await report.warn(failure.conflict ? 'ObjectConflict' : 'RowFailed', describeFailure(failure));
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
    [{ type: CONDITION_TYPES.databaseConnected, status: 'True', reason: REASONS.connected, message: 'the query ran' }, synced, ready],
    {
      rowCount: outcome.rowCount,
      clusterCount: outcome.clusters.length,
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
