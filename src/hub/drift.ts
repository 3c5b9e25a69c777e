import { API_VERSION, CONDITION_TYPES, DATABASE_QUERY_RESOURCE, REASONS } from '../api/index.ts';
import type { ConditionUpdate } from '../status/index.ts';
import { identityOf, statusClusterName, type ClusterSyncOutcome } from '../sync/index.ts';
import { memberItemKey, splitKey, type DqrSnapshot, type DqrWork, type DriftState, type HubContext } from './context.ts';

/** A change on a member that Rowcast's own applies did not make, as the member's watch cache reports it. */
export interface DriftNotice {
  /** The member (ClusterTarget namespace/name). */
  cluster: string;
  apiVersion: string;
  kind: string;
  namespace: string | undefined;
  name: string;
  /** The object's rowcast.dev/owner-ref annotation: which DQR, through which ClusterTarget, of which hub. */
  ownerRef: string | undefined;
  rowKey: string | undefined;
  reason: string;
  /** Field managers other than Rowcast's on the object. */
  managers: readonly string[];
}

/** Drift events further apart than this start the heal backoff again. */
const DRIFT_WINDOW_MS = 10 * 60_000;
const HEAL_BACKOFF_FIRST_MS = 2000;
const HEAL_BACKOFF_MAX_MS = 5 * 60_000;
/** From this many drift events in a window, another writer is fighting Rowcast over the object: status says so. */
const FIGHT_COUNT = 3;

function ownerOf(ownerRef: string | undefined): { hub: string | undefined; dqrKey: string; target: string | undefined } | undefined {
  try {
    const ref = JSON.parse(ownerRef ?? '') as { hub?: unknown; namespace?: unknown; name?: unknown; target?: unknown };
    if (typeof ref.namespace !== 'string' || typeof ref.name !== 'string') return undefined;
    return { hub: typeof ref.hub === 'string' ? ref.hub : undefined, dqrKey: `${ref.namespace}/${ref.name}`, target: typeof ref.target === 'string' ? ref.target : undefined };
  } catch {
    return undefined;
  }
}

/** Whether the snapshot still renders this object on this cluster (a lost object no row wants is no loss). */
function wanted(snapshot: DqrSnapshot, cluster: string, identity: string): boolean {
  return snapshot.rendered.desired.get(cluster)?.some((o) => identityOf(o) === identity) === true;
}

/** How long the next heal of an object waits: at once the first time, then 2s doubling to 5m while the changes keep coming. */
export function healDelay(count: number): number {
  if (count <= 1) return 0;
  return Math.min(HEAL_BACKOFF_MAX_MS, HEAL_BACKOFF_FIRST_MS * 2 ** (count - 2));
}

/**
 * A drift on a member, handled by the DQR's driftPolicy: Heal queues the
 * member's work item to apply the object again (with the object's backoff),
 * Report records it for status, an Event and the metric, Ignore drops it.
 * Only objects of this hub, through the ClusterTarget they were applied
 * with, that the DQR's latest rows still want; never a foreign object.
 */
export function handleDrift(ctx: HubContext, notice: DriftNotice): void {
  const owner = ownerOf(notice.ownerRef);
  if (owner === undefined || (owner.hub !== undefined && owner.hub !== ctx.hubId)) return;
  if (owner.target !== undefined && owner.target !== notice.cluster) return;
  const work = ctx.work.get(owner.dqrKey);
  const snapshot = work?.snapshot;
  if (work === undefined || snapshot === undefined || !snapshot.clusters.has(notice.cluster)) return;
  const policy = snapshot.dqr.spec.driftPolicy;
  if (policy === 'Ignore') return;
  const identity = identityOf({ apiVersion: notice.apiVersion, kind: notice.kind, namespace: notice.namespace, name: notice.name });
  if (!wanted(snapshot, notice.cluster, identity)) return;
  const now = Date.now();
  const key = `${notice.cluster}|${identity}`;
  const previous = work.drift.get(key);
  const count = previous !== undefined && now - previous.lastAt < DRIFT_WINDOW_MS ? previous.count + 1 : 1;
  const state: DriftState = {
    cluster: notice.cluster,
    identity,
    object: `${notice.kind} ${notice.namespace === undefined ? '' : `${notice.namespace}/`}${notice.name}`,
    rowKey: notice.rowKey,
    reason: notice.reason,
    managers: notice.managers,
    count,
    lastAt: now,
    healAt: policy === 'Heal' ? now + healDelay(count) : undefined,
    open: true,
  };
  work.drift.set(key, state);
  const { namespace, name } = splitKey(owner.dqrKey);
  if (policy === 'Report') {
    ctx.metrics.driftCorrections.labels(notice.cluster, 'reported').inc();
    const raw = ctx.informers.dqrs.get(name, namespace);
    const ref = { apiVersion: API_VERSION, kind: DATABASE_QUERY_RESOURCE.kind, namespace, name, uid: raw?.metadata?.uid };
    void ctx.writer.event(ref, 'Warning', REASONS.driftReported, `${describeDrift(state, namespace)}; driftPolicy Report: left as it is`);
    ctx.queues.dqrStatus.add(owner.dqrKey);
    return;
  }
  const delay = (state.healAt ?? now) - now;
  const item = memberItemKey(owner.dqrKey, notice.cluster);
  if (delay <= 0) ctx.queues.members.add(item);
  else ctx.queues.members.addAfter(item, delay);
  if (count >= FIGHT_COUNT) ctx.queues.dqrStatus.add(owner.dqrKey);
}

