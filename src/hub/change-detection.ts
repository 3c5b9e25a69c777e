import type { DatabaseQueryResource } from '../api/index.ts';
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { readMaxTimestamp, type ConnectionSettings, type NotifySubscription } from '../db/index.ts';
import { markMoment, type SyncTrigger, type TraceLink } from '../telemetry/index.ts';
import type { HubContext } from './context.ts';

export interface SyncDecision {
  trigger: SyncTrigger;
  /**
   * When the change that causes this sync happened, as far as Rowcast can
   * tell: a notification's receipt; in timestamp mode the max() value itself
   * when the column is a timestamp; otherwise the start of the poll that saw
   * it. rowcast_sync_freshness_seconds counts from here.
   */
  seenAt: number;
  /** The span of the notification's receipt, for the sync's trace to point at. */
  link?: TraceLink;
  /** max(timestampColumn) read for this decision, remembered once the sync succeeds. */
  max?: string | null;
}

/**
 * Keeps a notify-mode DQR subscribed to its channel on the database's one
 * LISTEN connection; a notification or a reconnect (notifications may have
 * been lost) queues the DQR with that trigger.
 */
function ensureSubscription(ctx: HubContext, key: string, dqr: DatabaseQueryResource, settings: ConnectionSettings): NotifySubscription | undefined {
  const mode = dqr.spec.changeDetection;
  const current = ctx.subscriptions.get(key);
  if (mode.mode !== 'notify') {
    if (current !== undefined) void closeSubscription(ctx, key);
    return undefined;
  }
  // Identity only, kept in memory: a rotated password or another database resubscribes.
  const id = createHash('sha256').update(JSON.stringify(settings)).update(mode.channel).digest('hex');
  if (current?.id === id) return undefined;
  if (current !== undefined) void current.subscription.close();
  const subscription = ctx.notify.subscribe(settings, mode.channel, (signal) => {
    const previous = ctx.pendingTriggers.get(key);
    const trigger = signal === 'reconnect' ? 'reconnect' : 'notify';
    // The first one a sync answers is where its story starts; later ones fold into the same sync.
    const link = previous?.link ?? markMoment('rowcast.notification', { 'rowcast.dqr': key, 'rowcast.trigger': trigger });
    ctx.pendingTriggers.set(key, { trigger, at: previous?.at ?? Date.now(), ...(link === undefined ? {} : { link }) });
    ctx.queues.dqrs.add(key);
  });
  ctx.subscriptions.set(key, { id, subscription });
  return subscription;
}

export async function closeSubscription(ctx: HubContext, key: string): Promise<void> {
  const current = ctx.subscriptions.get(key);
  ctx.subscriptions.delete(key);
  ctx.changes.delete(key);
  ctx.pendingTriggers.delete(key);
  await current?.subscription.close();
}

/**
 * Whether this reconcile runs the DQR's query, and why. The query always runs
 * on the first sync of a generation, after a failure, on a notification or
 * reconnect, and at least every --full-sync-interval; in timestamp mode a poll
 * runs it only when max(timestampColumn) moved (one light query instead of the
 * whole result); notify mode keeps the poll as a safety net. A confirmation
 * of the pending prune runs it at once.
 */
export async function decideSync(
  ctx: HubContext,
  key: string,
  dqr: DatabaseQueryResource,
  settings: ConnectionSettings,
  pool: pg.Pool,
  signal: AbortSignal,
  /** A person confirmed the pending prune: the sync that uses it runs now, whatever the data did. */
  confirming = false,
): Promise<SyncDecision | undefined> {
  const subscribed = ensureSubscription(ctx, key, dqr, settings);
  if (subscribed !== undefined) {
    // LISTEN confirmed before the full sync, or a change committed in between would be missed; bounded, as an unreachable database never confirms.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([subscribed.ready, new Promise((resolve) => (timer = setTimeout(resolve, 5000)))]);
    clearTimeout(timer);
  }
  const now = Date.now();
  const state = ctx.changes.get(key);
  const pending = ctx.pendingTriggers.get(key);
  ctx.pendingTriggers.delete(key);
  const mode = dqr.spec.changeDetection;
  const reading = mode.mode === 'timestamp' ? await readMaxTimestamp(pool, mode.tableName, mode.timestampColumn, signal) : undefined;
  const max = reading?.max;
  const withMax = (decision: SyncDecision): SyncDecision => (reading === undefined ? decision : { ...decision, max: reading.max });
  if (state === undefined || state.generation !== dqr.metadata.generation) return withMax({ trigger: 'spec', seenAt: now });
  if (state.failed) return withMax({ trigger: 'retry', seenAt: now });
  if (confirming) return withMax({ trigger: 'confirmation', seenAt: now });
  if (pending !== undefined) return withMax({ trigger: pending.trigger, seenAt: pending.at, ...(pending.link === undefined ? {} : { link: pending.link }) });
  if (mode.mode === 'none' || mode.mode === 'notify') return { trigger: 'poll', seenAt: now };
  // A writer's clock ahead of Rowcast's would make the change happen after it was seen.
  if (max !== state.lastMax) return withMax({ trigger: 'timestamp', seenAt: Math.min(reading?.at ?? now, now) });
  if (now - state.lastRunAt >= ctx.options.fullSyncIntervalMs) return withMax({ trigger: 'full', seenAt: now });
  return undefined;
}

export function recordSyncRun(ctx: HubContext, key: string, dqr: DatabaseQueryResource, decision: SyncDecision, ok: boolean): void {
  const previous = ctx.changes.get(key);
  ctx.changes.set(key, {
    generation: dqr.metadata.generation,
    lastMax: ok ? decision.max : previous?.lastMax,
    lastRunAt: ok ? Date.now() : (previous?.lastRunAt ?? 0),
    failed: !ok,
  });
}
