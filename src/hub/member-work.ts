import { createHash } from 'node:crypto';
import { ANNOTATIONS } from '../api/index.ts';
import type { ReconcileResult } from '../runtime/index.ts';
import { inRootSpan } from '../telemetry/index.ts';
import { combineOutcomes, confirmedBy, pruneBudget, syncCluster, type ClusterSyncOutcome, type SyncCluster } from '../sync/index.ts';
import { dqrPath, recordClusterMetrics, reportOutcome, reporter, type BehindMember } from './dqr-status.ts';
import { memberItemKey, splitKey, type DqrSnapshot, type DqrWork, type HubContext, type HubObject } from './context.ts';
import { driftCondition, dueHeals, forgetUnwantedDrift, settleDrift } from './drift.ts';

/** A period with ±10% jitter, so the DQRs and members that started together do not re-check together. */
function jittered(periodMs: number): number {
  return Math.round(periodMs * (0.9 + Math.random() * 0.2));
}

/**
 * Whether this pass re-applies every object (driftPolicy Heal, every
 * --resync-period): the backstop for a drift event the watch missed. The
 * first pass of a member only sets the clock.
 */
function resyncDue(ctx: HubContext, work: DqrWork, snapshot: DqrSnapshot, clusterKey: string): boolean {
  const period = ctx.options.resyncPeriodMs;
  if (period <= 0 || snapshot.dqr.spec.driftPolicy !== 'Heal') {
    work.resyncAt.delete(clusterKey);
    return false;
  }
  const at = work.resyncAt.get(clusterKey);
  if (at === undefined) work.resyncAt.set(clusterKey, Date.now() + jittered(period));
  return at !== undefined && Date.now() >= at;
}

/** How long a member may take on a snapshot before status calls it behind (and before status waits no longer for it). */
export const BEHIND_AFTER_MS = 10_000;

function splitItemKey(itemKey: string): { dqrKey: string; clusterKey: string } {
  const at = itemKey.indexOf('@');
  return { dqrKey: itemKey.slice(0, at), clusterKey: itemKey.slice(at + 1) };
}

function workOf(ctx: HubContext, dqrKey: string): DqrWork {
  let work = ctx.work.get(dqrKey);
  if (work === undefined) {
    work = { snapshot: undefined, members: new Map(), behindSince: new Map(), failures: new Map(), running: new Set(), drift: new Map(), resyncAt: new Map() };
    ctx.work.set(dqrKey, work);
  }
  return work;
}

/** What each member managed as last known, for a count limit's DQR-wide share. */
function lastManaged(work: DqrWork, keys: readonly string[]): number[] {
  return keys.map((k) => work.members.get(k)?.outcome.cluster.managed ?? 0);
}

/**
 * Makes `snapshot` (without version and budget) the one every member of the
 * DQR works from, and queues each member's item. A member still busy with an
 * older one picks this up as soon as it is done.
 */