function describeDrift(state: DriftState, namespace: string): string {
  const by = state.managers.length === 0 ? '' : ` (field managers besides Rowcast: ${state.managers.slice(0, 3).join(', ')})`;
  const what = state.reason === 'modified' ? 'changed by someone else' : state.reason === 'unmarked' ? "stripped of Rowcast's marks" : 'deleted by someone else';
  return `${state.object} on cluster ${statusClusterName(namespace, state.cluster)} was ${what}${by}`;
}

/** The objects of this member to heal now: drifted, still open, their backoff over. */
export function dueHeals(work: DqrWork, cluster: string, now = Date.now()): Set<string> {
  const due = new Set<string>();
  for (const state of work.drift.values()) if (state.cluster === cluster && state.open && state.healAt !== undefined && state.healAt <= now) due.add(state.identity);
  return due;
}

/**
 * After a member's pass: what it wrote is no longer drifted (healed, or
 * applied again for a row change); a heal that failed stays open for the
 * item's retry. Counts each heal once.
 */
export function settleDrift(ctx: HubContext, work: DqrWork, cluster: string, healing: ReadonlySet<string>, outcome: ClusterSyncOutcome): void {
  const written = new Set(outcome.cluster.written);
  for (const [key, state] of work.drift) {
    if (state.cluster !== cluster) continue;
    if (written.has(state.identity)) {
      if (healing.has(state.identity)) ctx.metrics.driftCorrections.labels(cluster, 'healed').inc();
      state.open = false;
    } else if (healing.has(state.identity)) {
      ctx.metrics.driftCorrections.labels(cluster, 'failed').inc();
    }
    // Quiet for a whole window: its history no longer counts.
    if (!state.open && Date.now() - state.lastAt > DRIFT_WINDOW_MS) work.drift.delete(key);
  }
}

/** Drops what no row of the new snapshot wants any more on these clusters. */
export function forgetUnwantedDrift(work: DqrWork, snapshot: DqrSnapshot): void {
  for (const [key, state] of work.drift) if (!snapshot.clusters.has(state.cluster) || !wanted(snapshot, state.cluster, state.identity)) work.drift.delete(key);
}

/** The Drifted condition: what others changed that is still as they left it (Report), or objects Rowcast is fighting over (Heal). */
export function driftCondition(work: DqrWork, snapshot: DqrSnapshot, namespace: string): ConditionUpdate {
  const type = CONDITION_TYPES.drifted;
  const states = [...work.drift.values()];
  if (snapshot.dqr.spec.driftPolicy === 'Report') {
    const open = states.filter((s) => s.open);
    if (open.length > 0) {
      const message = `${open.length} object(s) changed on members by someone else, left as they are (driftPolicy Report): ${open
        .slice(0, 5)
        .map((s) => describeDrift(s, namespace))
        .join('; ')}`;
      return { type, status: 'True', reason: REASONS.driftReported, message };
    }
  } else if (snapshot.dqr.spec.driftPolicy === 'Heal') {
    const fights = states.filter((s) => s.count >= FIGHT_COUNT && Date.now() - s.lastAt < DRIFT_WINDOW_MS);
    if (fights.length > 0) {
      const message = `another writer keeps changing ${fights.length} object(s); each heal waits longer (2s doubling to 5m): ${fights
        .slice(0, 5)
        .map((s) => `${describeDrift(s, namespace)} ${s.count} times in the last ${Math.round(DRIFT_WINDOW_MS / 60_000)}m`)
        .join('; ')}`;
      return { type, status: 'True', reason: REASONS.healBackingOff, message };
    }
  }
  const healed = states.length;
  return { type, status: 'False', reason: REASONS.noDrift, message: healed === 0 || snapshot.dqr.spec.driftPolicy !== 'Heal' ? 'no managed object was changed by someone else' : `${healed} object(s) changed by someone else were healed` };
}
