import {
  ANNOTATIONS,
  CONDITION_TYPES,
  FINALIZER,
  REASONS,
  parseClusterTarget,
  parseDatabaseQueryResource,
  type ClusterTarget,
  type DatabaseQueryResource,
  type PendingPruneStatus,
} from '../api/index.ts';
import { DbError, classifyDbError, compileStatusTemplate, ensureLedger, ledgerFootprint, rowColumnsOf, type DbErrorClassification, type PoolLease } from '../db/index.ts';
import { TemplateError, type CompiledTemplate } from '../render/index.ts';
import { FencedError, TerminalError, type ReconcileResult } from '../runtime/index.ts';
import type { ConditionUpdate } from '../status/index.ts';
import { inRootSpan, inSpan, type Logger, type TraceLink } from '../telemetry/index.ts';
import { QueryShapeError, connectionSettingsFromSecret, readAndRender, selectTargets, targetKey, targetKeyFromStatus, type RenderedRows, type SyncCluster } from '../sync/index.ts';
import { closeSubscription, decideSync, recordSyncRun, type SyncDecision } from './change-detection.ts';
import { clustersWrittenTo, finalizeDqr, type LedgerFootprint } from './finalizer.ts';
import { splitKey, type HubContext, type HubObject } from './context.ts';
import { dqrPath, recordQueryMetrics, reporter, type Reporter } from './dqr-status.ts';
import { forgetDqrWork, publishSnapshot, retireSnapshot } from './member-work.ts';
import { drainRequested, handOver } from './shard-handover.ts';

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
    forgetDqrWork(ctx, key);
    ctx.managed.delete(key);
    ctx.statusWatches.forgetDqr(key);
    ctx.members.releaseCaches(key);
    await releaseLease(ctx, key);
    await closeSubscription(ctx, key);
    ctx.queues.dqrs.forget(key);
    ctx.metrics.forgetDqr(namespace, name);
    return {};
  }
  if (ctx.shard !== undefined && drainRequested(raw)) return handOver(ctx, ctx.shard, key, raw);
  const path = dqrPath(namespace, name);
  const base = reporter(ctx, raw, namespace, name);
  // Whatever fails before a new snapshot (spec, Secret, database, query) stops the members working from the last one: nothing more is applied or pruned.
  const report: Reporter = {
    conditions: async (updates, extra) => {
      void retireSnapshot(ctx, key);
      await base.conditions(updates, extra);
    },
    warn: (reason, message) => base.warn(reason, message),
  };
  const log = ctx.logger.child({ dqr: key, generation: raw.metadata?.generation });
  log.debug('reconciling');

  if (raw.metadata?.deletionTimestamp !== undefined) {
    if (!(raw.metadata.finalizers ?? []).includes(FINALIZER)) return {};
    // No member item may apply while the finalizer deletes: the running ones finish first.
    await retireSnapshot(ctx, key);
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
  let rendered: RenderedRows;
  let link: TraceLink | undefined;
  try {
    const attributes = {
      'rowcast.dqr': key,
      'rowcast.generation': raw.metadata?.generation ?? 0,
      'rowcast.clusters': clusters.length,
      'rowcast.trigger': decision.trigger,
      // From the change being seen (a notification's receipt, a timestamp's value) to this sync starting.
      'rowcast.trigger_wait_ms': Math.max(0, Date.now() - decision.seenAt),
    };
    rendered = await inRootSpan(
      'rowcast.sync',
      attributes,
      async (span) => {
        link = { context: span.spanContext() };
        const result = await inSpan('rowcast.read_and_render', {}, async (inner) => {
          const done = await readAndRender({
            dqr,
            pool: lease.pool,
            template,
            owner: { hubId: ctx.hubId, namespace, name, uid: raw.metadata?.uid ?? '' },
            clusters: clusters.map(({ target }) => ({ key: targetKey(target), name: target.metadata.name, labels: target.metadata.labels })),
            unavailableClusters,
            previousKeyColumns,
            ...(writeBackColumns === undefined ? {} : { keepColumns: writeBackColumns }),
            batchSize: ctx.options.batchSize,
            previous: ctx.work.get(key)?.snapshot?.rendered,
            keepBodies: false,
            signal,
          });
          inner.setAttributes({ 'rowcast.rows': done.rowCount, 'rowcast.failures': done.failures.length });
          return done;
        });
        span.setAttributes({ 'rowcast.rows': result.rowCount, 'rowcast.failures': result.failures.length });
        return result;
      },
      decision.link === undefined ? [] : [decision.link],
    );
  } catch (error) {
    // Not the leader any more: the new one reports; this process stops.
    if (error instanceof FencedError) throw error;
    recordSyncRun(ctx, key, dqr, decision, false);
    // A shape error names its own field.
    return queryFailed(report, log, error instanceof QueryShapeError ? '' : 'spec.query', error, dqr.spec.pollIntervalMs, signal);
  }

  ctx.statusWatches.keyColumns.set(key, rendered.keyColumns);
  if (writeBackColumns === undefined) ctx.statusWatches.rows.delete(key);
  else ctx.statusWatches.rows.set(key, rendered.rowValues);
  recordSyncRun(ctx, key, dqr, decision, true);
  recordQueryMetrics(ctx, namespace, name, rendered);
  const published = publishSnapshot(ctx, key, {
    createdAt: Date.now(),
    dqr,
    owner: { hubId: ctx.hubId, namespace, name, uid: raw.metadata?.uid ?? '' },
    rendered,
    clusters: new Map(clusters.map((c) => [c.member.key, c])),
    leaving: new Map(leaving.map((c) => [c.member.key, c])),
    refusals,
    held,
    selectedCount: selection.selected.length,
    previousResources,
    previousKeyColumns,
    pruneBaseline: new Map((pendingPrune?.clusters ?? []).map((c) => [targetKeyFromStatus(namespace, c.name), c.managed])),
    hadPendingPrune: pendingPrune !== undefined,
    confirmation,
    ledger: ledger === undefined ? undefined : { table: ledger.table, everything: decision.trigger === 'spec' },
    trigger: decision.trigger,
    seenAt: decision.seenAt,
    link,
    watchStatus: dqr.spec.statusUpdateQueryTemplate !== undefined || ledger !== undefined,
    statusKinds: ledger === undefined ? dqr.spec.statusUpdate.kinds : undefined,
  });
  log.debug(published ? 'query read; members queued' : 'query read; nothing changed for the members', { rows: rendered.rowCount, clusters: clusters.length + leaving.length, durationMs: Math.round(performance.now() - started) });
  return { requeueAfterMs: dqr.spec.pollIntervalMs };
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