export function publishSnapshot(ctx: HubContext, dqrKey: string, snapshot: Omit<DqrSnapshot, 'version' | 'budget' | 'confirmedIds' | 'fingerprint'>): boolean {
  const work = workOf(ctx, dqrKey);
  // The same rows, clusters and spec as the snapshot the members have: nothing for them to do (a poll at rest,
  // or one that came while they were still applying the last one).
  const fingerprint = fingerprintOf(snapshot);
  if (work.snapshot?.fingerprint === fingerprint) {
    // Rows a member refused (a namespace it lacks, a conflict) are tried again at each poll, as before.
    for (const [key, state] of work.members) {
      const refused = state.outcome.failures.length > 0 && (work.failures.get(key) ?? 0) === 0;
      if (refused && state.version === work.snapshot.version) ctx.queues.members.add(memberItemKey(dqrKey, key));
    }
    return false;
  }
  const keys = [...snapshot.clusters.keys(), ...snapshot.leaving.keys()];
  const version = (work.snapshot?.version ?? 0) + 1;
  // What the annotation confirms is fixed now, from the prunes status published: members finishing meanwhile do not change it.
  const pending = keys.flatMap((k) => {
    const blocked = work.members.get(k)?.outcome.pruneBlocked;
    return blocked === undefined ? [] : [blocked];
  });
  work.snapshot = {
    ...snapshot,
    version,
    budget: pruneBudget(snapshot.dqr.spec.pruneLimit, lastManaged(work, keys)),
    confirmedIds: confirmedBy(snapshot.confirmation, pending),
    fingerprint,
  };
  forgetUnwantedDrift(work, work.snapshot);
  const current = new Set(keys);
  for (const key of [...work.members.keys(), ...work.behindSince.keys()]) {
    if (current.has(key)) continue;
    work.members.delete(key);
    work.behindSince.delete(key);
    work.failures.delete(key);
    work.resyncAt.delete(key);
    ctx.queues.members.forget(memberItemKey(dqrKey, key));
  }
  for (const key of keys) {
    if (!work.behindSince.has(key)) work.behindSince.set(key, snapshot.createdAt);
    // A member failing as a whole keeps its own backoff (its retry takes this snapshot): a dead member is not hit at every poll.
    if ((work.failures.get(key) ?? 0) === 0) ctx.queues.members.add(memberItemKey(dqrKey, key));
  }
  ctx.queues.dqrStatus.add(dqrKey);
  return true;
}

/** Everything a snapshot asks of the members and says in status, as one hash (its time and trace aside). */
function fingerprintOf(snapshot: Omit<DqrSnapshot, 'version' | 'budget' | 'confirmedIds' | 'fingerprint'>): string {
  const hash = createHash('sha256');
  const { rendered } = snapshot;
  hash.update(
    JSON.stringify([
      snapshot.dqr.metadata.uid,
      snapshot.dqr.metadata.generation,
      [...snapshot.clusters.keys()],
      [...snapshot.leaving.keys()],
      snapshot.refusals,
      snapshot.held,
      snapshot.selectedCount,
      snapshot.previousResources,
      snapshot.previousKeyColumns,
      [...snapshot.pruneBaseline],
      snapshot.hadPendingPrune,
      snapshot.confirmation,
      snapshot.ledger,
      snapshot.watchStatus,
      rendered.rowCount,
      rendered.failures,
      rendered.unkeyedRows,
      rendered.unattributableRows,
      rendered.keyColumns,
      rendered.formerKeys === undefined ? null : [...rendered.formerKeys],
      [...rendered.failedRows].map(([cluster, rows]) => [cluster, [...rows]]),
    ]),
  );
  for (const [cluster, objects] of rendered.desired) {
    hash.update(`\u0000${cluster}`);
    for (const object of objects) hash.update(`\u0001${object.rowKey}\u0002${object.hash}`);
  }
  return hash.digest('base64url');
}

/**
 * The DQR's members stop taking work from its snapshot: a failure before the
 * query (its spec, its database) says nothing may be applied; a deleted DQR is
 * finalized. Resolves once the items running now are done.
 */
export async function retireSnapshot(ctx: HubContext, dqrKey: string): Promise<void> {
  const work = ctx.work.get(dqrKey);
  if (work === undefined) return;
  work.snapshot = undefined;
  await Promise.allSettled([...work.running]);
}

/** A member reachable again (or rebuilt): every DQR's item for it runs now, its backoff forgotten. */
export function wakeMember(ctx: HubContext, clusterKey: string): void {
  for (const [dqrKey, work] of ctx.work) {
    if (work.snapshot === undefined || !(work.snapshot.clusters.has(clusterKey) || work.snapshot.leaving.has(clusterKey))) continue;
    work.failures.delete(clusterKey);
    ctx.queues.members.add(memberItemKey(dqrKey, clusterKey));
  }
}

/** A DQR that is gone: its members' items and everything remembered for them go too. */
export function forgetDqrWork(ctx: HubContext, dqrKey: string): void {
  const work = ctx.work.get(dqrKey);
  ctx.work.delete(dqrKey);
  for (const key of [...(work?.members.keys() ?? []), ...(work?.behindSince.keys() ?? [])]) ctx.queues.members.forget(memberItemKey(dqrKey, key));
  ctx.queues.dqrStatus.forget(dqrKey);
}

