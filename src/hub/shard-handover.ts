import { SHARDING_LABELS } from '../api/index.ts';
import type { ReconcileResult } from '../runtime/index.ts';
import { splitKey, type HubContext, type HubObject, type ShardMembership } from './context.ts';
import { dqrPath } from './dqr-status.ts';
import { retireSnapshot } from './member-work.ts';

/** The sharder asked this replica to hand the DQR over (the drain label). */
export function drainRequested(raw: HubObject): boolean {
  return raw.metadata?.labels?.[SHARDING_LABELS.drain] !== undefined;
}

/**
 * The owner's half of a move: no member item of the DQR starts any more, the
 * running ones finish (a prune is never cut short: they end between batches
 * or at their end), then the replica stops writing for it and removes both
 * labels, which tells the sharder it may assign the DQR elsewhere. Until the
 * patch lands the DQR is still this replica's; after it, the Fence refuses
 * every write for it even before the informer lets it go.
 */
export async function handOver(ctx: HubContext, shard: ShardMembership, key: string, raw: HubObject): Promise<ReconcileResult> {
  await retireSnapshot(ctx, key);
  ctx.fence(key);
  shard.relinquished.add(key);
  const { namespace, name } = splitKey(key);
  try {
    await ctx.writer.patchMetadata(dqrPath(namespace, name), {
      labels: { [SHARDING_LABELS.shard]: null, [SHARDING_LABELS.drain]: null },
      resourceVersion: raw.metadata?.resourceVersion,
    });
  } catch (error) {
    shard.relinquished.delete(key);
    throw error;
  }
  ctx.logger.info('handed a DQR over to the sharder', { dqr: key, shard: shard.identity });
  return {};
}
