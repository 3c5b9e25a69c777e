import { ANNOTATIONS, OWNER_LABEL, parseClusterTarget, parseDatabaseQueryResource } from '../api/index.ts';
import { MemberApi } from '../clusters/index.ts';
import { FencedError, describeApiError } from '../runtime/index.ts';
import { listOwned, pruneMember } from '../sync/index.ts';
import { ownerMatcher } from '../render/index.ts';
import type { HubContext, HubObject } from './context.ts';

export type FinalizeResult = { ok: true; objects: number } | { ok: false; message: string };

/**
 * A DQR is being deleted: with deletionPolicy Delete its objects go from every
 * member; with Orphan they stay and lose Rowcast's marks, so nothing claims
 * them any more. Any member that cannot be reached keeps the finalizer on, and
 * the next attempt starts over from what is still there.
 */
export async function finalizeDqr(ctx: HubContext, raw: HubObject, signal: AbortSignal): Promise<FinalizeResult> {
  const namespace = raw.metadata?.namespace ?? '';
  const name = raw.metadata?.name ?? '';
  const parsed = parseDatabaseQueryResource(raw);
  const policy = parsed.ok ? parsed.value.spec.deletionPolicy : 'Delete';
  const resources = ((raw.status?.['managedResources'] ?? []) as string[]).map((key) => {
    const [apiVersion = '', kind = ''] = key.split('|');
    return { apiVersion, kind };
  });
  const hadObjectsOn = new Set(((raw.status?.['clusters'] ?? []) as { name: string }[]).map((c) => c.name));
  const problems: string[] = [];
  const fence = (): void => ctx.fence(`${namespace}/${name}`);
  let objects = 0;
  for (const targetRaw of ctx.informers.clusterTargets.list()) {
    const target = parseClusterTarget(targetRaw);
    if (!target.ok) continue;
    const key = `${target.value.metadata.namespace ?? ''}/${target.value.metadata.name}`;
    const member = ctx.members.get(key);
    if (member === undefined) {
      if (hadObjectsOn.has(target.value.metadata.name)) problems.push(`cluster ${target.value.metadata.name} is not connected`);
      continue;
    }
    try {
      const kinds = [];
      for (const r of resources) kinds.push({ ...r, resource: await member.queue.run(() => member.api.resourceFor(r.apiVersion, r.kind), signal) });
      const owned = await listOwned(member, target.value, kinds, ownerMatcher({ hubId: ctx.hubId, namespace, name, uid: raw.metadata?.uid ?? '', target: key }), signal);
      objects += owned.length;
      if (policy === 'Delete') {
        const result = await pruneMember(member, owned, fence, signal);
        if (result.error !== undefined) problems.push(`cluster ${member.name}: ${result.error}`);
      } else {
        for (const object of owned) {
          const resource = kinds.find((k) => k.apiVersion === object.apiVersion && k.kind === object.kind)?.resource;
          if (resource === undefined) continue;
          const path = `${MemberApi.collectionPath(object.apiVersion, resource, resource.namespaced ? object.namespace : undefined)}/${encodeURIComponent(object.name)}`;
          const unmark = { metadata: { labels: { [OWNER_LABEL]: null }, annotations: { [ANNOTATIONS.ownerRef]: null, [ANNOTATIONS.rowKey]: null, [ANNOTATIONS.hash]: null } } };
          await member.queue.run((s) => {
            fence();
            return member.api.request('PATCH', path, { body: unmark, contentType: 'application/merge-patch+json', signal: s });
          }, signal);
        }
      }
    } catch (error) {
      if (error instanceof FencedError) throw error;
      problems.push(`cluster ${member.name}: ${describeApiError(error).message}`);
    }
  }
  if (problems.length > 0) return { ok: false, message: `deletionPolicy ${policy}: waiting for ${problems.join('; ')}` };
  return { ok: true, objects };
}