/**
 * One (DQR, member) work item: apply the DQR's latest snapshot on this member,
 * decide and carry out its prune, record where it stands. It backs off on
 * its own when the member fails; no other member waits for it.
 */
export async function reconcileMemberItem(ctx: HubContext, itemKey: string, signal: AbortSignal): Promise<ReconcileResult> {
  const { dqrKey, clusterKey } = splitItemKey(itemKey);
  const work = ctx.work.get(dqrKey);
  const snapshot = work?.snapshot;
  if (work === undefined || snapshot === undefined) return {};
  const leaving = snapshot.leaving.get(clusterKey);
  const selected = leaving ?? snapshot.clusters.get(clusterKey);
  if (selected === undefined) return {};
  // A member rebuilt since the snapshot (a new kubeconfig) is reached through its new client.
  const cluster = { ...selected, member: ctx.members.get(clusterKey) ?? selected.member };
  const run = syncOneMember(ctx, dqrKey, work, snapshot, cluster, leaving !== undefined, signal);
  work.running.add(run);
  let outcome: ClusterSyncOutcome;
  try {
    outcome = await run;
  } finally {
    work.running.delete(run);
  }
  // Gone, finalizing or failed before its query meanwhile: nothing more is recorded for it.
  if (ctx.work.get(dqrKey) !== work || work.snapshot === undefined) return {};
  // Kept for status and the next snapshot: the per-object lists were for this pass only (metrics, drift, status watches).
  work.members.set(clusterKey, { version: snapshot.version, outcome: { ...outcome, cluster: { ...outcome.cluster, known: [], written: [], healed: [], corrected: [], planned: [], pruneCandidates: [] } } });
  // Done with this one: behind, if at all, only since the one that came meanwhile.
  if (work.snapshot.version === snapshot.version) work.behindSince.delete(clusterKey);
  else work.behindSince.set(clusterKey, work.snapshot.createdAt);
  ctx.queues.dqrStatus.add(dqrKey);
  if (outcome.cluster.lastError === undefined) {
    work.failures.delete(clusterKey);
    // Back for the next full re-check (--resync-period) if nothing brings it sooner.
    const at = work.resyncAt.get(clusterKey);
    return at === undefined ? {} : { requeueAfterMs: Math.max(1000, at - Date.now()) };
  }
  const failures = (work.failures.get(clusterKey) ?? 0) + 1;
  work.failures.set(clusterKey, failures);
  // Its own backoff (status names the error; the log has it once, from the status).
  return { requeueAfterMs: Math.min(300_000, 1000 * 2 ** Math.min(failures - 1, 9)) };
}

