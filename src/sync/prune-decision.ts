import { createHash } from 'node:crypto';
import { allowedPrunes, type PruneLimit } from '../api/index.ts';
import type { LiveObject } from './plan.ts';

/** One cluster as the prune decision sees it, after its applies. */
export interface PruneClusterInput {
  cluster: string;
  /** What the member held for this DQR when listed, before this sync applied anything. */
  managedBefore: number;
  /** Owned objects no row wants any more. */
  candidates: readonly LiveObject[];
  /** The cluster failed as a whole (unreachable, listing failed...): not pruned, and not part of the share. */
  failed: boolean;
}

export interface PruneDecisionInput {
  /** spec.prune. */
  prune: boolean;
  limit: PruneLimit;
  /** Rows without a usable key could own anything: nothing is pruned anywhere. */
  unkeyedRows: number;
  clusters: readonly PruneClusterInput[];
  /** The confirmation annotation as read live from the hub; undefined when absent. */
  confirmation: string | undefined;
  /**
   * Per cluster, what it managed when the prune now pending was first
   * blocked. Objects a blocked sync created (re-keyed rows) are managed by
   * the next sync; measured against them, the same prune would pass.
   */
  baseline?: readonly { name: string; managed: number }[] | undefined;
  /**
   * What the DQR may still prune across all its clusters in this round, when
   * its clusters are decided one at a time (each member on its own): a count
   * limit then still bounds the DQR, not each cluster alone.
   */
  allowance?: { allowed: number; managed: number } | undefined;
}

/** A prune over spec.pruneLimit waiting for a person: published as status.pendingPrune. */
export interface PendingPrune {
  /** Names this exact set of objects: a confirmation must repeat it. */
  id: string;
  wanted: number;
  allowed: number;
  managed: number;
  /** Set when one cluster's own cap was exceeded; the figures are then that cluster's. */
  cluster?: string;
  /** What each prunable cluster managed when this pending prune was first blocked: the share stays of that until it is released. */
  clusters: { name: string; managed: number }[];
}

export interface PruneDecision {
  /** What to delete now, per cluster. */
  prune: { cluster: string; objects: readonly LiveObject[] }[];
  /** Over the limit and not confirmed: nothing is pruned. */
  pending: PendingPrune | undefined;
  /** Over the limit and released by a confirmation naming this prune's id. */
  confirmed: boolean;
  /** False when pruning was off or impossible this time (spec.prune false, unkeyed rows): the limit was not weighed. */
  evaluated: boolean;
}

/** The objects a prune would delete, as one short id: the same set gives the same id from sync to sync. */
function pruneId(clusters: readonly PruneClusterInput[]): string {
  const hash = createHash('sha256');
  const entries = clusters.flatMap((c) => c.candidates.map((o) => `${c.cluster}\u0000${o.uid}`)).sort();
  for (const entry of entries) hash.update(entry).update('\u0001');
  return hash.digest('hex').slice(0, 16);
}

/**
 * Every prune decision of a sync, in one place. Pure. Only clusters that did
 * not fail as a whole are pruned. The limit is a share of what the DQR
 * managed before this sync on those clusters (objects created by the same
 * sync never make a prune look small), across them and on each one alone. A
 * prune over either is released only by a confirmation naming its id.
 */
export function decidePrune(input: PruneDecisionInput): PruneDecision {
  if (!input.prune || input.unkeyedRows > 0) return { prune: [], pending: undefined, confirmed: false, evaluated: false };
  const baseline = new Map((input.baseline ?? []).map((b) => [b.name, b.managed]));
  const prunable = input.clusters
    .filter((c) => !c.failed)
    .map((c) => ({ ...c, managedBefore: Math.min(c.managedBefore, baseline.get(c.cluster) ?? c.managedBefore) }));
  const wanted = prunable.reduce((n, c) => n + c.candidates.length, 0);
  const managed = prunable.reduce((n, c) => n + c.managedBefore, 0);
  const allowed = allowedPrunes(input.limit, managed);
  const prune = prunable.filter((c) => c.candidates.length > 0).map((c) => ({ cluster: c.cluster, objects: c.candidates }));
  const only = prunable.length === 1 ? prunable[0]?.cluster : undefined;
  let over: Omit<PendingPrune, 'id' | 'clusters'> | undefined = wanted > allowed ? { wanted, allowed, managed, ...(only === undefined ? {} : { cluster: only }) } : undefined;
  if (over === undefined && input.allowance !== undefined && wanted > input.allowance.allowed) over = { wanted, allowed: input.allowance.allowed, managed: input.allowance.managed };
  for (const c of prunable) {
    if (over !== undefined) break;
    const cap = allowedPrunes(input.limit, c.managedBefore);
    if (c.candidates.length > cap) over = { wanted: c.candidates.length, allowed: cap, managed: c.managedBefore, cluster: c.cluster };
  }
  if (over === undefined) return { prune, pending: undefined, confirmed: false, evaluated: true };
  const id = pruneId(prunable);
  if (input.confirmation === id) return { prune, pending: undefined, confirmed: true, evaluated: true };
  const clusters = prunable.map((c) => ({ name: c.cluster, managed: c.managedBefore }));
  return { prune: [], pending: { id, ...over, clusters }, confirmed: false, evaluated: true };
}

/**
 * The pending prunes of several clusters, each decided on its own, as the one
 * status.pendingPrune a person confirms: one cluster's stands as it is;
 * several get an id naming all of theirs (see confirmedBy).
 */
export function combinePending(pending: readonly PendingPrune[]): PendingPrune | undefined {
  const [first, ...rest] = pending;
  if (first === undefined) return undefined;
  if (rest.length === 0) return first;
  const hash = createHash('sha256');
  for (const id of pending.map((p) => p.id).sort()) hash.update(id).update('\u0001');
  const sum = (pick: (p: PendingPrune) => number): number => pending.reduce((n, p) => n + pick(p), 0);
  return {
    id: hash.digest('hex').slice(0, 16),
    wanted: sum((p) => p.wanted),
    allowed: sum((p) => p.allowed),
    managed: sum((p) => p.managed),
    clusters: pending.flatMap((p) => p.clusters),
  };
}

/** The pending prunes a confirmation releases: the one it names, or every one of a combined id it names. */
export function confirmedBy(confirmation: string | undefined, pending: readonly PendingPrune[]): Set<string> {
  if (confirmation === undefined) return new Set();
  const combined = combinePending(pending);
  if (combined?.id === confirmation) return new Set(pending.map((p) => p.id));
  return new Set(pending.filter((p) => p.id === confirmation).map((p) => p.id));
}
