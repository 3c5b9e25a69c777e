import { createHash } from 'node:crypto';
import { byCodePoint } from '../api/index.ts';

/** Rendezvous (highest random weight) score of a DQR key on a shard: the shard a key prefers most is the one with the highest. */
export function rendezvousScore(shard: string, key: string): bigint {
  return createHash('sha256').update(`${shard}\n${key}`).digest().readBigUInt64BE(0);
}

/** The shard of a set that a key prefers, by rendezvous hashing; undefined without shards. */
export function rendezvousShard(key: string, shards: readonly string[]): string | undefined {
  let best: { shard: string; score: bigint } | undefined;
  for (const shard of shards) {
    const score = rendezvousScore(shard, key);
    if (best === undefined || score > best.score || (score === best.score && shard < best.shard)) best = { shard, score };
  }
  return best?.shard;
}

export interface AssignedDqr {
  key: string;
  /** The rowcast.dev/shard label, if any. */
  shard: string | undefined;
  /** The rowcast.dev/drain label is set: its owner is handing it over. */
  draining: boolean;
}

/**
 * What the sharder does next: `assign` sets the shard label on a DQR that has
 * none or whose shard is dead (`from`), `drain` asks a live owner to hand a
 * DQR over (it removes both labels once its in-flight work is done; the DQR is
 * then assigned like any unassigned one).
 */
export type ShardAction = { kind: 'assign'; key: string; shard: string; from: string | undefined } | { kind: 'drain'; key: string; from: string; to: string };

/** A shard may keep this share above the even split before its extra DQRs are moved: membership changes move only what they must. */
const KEEP_SLACK = 1.1;

/**
 * The sharder's one rule. `ready` are shards whose Lease is current;
 * `fencing` are shards whose Lease has expired but is not yet taken over by
 * the sharder: their DQRs wait, since their replica may still be finishing a
 * write by its own clock. Any other shard named by a label is dead: its DQRs
 * are assigned again at once.
 *
 * Consistent hashing with bounded loads, over rendezvous hashing: a DQR stays
 * where it is while its shard is ready and holds no more than 10 % over the
 * even share (the ones it prefers least go first); every DQR to place goes to
 * the shard that scores highest for it among those below the even share
 * (rounded up). So the split stays within one DQR of even where nothing is
 * kept, and a new or dead shard moves only the share it must.
 */
export function planAssignments(dqrs: readonly AssignedDqr[], ready: readonly string[], fencing: ReadonlySet<string>): ShardAction[] {
  if (ready.length === 0) return [];
  const readySet = new Set(ready);
  // Draining DQRs and those of a shard being fenced wait, and count in no shard's load; they still count in the even share, or every drain would shrink it and ask for another.
  const countable = dqrs.filter((d) => !(d.draining && d.shard !== undefined && readySet.has(d.shard)) && !(d.shard !== undefined && fencing.has(d.shard)));
  const evenCap = Math.ceil(dqrs.length / ready.length);
  const keepCap = Math.ceil((dqrs.length / ready.length) * KEEP_SLACK);
  const load = new Map<string, number>(ready.map((s) => [s, 0]));
  const actions: ShardAction[] = [];
  const toPlace: AssignedDqr[] = [];
  const byShard = new Map<string, AssignedDqr[]>();
  for (const dqr of countable) {
    if (dqr.shard !== undefined && readySet.has(dqr.shard)) byShard.set(dqr.shard, [...(byShard.get(dqr.shard) ?? []), dqr]);
    else toPlace.push(dqr);
  }
  for (const [shard, held] of byShard) {
    const ranked = [...held].sort((a, b) => compareDesc(rendezvousScore(shard, a.key), rendezvousScore(shard, b.key)) || byCodePoint(a.key, b.key));
    load.set(shard, Math.min(ranked.length, keepCap));
    for (const dqr of ranked.slice(keepCap)) toPlace.push(dqr);
  }
  toPlace.sort((a, b) => byCodePoint(a.key, b.key));
  const orderFor = (key: string): string[] => [...ready].sort((a, b) => compareDesc(rendezvousScore(a, key), rendezvousScore(b, key)) || byCodePoint(a, b));
  for (const dqr of toPlace) {
    const order = orderFor(dqr.key).filter((s) => s !== dqr.shard);
    const shard = order.find((s) => (load.get(s) ?? 0) < evenCap) ?? order.reduce((a, b) => ((load.get(b) ?? 0) < (load.get(a) ?? 0) ? b : a), order[0] ?? '');
    if (shard === '') continue;
    load.set(shard, (load.get(shard) ?? 0) + 1);
    if (dqr.shard !== undefined && readySet.has(dqr.shard)) actions.push({ kind: 'drain', key: dqr.key, from: dqr.shard, to: shard });
    else actions.push({ kind: 'assign', key: dqr.key, shard, from: dqr.shard });
  }
  return actions;
}

function compareDesc(a: bigint, b: bigint): number {
  return a > b ? -1 : a < b ? 1 : 0;
}
