import { ANNOTATIONS, parseClusterTarget, type DeletionPolicy } from '../api/index.ts';
import { FencedError, describeApiError } from '../runtime/index.ts';
import { listOwned, pruneMember, targetKeyFromStatus, unmarkMember } from '../sync/index.ts';
import { ownerMatcher } from '../render/index.ts';
import type { HubContext, HubObject } from './context.ts';

export type FinalizeResult = { ok: true; objects: number; orphaned: string[] } | { ok: false; message: string };

/**
 * spec.deletionPolicy as stored, read on its own: a spec this controller
 * cannot parse as a whole (a newer CRD, say) still says what to do, and a
 * value it does not know never turns into Delete.
 */
export function storedDeletionPolicy(raw: HubObject): { policy: DeletionPolicy } | { error: string } {
  const value = (raw.spec as { deletionPolicy?: unknown } | undefined)?.deletionPolicy;
  if (value === 'Delete' || value === 'Orphan') return { policy: value };
  return {
    error: `spec.deletionPolicy ${JSON.stringify(value ?? null)} is not a policy this controller knows (Delete, Orphan): nothing was deleted or orphaned; set it to Delete or Orphan to finish`,
  };
}

/** The ClusterTargets (namespace/name) this DQR wrote to, from status.clusters (see statusClusterName). */
export function clustersWrittenTo(raw: HubObject): string[] {
  const refs = ((raw.status?.['clusters'] ?? []) as { name?: unknown }[]).map((c) => (typeof c.name === 'string' ? c.name : '')).filter((n) => n !== '');
  return [...new Set(refs.map((ref) => targetKeyFromStatus(raw.metadata?.namespace ?? '', ref)))];
}

/** What the DQR's ledger recorded it wrote (spec.ledger), read by the caller: clusters and kinds status may have lost. */
export type LedgerFootprint = readonly { cluster: string; apiVersion: string; kind: string }[];

/**
 * A DQR is being deleted: with deletionPolicy Delete its objects go from
 * every cluster it wrote to (status.clusters, plus what its ledger records); with Orphan they stay and lose Rowcast's marks.
 * No other cluster is touched (or needs RBAC). A cluster that cannot be done
 * (unreachable, gone, paused: a paused target is never touched) keeps the
 * finalizer, unless a person annotated the DQR with
 * rowcast.dev/orphan-unreachable=true: then what is there is left as it is.
 * Every attempt starts over from what is still there.
 */
export async function finalizeDqr(ctx: HubContext, raw: HubObject, signal: AbortSignal, recorded: LedgerFootprint = []): Promise<FinalizeResult> {
  const read = storedDeletionPolicy(raw);
  if ('error' in read) return { ok: false, message: read.error };
  const { policy } = read;
  const namespace = raw.metadata?.namespace ?? '';
  const name = raw.metadata?.name ?? '';
  const resourceKeys = new Set([...((raw.status?.['managedResources'] ?? []) as string[]), ...recorded.map((r) => `${r.apiVersion}|${r.kind}`)]);
  const resources = [...resourceKeys].map((key) => {
    const [apiVersion = '', kind = ''] = key.split('|');
    return { apiVersion, kind };
  });
  // The ledger only adds: a cluster it names that is no ClusterTarget now never holds the finalizer. It names them namespace/name;
  // a bare name (a ledger written before) stands for the DQR's own namespace, as in status.
  const fromLedger = recorded.map((r) => targetKeyFromStatus(raw.metadata?.namespace ?? '', r.cluster)).filter((key) => {
    const slash = key.indexOf('/');
    return ctx.informers.clusterTargets.get(key.slice(slash + 1), key.slice(0, slash)) !== undefined;
  });
  const problems: { cluster: string; message: string }[] = [];
  const fence = (): void => ctx.fence(`${namespace}/${name}`);
  let objects = 0;
  for (const key of new Set([...clustersWrittenTo(raw), ...fromLedger])) {
    const slash = key.indexOf('/');
    const targetRaw = ctx.informers.clusterTargets.get(key.slice(slash + 1), key.slice(0, slash));
    const target = targetRaw === undefined ? undefined : parseClusterTarget(targetRaw);
    const member = ctx.members.get(key);
    if (target === undefined) {
      problems.push({ cluster: key, message: `ClusterTarget ${key} no longer exists` });
      continue;
    }
    if (!target.ok) {
      problems.push({ cluster: key, message: `ClusterTarget ${key} has an invalid spec` });
      continue;
    }
    if (target.value.spec.paused) {
      problems.push({ cluster: key, message: `ClusterTarget ${key} is paused` });
      continue;
    }
    if (member === undefined) {
      problems.push({ cluster: key, message: `ClusterTarget ${key} is not connected` });
      continue;
    }
    try {
      const kinds = [];
      for (const r of resources) kinds.push({ ...r, resource: await member.queue.run(() => member.api.resourceFor(r.apiVersion, r.kind), signal) });
      const owner = ownerMatcher({ hubId: ctx.hubId, namespace, name, uid: raw.metadata?.uid ?? '', target: key });
      const owned = await listOwned(member, target.value, kinds, owner, signal);
      objects += owned.length;
      const result = policy === 'Delete' ? await pruneMember(member, owned, fence, signal) : await unmarkMember(member, owned, fence, signal);
      if (result.error !== undefined) problems.push({ cluster: key, message: `cluster ${key}: ${result.error}` });
    } catch (error) {
      if (error instanceof FencedError) throw error;
      problems.push({ cluster: key, message: `cluster ${key}: ${describeApiError(error).message}` });
    }
  }
  if (problems.length === 0) return { ok: true, objects, orphaned: [] };
  if (raw.metadata?.annotations?.[ANNOTATIONS.orphanUnreachable] === 'true') return { ok: true, objects, orphaned: problems.map((p) => p.cluster) };
  return {
    ok: false,
    message: `deletionPolicy ${policy}: waiting for ${problems.map((p) => p.message).join('; ')}. To leave what is there as it is and finish, annotate this DatabaseQueryResource with ${ANNOTATIONS.orphanUnreachable}=true`,
  };
}