async function syncOneMember(ctx: HubContext, dqrKey: string, work: DqrWork, snapshot: DqrSnapshot, cluster: SyncCluster, leaving: boolean, signal: AbortSignal): Promise<ClusterSyncOutcome> {
  const { namespace, name } = splitKey(dqrKey);
  const clusterKey = cluster.member.key;
  const lease = ctx.leases.get(dqrKey);
  const healing = leaving ? new Set<string>() : dueHeals(work, clusterKey);
  const healAll = !leaving && resyncDue(ctx, work, snapshot, clusterKey);
  // The prune this member had blocked last time keeps its counts from then, whether or not status has them yet:
  // the objects a blocked pass created must never make the same prune look small.
  const blocked = work.members.get(clusterKey)?.outcome.pruneBlocked?.clusters.find((c) => c.name === clusterKey)?.managed;
  const recorded = snapshot.pruneBaseline.get(clusterKey);
  const baseline = blocked === undefined ? recorded : Math.min(blocked, recorded ?? blocked);
  const attributes = {
    'rowcast.dqr': dqrKey,
    'rowcast.cluster': clusterKey,
    'rowcast.generation': snapshot.dqr.metadata.generation ?? 0,
    'rowcast.snapshot': snapshot.version,
    'rowcast.trigger': snapshot.trigger,
    // From the snapshot being made to this member starting on it: the member's own queue of work.
    'rowcast.snapshot_wait_ms': Math.max(0, Date.now() - snapshot.createdAt),
  };
  const outcome = await inRootSpan(
    'rowcast.member_sync',
    attributes,
    async (span) => {
      const result = await syncCluster({
        dqr: snapshot.dqr,
        rendered: snapshot.rendered,
        cluster,
        leaving,
        owner: snapshot.owner,
        previousResources: snapshot.previousResources,
        pruneBaseline: baseline,
        // Checked live only when the cached copy has one (a new one queues its own sync), so a blocked DQR
        // polling every few seconds costs the hub no GET; unreadable is unconfirmed: the prune waits.
        ...(snapshot.confirmation === undefined
          ? {}
          : {
              confirms: async (id: string) => {
                if (snapshot.confirmation !== id && !snapshot.confirmedIds.has(id)) return false;
                const live = await ctx.hub.request<HubObject>('GET', dqrPath(namespace, name), { signal }).then(
                  (o) => o.metadata?.annotations?.[ANNOTATIONS.confirmPrune],
                  () => undefined,
                );
                return live === snapshot.confirmation;
              },
            }),
        ...(snapshot.budget === undefined ? {} : { budget: snapshot.budget }),
        ...(healing.size === 0 ? {} : { heal: healing }),
        ...(healAll ? { healAll: true } : {}),
        ...(snapshot.ledger === undefined || lease === undefined ? {} : { ledger: { ...snapshot.ledger, pool: lease.pool } }),
        fence: ctx.fence,
        signal,
      });
      span.setAttributes({
        'rowcast.applied': result.cluster.applied - result.cluster.unchanged,
        'rowcast.unchanged': result.cluster.unchanged,
        'rowcast.pruned': result.cluster.pruned,
        'rowcast.failures': result.failures.length,
        'rowcast.prune_blocked': result.pruneBlocked !== undefined,
        'rowcast.healed': result.cluster.healed.length,
        'rowcast.resync': healAll,
      });
      if (result.cluster.lastError !== undefined) span.setAttribute('rowcast.error', result.cluster.lastError);
      return result;
    },
    snapshot.link === undefined ? [] : [snapshot.link],
  );
  settleDrift(ctx, work, clusterKey, healing, outcome);
  if (healAll) {
    const missed = outcome.cluster.corrected.filter((id) => !healing.has(id)).length;
    ctx.metrics.driftCorrections.labels(clusterKey, 'healed').inc(missed);
    if (missed > 0) ctx.logger.info('resync healed drift no event reported', { dqr: dqrKey, cluster: clusterKey, objects: missed });
    if (outcome.cluster.lastError === undefined) work.resyncAt.set(clusterKey, Date.now() + jittered(ctx.options.resyncPeriodMs));
  }
  const managed = ctx.managed.get(dqrKey) ?? new Map<string, number>();
  ctx.managed.set(dqrKey, managed);
  if (leaving) managed.delete(clusterKey);
  else managed.set(clusterKey, outcome.cluster.managed);
  // Only write-back and the ledger read it: a DQR with neither keeps no list of its objects.
  if (snapshot.watchStatus) ctx.statusWatches.recordKnown(dqrKey, outcome.cluster.target, outcome.cluster.known, outcome.cluster.lastError === undefined);
  if (snapshot.watchStatus && !leaving && outcome.cluster.lastError === undefined) {
    for (const resource of outcome.resources) {
      const [apiVersion = '', kind = ''] = resource.split('|');
      if (snapshot.statusKinds !== undefined && !snapshot.statusKinds.includes(kind)) continue;
      ctx.statusWatches.ensure(cluster.member, apiVersion, kind, cluster.target.spec.allowedNamespaces).catch((error: unknown) => {
        ctx.logger.warn('status watch not started', { dqr: dqrKey, cluster: clusterKey, kind, error });
      });
    }
  }
  recordClusterMetrics(ctx, namespace, name, outcome, snapshot.seenAt);
  return outcome;
}

/**
 * The DQR's status from its latest snapshot and where each member stands:
 * written once every member has finished it, or, while some are still on it
 * after BEHIND_AFTER_MS, with those named as behind (and again when they
 * catch up). The one writer of a synced DQR's status.
 */
export async function reportDqrProgress(ctx: HubContext, dqrKey: string): Promise<ReconcileResult> {
  const work = ctx.work.get(dqrKey);
  const snapshot = work?.snapshot;
  if (work === undefined || snapshot === undefined) return {};
  const { namespace, name } = splitKey(dqrKey);
  const raw = ctx.informers.dqrs.get(name, namespace);
  if (raw === undefined || raw.metadata?.deletionTimestamp !== undefined) return {};
  const keys = [...snapshot.clusters.keys(), ...snapshot.leaving.keys()];
  const now = Date.now();
  const pending = keys.filter((k) => work.members.get(k)?.version !== snapshot.version);
  const since = (k: string): number => work.behindSince.get(k) ?? snapshot.createdAt;
  // Members still on it, none for long: the status waits for them rather than flap.
  const longest = Math.max(0, ...pending.map((k) => now - since(k)));
  if (pending.length > 0 && longest < BEHIND_AFTER_MS) return { requeueAfterMs: BEHIND_AFTER_MS - longest };
  const outcomes = keys.flatMap((k) => {
    const state = work.members.get(k);
    return state === undefined ? [] : [state.outcome];
  });
  const outcome = combineOutcomes(snapshot.rendered, outcomes, snapshot.dqr.spec.prune);
  const behind: BehindMember[] = pending.map((k) => ({ cluster: k, since: since(k), lastError: (work.failures.get(k) ?? 0) > 0 ? work.members.get(k)?.outcome.cluster.lastError : undefined }));
  const done = behind.length === 0;
  const clean = done && outcome.clusters.every((c) => c.lastError === undefined);
  // The former key columns stay recorded until a pass without a failure has re-stamped every object under the new ones.
  const previous = snapshot.previousKeyColumns;
  const keyColumnsChanged = previous !== undefined && previous.join('\u0000') !== outcome.keyColumns.join('\u0000');
  const rowKeyColumns = outcome.keyColumns.length > 0 && (!keyColumnsChanged || (clean && outcome.failures.length === 0)) ? outcome.keyColumns : undefined;
  await reportOutcome(reporter(ctx, raw, namespace, name), {
    namespace,
    outcome: done ? outcome : { ...outcome, pruneEvaluated: false },
    refusals: snapshot.refusals,
    selectedCount: snapshot.selectedCount,
    trigger: snapshot.trigger,
    writeBackFailure: ctx.statusWatches.failures.get(dqrKey),
    hadPendingPrune: snapshot.hadPendingPrune,
    rowKeyColumns,
    held: snapshot.held,
    behind,
    drift: driftCondition(work, snapshot, namespace),
  });
  // Within the limit everywhere (or confirmed and done): a confirmation left over would only wait to release some later prune.
  if (done && outcome.pruneEvaluated && outcome.pruneBlocked === undefined && raw.metadata?.annotations?.[ANNOTATIONS.confirmPrune] !== undefined) {
    ctx.fence(dqrKey);
    await ctx.writer.patchMetadata(dqrPath(namespace, name), { annotations: { [ANNOTATIONS.confirmPrune]: null } });
  }
  if (done) {
    ctx.logger.info('synced', {
      dqr: dqrKey,
      snapshot: snapshot.version,
      rows: outcome.rowCount,
      clusters: outcome.clusters.map((c) => ({ name: c.name, applied: c.applied, unchanged: c.unchanged, pruned: c.pruned, failed: c.failed })),
      failures: outcome.failures.length,
      pruneBlocked: outcome.pruneBlocked !== undefined,
      durationMs: Math.round(Date.now() - snapshot.createdAt),
    });
  }
  return {};
}
