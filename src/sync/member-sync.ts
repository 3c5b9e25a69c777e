import PQueue from 'p-queue';
import { ANNOTATIONS, OWNER_LABEL, allowsMemberNamespace, type ClusterTarget } from '../api/index.ts';
import { MemberApi, type ApiResource, type CacheScope, type Member } from '../clusters/index.ts';
import { FencedError, describeApiError, type ApiFailure } from '../runtime/index.ts';
import { ownerMatcher, withValuesFrom, type OwnerIdentity, type OwnerMatcher, type RenderedObject } from '../render/index.ts';
import { bindToCurrentContext, inBatchSpan } from '../telemetry/index.ts';
import { describeObject, identityOf } from './identity.ts';
import { planCluster, type DesiredObject, type LiveObject } from './plan.ts';

/** One row's failure on one cluster, in words for status and events. */
export interface RowFailure {
  rowKey: string;
  cluster: string;
  field: string;
  message: string;
  /** Another owner (or none) holds the object: reported, never taken. */
  conflict: boolean;
}

/** A resource kind in use, as "apiVersion|kind": what the next sync lists even if no row renders it any more. */
export type ResourceKey = string;

export function resourceKey(apiVersion: string, kind: string): ResourceKey {
  return `${apiVersion}|${kind}`;
}

export interface MemberSyncInput {
  member: Member;
  target: ClusterTarget;
  desired: readonly DesiredObject[];
  /** Rows that failed before reaching this cluster (render errors...): their objects are kept. */
  failedRows: ReadonlySet<string>;
  /** This DQR on this ClusterTarget: what it lists as its own (ownership.ts holds the rule). */
  owner: OwnerIdentity;
  fieldManager: string;
  /** Plan only: applies are server-side dry runs, and what they would change is reported instead. */
  dryRun?: boolean;
  /** The DQR's Fence, bound to its key: asked as each apply is handed to its connection, it throws if this process may no longer write. */
  fence: () => void;
  /** The row-key columns changed: each row's key under the former ones, which its existing objects carry. */
  formerKeys?: ReadonlyMap<string, readonly string[]>;
  /** Identities (identityOf) of owned objects that drifted: applied again with force although their hash matches. */
  heal?: ReadonlySet<string>;
  /** Apply every owned object again with force (the periodic re-check for drift no event reported). */
  healAll?: boolean;
  /** Kinds applied by earlier syncs, listed so that objects of kinds no row renders any more are pruned too. */
  previousResources: readonly ResourceKey[];
  /** A row's objects for this cluster, rendered again: the bodies of desired objects that carry none. */
  rerender?: (rowKey: string) => readonly RenderedObject[] | undefined;
  signal: AbortSignal;
}

/** What a dry run would change on one object: the object as it is and as the server says it would be. */
export interface PlannedChange {
  action: 'create' | 'update';
  object: DesiredObject;
  live: Record<string, unknown> | undefined;
  planned: Record<string, unknown>;
}

export interface MemberSyncResult {
  cluster: string;
  /** The ClusterTarget, namespace/name. */
  target: string;
  /** Dry runs only. */
  planned: PlannedChange[];
  /** Objects applied this time (for the ledger). */
  appliedObjects: DesiredObject[];
  /** Objects whose hash matched: nothing was sent (the ledger may still want them). */
  unchangedObjects: DesiredObject[];
  /** Unchanged objects applied again because they drifted (heal). */
  healed: DesiredObject[];
  /** Of a full re-check (healAll), the objects the apply changed: drift no event had reported. */
  corrected: DesiredObject[];
  applied: number;
  unchanged: number;
  failures: RowFailure[];
  /** Owned objects no row wants any more; deleting them is the caller's decision (prune limit). */
  pruneCandidates: LiveObject[];
  /** Owned objects of failed rows, kept. */
  kept: number;
  /** Everything this member holds for the DQR after the sync. */
  managed: number;
  /** What it held when listed, before this sync applied anything: the prune limit's share. */
  managedBefore: number;
  resources: ResourceKey[];
  /** Set when the member could not be listed or failed as a whole: nothing may be pruned there. */
  error: string | undefined;
  /** Objects listed as owned or applied this time, as uid|identity: only their status is written back. */
  known: string[];
}

interface ResolvedObject {
  object: DesiredObject;
  resource: ApiResource;
  namespace: string | undefined;
}

interface Bodies {
  body: Record<string, unknown>;
  /** What a create sends when spec.ignoreFields took fields out of body. */
  createBody: Record<string, unknown> | undefined;
}

/**
 * What to send for a resolved object: its bodies as rendered, or rendered
 * again from its row (the snapshot keeps none), the same document of that
 * row; undefined when the row no longer renders it.
 */
function bodiesOf(entry: ResolvedObject, rerender: MemberSyncInput['rerender']): Bodies | undefined {
  const { object } = entry;
  let body = object.body;
  let createBody = object.createBody;
  if (body === undefined) {
    const again = rerender?.(object.rowKey)?.find((o) => o.document === object.document && o.name === object.name && o.kind === object.kind);
    if (again === undefined) return undefined;
    body = again.body;
    createBody = again.createBody;
  }
  if (!entry.resource.namespaced) return { body: withoutNamespace(body), createBody: createBody === undefined ? undefined : withoutNamespace(createBody) };
  return { body, createBody };
}

/** Bodies of cluster-scoped kinds lose the namespace render filled in. */
function withoutNamespace(body: Record<string, unknown>): Record<string, unknown> {
  const metadata = { ...(body['metadata'] as Record<string, unknown>) };
  delete metadata['namespace'];
  return { ...body, metadata };
}

function objectPath(apiVersion: string, resource: ApiResource, namespace: string | undefined, name: string): string {
  return `${MemberApi.collectionPath(apiVersion, resource, namespace)}/${encodeURIComponent(name)}`;
}

/** A legacy stamp reads as "no hash": the plan updates the object, which stamps it for its ClusterTarget. */
function toLive(apiVersion: string, kind: string, item: Record<string, unknown>, legacy: boolean): LiveObject {
  const metadata = (item['metadata'] ?? {}) as { name?: string; namespace?: string; uid?: string; resourceVersion?: string; annotations?: Record<string, string> };
  return {
    apiVersion,
    kind,
    namespace: metadata.namespace,
    name: metadata.name ?? '',
    uid: metadata.uid ?? '',
    resourceVersion: metadata.resourceVersion,
    hash: legacy ? undefined : metadata.annotations?.[ANNOTATIONS.hash],
    rowKey: metadata.annotations?.[ANNOTATIONS.rowKey],
  };
}

/** A member's result before anything was listed, applied or found. */
function emptyResult(cluster: string, target: MemberSyncResult['target']): MemberSyncResult {
  return {
    cluster,
    target,
    planned: [],
    appliedObjects: [],
    unchangedObjects: [],
    healed: [],
    corrected: [],
    applied: 0,
    unchanged: 0,
    failures: [],
    pruneCandidates: [],
    kept: 0,
    managed: 0,
    managedBefore: 0,
    resources: [],
    error: undefined,
    known: [],
  };
}

/**
 * Brings one member in line with the rows: resolves kinds by discovery,
 * enforces the target's namespaces, lists what it owns there, applies what is
 * new or changed (skipping unchanged hashes), and reports what could be
 * pruned. Every call goes through the member's own queue, so a slow member
 * only slows itself. Deletes nothing.
 */
export async function syncMember(input: MemberSyncInput): Promise<MemberSyncResult> {
  const { member, target, signal } = input;
  const waits = { total: 0, max: 0 };
  // Bound to this sync's trace, and timed: how long each call waited in the member's queue.
  const run = <T>(task: (s: AbortSignal) => Promise<T>): Promise<T> => {
    const queued = performance.now();
    return member.queue.run(
      bindToCurrentContext((s: AbortSignal) => {
        const waited = performance.now() - queued;
        waits.total += waited;
        waits.max = Math.max(waits.max, waited);
        return task(s);
      }),
      signal,
    );
  };
  const result = emptyResult(member.key, input.owner.target);
  const fail = (object: DesiredObject, field: string, message: string, conflict = false): void => {
    result.failures.push({ rowKey: object.rowKey, cluster: member.key, field, message, conflict });
  };

  // Discovery, once per kind. An unreachable member ends the sync here for it.
  const kinds = new Map<ResourceKey, { apiVersion: string; kind: string; resource: ApiResource | undefined }>();
  for (const key of new Set([...input.desired.map((o) => resourceKey(o.apiVersion, o.kind)), ...input.previousResources])) {
    const [apiVersion = '', kind = ''] = key.split('|');
    kinds.set(key, { apiVersion, kind, resource: undefined });
  }
  try {
    for (const entry of kinds.values()) entry.resource = await run(() => member.api.resourceFor(entry.apiVersion, entry.kind));
  } catch (error) {
    result.error = `discovery failed: ${describeApiError(error).message}`;
    return result;
  }

  const resolved: ResolvedObject[] = [];
  const failedHere = new Set(input.failedRows);
  for (const object of input.desired) {
    const resource = kinds.get(resourceKey(object.apiVersion, object.kind))?.resource;
    if (resource === undefined) {
      fail(object, 'kind', `${object.apiVersion} ${object.kind} is not served by cluster ${member.name}`);
      failedHere.add(object.rowKey);
      continue;
    }
    let namespace = object.namespace;
    if (!resource.namespaced) {
      if (!object.namespaceDefaulted) {
        fail(object, 'metadata.namespace', `${object.kind} is cluster-scoped and takes no namespace`);
        failedHere.add(object.rowKey);
        continue;
      }
      namespace = undefined;
    }
    if (!allowsMemberNamespace(target, namespace)) {
      fail(
        object,
        'metadata.namespace',
        namespace === undefined
          ? `cluster ${member.name} allows only namespaced objects (spec.allowedNamespaces)`
          : `namespace ${namespace} is not allowed on cluster ${member.name} (spec.allowedNamespaces)`,
      );
      failedHere.add(object.rowKey);
      continue;
    }
    resolved.push({ object: namespace === object.namespace ? object : { ...object, namespace }, resource, namespace });
  }

  const owner = ownerMatcher(input.owner);
  let owned: LiveObject[];
  try {
    owned = await listOwned(member, target, [...kinds.values()], owner, signal, cacheUserOf(input.owner));
  } catch (error) {
    result.error = `listing owned objects failed: ${describeApiError(error).message}`;
    return result;
  }
  for (const object of owned) result.known.push(knownObject(object.uid, object));
  for (const key of new Set(owned.map((o) => resourceKey(o.apiVersion, o.kind)))) result.resources.push(key);
  result.managedBefore = owned.length;

  const plan = planCluster(
    resolved.map((r) => r.object),
    owned,
    failedHere,
  );
  result.unchanged = plan.unchanged.length;
  result.unchangedObjects = plan.unchanged;
  result.kept = plan.kept.length;
  result.pruneCandidates = plan.prune;
  const byIdentity = new Map(resolved.map((r) => [identityOf(r.object), r]));
  const creates = new Set(plan.create.map((o) => identityOf(o)));
  let unavailable: string | undefined;
  let created = 0;
  let foreign: Map<string, ForeignMarks>;
  try {
    foreign = await existingObjects(member, plan.create, byIdentity, owner, signal);
  } catch (error) {
    result.error = `checking for existing objects failed: ${describeApiError(error).message}`;
    return result;
  }

  // Drifted since Rowcast applied them (edited or taken by another writer): the same hash, applied again, with force.
  const healing = input.healAll === true ? plan.unchanged : input.heal === undefined ? [] : plan.unchanged.filter((o) => input.heal?.has(identityOf(o)) === true);
  const listedVersions = input.healAll === true ? new Map(owned.map((o) => [identityOf(o), o.resourceVersion])) : undefined;
  const heals = new Set(healing);
  await inBatchSpan('rowcast.apply_batch', { 'rowcast.cluster': member.key, 'rowcast.objects': plan.create.length + plan.update.length + healing.length }, async (span) => {
    // A window of applies at a time, fed one task at a time as room frees up: a first sync of thousands of
    // objects on each of many members would otherwise hold every call, its closure, body and answer at once
    // (100 members of 1,000 objects: 80 MiB of queued tasks alone). Twice the member's own concurrency keeps
    // its queue busy; more only waits there, holding memory.
    const window = new PQueue({ concurrency: Math.max(APPLY_WINDOW, 2 * member.queue.concurrency) });
    let thrown: { error: unknown } | undefined;
    const applyOne = async (object: DesiredObject): Promise<void> => {
      const entry = byIdentity.get(identityOf(object));
      if (entry === undefined) return;
      const path = objectPath(object.apiVersion, entry.resource, entry.namespace, object.name);
      let bodies: Bodies | undefined;
      try {
        // Not listed as ours yet there: someone else owns it. Report, never take.
        const marks = foreign.get(identityOf(object));
        if (marks !== undefined) {
          const holder = holderOf(marks);
          fail(object, 'metadata.name', `${describeObject(object)} already exists on cluster ${member.name} and ${holder}; left untouched`, true);
          return;
        }
        bodies = bodiesOf(entry, input.rerender);
        if (bodies === undefined) {
          fail(object, 'template', `${describeObject(object)}: its row rendered differently when applied (a template that reads the clock?); applied at the next sync`);
          return;
        }
        const isCreate = creates.has(identityOf(object));
        if (input.dryRun === true) {
          const live = isCreate ? undefined : await run((s) => member.api.get(path, s));
          const body = await bodyToApply(bodies, object, isCreate, () => Promise.resolve(live));
          const planned = await run((s) => member.api.apply(body, path, input.fieldManager, { signal: s, dryRun: true }));
          result.planned.push({ action: isCreate ? 'create' : 'update', object, live, planned });
          return;
        }
        const body = await bodyToApply(bodies, object, isCreate, () => run((s) => member.api.get(path, s)));
        const healed = heals.has(object);
        // The cache tells this apply's own watch events from anyone else's (drift) by what it returns.
        const done = member.cache?.beginApply(object, input.fieldManager);
        let applied: Record<string, unknown>;
        try {
          applied = await run((s) => member.api.apply(body, path, input.fieldManager, { signal: s, beforeSend: input.fence, ...(healed ? { force: true } : {}) }));
        } catch (error) {
          done?.(undefined);
          throw error;
        }
        done?.(applied);
        const uid = (applied['metadata'] as { uid?: unknown } | undefined)?.uid;
        if (typeof uid === 'string') result.known.push(knownObject(uid, object));
        if (healed) {
          result.healed.push(object);
          // Its resourceVersion moved: the object was not as rendered, whatever event was missed.
          const version = (applied['metadata'] as { resourceVersion?: unknown } | undefined)?.resourceVersion;
          if (listedVersions !== undefined && version !== listedVersions.get(identityOf(object))) result.corrected.push(object);
          return;
        }
        result.applied++;
        result.appliedObjects.push(object);
        if (isCreate) created++;
      } catch (error) {
        if (error instanceof FencedError) throw error;
        const failure = describeApiError(error);
        const field = failedField(failure, bodies?.body ?? {});
        if (isMemberFailure(failure)) {
          unavailable ??= failure.message;
          fail(object, field, `apply of ${describeObject(object)} failed: ${failure.message}`);
        } else if (failure.kind === 'conflict') {
          fail(object, field, `${describeObject(object)}: fields managed by another manager: ${failure.message}`, true);
        } else {
          fail(object, field, `${describeObject(object)} was refused: ${failure.message}`);
        }
      }
    };
    for (const object of [...plan.create, ...plan.update, ...healing]) {
      await window.onSizeLessThan(window.concurrency);
      if (thrown !== undefined) break;
      window.add(() => applyOne(object)).catch((error: unknown) => {
        // A member's answers fail only their row; what gets here (a FencedError) ends the sync: nothing more is sent.
        thrown ??= { error };
        window.clear();
      });
    }
    await window.onIdle();
    if (thrown !== undefined) throw thrown.error;
    span.setAttributes({ 'rowcast.applied': result.applied, 'rowcast.queue_wait_total_ms': Math.round(waits.total), 'rowcast.queue_wait_max_ms': Math.round(waits.max) });
  });
  // A row refused here (its new object in a namespace the member lacks, a
  // value the member cannot convert...) is not a row that is gone: every
  // object it has on this member stays.
  const refusedRows = new Set(result.failures.map((f) => f.rowKey));
  let unattributable = false;
  for (const rowKey of [...refusedRows]) {
    const former = input.formerKeys?.get(rowKey);
    if (former === undefined) continue;
    if (former.length === 0) unattributable = true;
    for (const key of former) refusedRows.add(key);
  }
  // A refused row whose former key is unknown could own any of them.
  const keptNow = result.pruneCandidates.filter((o) => unattributable || (o.rowKey !== undefined && refusedRows.has(o.rowKey)));
  if (keptNow.length > 0) {
    result.pruneCandidates = result.pruneCandidates.filter((o) => !keptNow.includes(o));
    result.kept += keptNow.length;
  }
  result.managed = owned.length + created;
  for (const key of new Set(resolved.map((r) => resourceKey(r.object.apiVersion, r.object.kind)))) if (!result.resources.includes(key)) result.resources.push(key);
  if (unavailable !== undefined) result.error = `cluster ${member.name} failed during apply: ${unavailable}`;
  return result;
}

/**
 * What an apply sends: a create the object as rendered; an update without the
 * fields spec.ignoreFields leaves to others, or rather with the member's values
 * there, so Rowcast's apply neither takes them back nor drops them.
 */
async function bodyToApply(
  entry: Bodies,
  object: DesiredObject,
  isCreate: boolean,
  /** The object as it is on the member, asked for only when an update has fields to take from it. */
  live: () => Promise<Record<string, unknown> | undefined>,
): Promise<Record<string, unknown>> {
  if (isCreate) return entry.createBody ?? entry.body;
  if (entry.createBody === undefined) return entry.body;
  const current = await live();
  return withValuesFrom(entry.body, current, object.ignoredPointers ?? []);
}

/**
 * Whether an apply failure is the member's own (unreachable, throttled while
 * it admitted nothing, its credentials refused, a 5xx not about the object sent):
 * then nothing may be pruned there. Any other answer is about the object
 * and fails only its row.
 */
function isMemberFailure(failure: ApiFailure): boolean {
  if (failure.code === undefined) return true;
  if (failure.code === 429 || failure.code === 401) return true;
  return failure.code >= 500 && failure.kind !== 'invalid';
}

/**
 * The field an apply failure names: the Status causes' first field, the
 * namespace when that is what the member lacks, the field of a value it could
 * not decode; else metadata.name, the object as a whole.
 */
function failedField(failure: ApiFailure, body: Record<string, unknown>): string {
  const cause = failure.causes.find((c) => c.field !== '');
  if (cause !== undefined) return cause.field.replace(/^\./, '');
  if (failure.code === 404 && failure.details?.kind === 'namespaces') return 'metadata.namespace';
  const typed = /\): \.([\w.[\]-]+): /.exec(failure.message);
  if (typed?.[1] !== undefined) return typed[1];
  if (/illegal base64/.test(failure.message)) {
    for (const map of body['kind'] === 'Secret' ? ['data'] : ['binaryData']) {
      const values = body[map];
      if (typeof values !== 'object' || values === null) continue;
      for (const [key, value] of Object.entries(values)) if (typeof value === 'string' && !isBase64(value)) return `${map}.${key}`;
    }
  }
  return 'metadata.name';
}

function isBase64(value: string): boolean {
  return /^[A-Za-z0-9+/]*={0,2}$/.test(value) && value.length % 4 === 0;
}

/**
 * A cluster this DQR wrote to and no longer selects (dropped from
 * spec.targets, labels no longer matching): what it still owns there, as
 * prune candidates. Whether they are deleted (under the prune limit) or
 * unmarked is the caller's decision (deletionPolicy). Writes nothing.
 */
export async function listLeaving(input: { member: Member; target: ClusterTarget; owner: OwnerIdentity; previousResources: readonly ResourceKey[]; signal: AbortSignal }): Promise<MemberSyncResult> {
  const { member, signal } = input;
  const result = emptyResult(member.key, input.owner.target);
  try {
    const kinds = [];
    for (const key of input.previousResources) {
      const [apiVersion = '', kind = ''] = key.split('|');
      kinds.push({ apiVersion, kind, resource: await member.queue.run(() => member.api.resourceFor(apiVersion, kind), signal) });
    }
    const owned = await listOwned(member, input.target, kinds, ownerMatcher(input.owner), signal, cacheUserOf(input.owner));
    // Nothing left there: the DQR is done with this member, and with its watch cache.
    if (owned.length === 0) member.cache?.release(cacheUserOf(input.owner));
    result.pruneCandidates = owned;
    result.managed = owned.length;
    result.managedBefore = owned.length;
    result.resources = [...new Set(owned.map((o) => resourceKey(o.apiVersion, o.kind)))];
  } catch (error) {
    result.error = `listing owned objects on a cluster this DQR left failed: ${describeApiError(error).message}`;
    result.resources = [...input.previousResources];
  }
  return result;
}

/** Who uses a member's watch cache: the DQR, whichever ClusterTarget it lists through (each target is a member of its own). */
export function cacheUserOf(owner: Pick<OwnerIdentity, 'namespace' | 'name'>): string {
  return `${owner.namespace}/${owner.name}`;
}

/** An object Rowcast applied or listed, as the status watch checks it: uid and identity together. */
export function knownObject(uid: string, object: { apiVersion: string; kind: string; namespace: string | undefined; name: string }): string {
  return `${uid}|${identityOf(object)}`;
}

/** Applies of one member's sync in flight at once (at least; see syncMember). */
const APPLY_WINDOW = 16;

/** Past this many creates in one collection, one metadata list is cheaper than a GET each. */
const listThreshold = 20;

/** What marks an object that is not this DQR's carries: who to name in a conflict. */
interface ForeignMarks {
  labels: Record<string, string>;
  ownerRef: string | undefined;
}

function holderOf(marks: ForeignMarks): string {
  if (marks.labels[OWNER_LABEL] === undefined) return 'it is not managed by Rowcast';
  try {
    const ref = JSON.parse(marks.ownerRef ?? '') as { hub?: unknown; namespace?: unknown; name?: unknown; target?: unknown };
    if (typeof ref.namespace === 'string' && typeof ref.name === 'string') {
      const through = typeof ref.target === 'string' ? ` through ClusterTarget ${ref.target}` : '';
      return `it belongs to DatabaseQueryResource ${ref.namespace}/${ref.name}${typeof ref.hub === 'string' ? ` of hub ${ref.hub}` : ''}${through}`;
    }
  } catch {
    // an owner label without a readable owner-ref: named as unknown below
  }
  return 'it belongs to another DatabaseQueryResource or ClusterTarget (its rowcast.dev/owner-ref annotation is unreadable)';
}

/**
 * Which of the objects about to be created already exist (not as ours), with
 * their labels and owner-ref: a GET each for a few, one metadata-only list of the collection
 * for many (a first sync of thousands of rows). One found to be ours was
 * applied after the watch cache last heard: applied again, not a conflict.
 */
async function existingObjects(
  member: Member,
  creates: readonly DesiredObject[],
  byIdentity: ReadonlyMap<string, ResolvedObject>,
  owner: OwnerMatcher,
  signal: AbortSignal,
): Promise<Map<string, ForeignMarks>> {
  const groups = new Map<string, { entry: ResolvedObject; objects: DesiredObject[] }>();
  for (const object of creates) {
    const entry = byIdentity.get(identityOf(object));
    if (entry === undefined) continue;
    const collection = MemberApi.collectionPath(object.apiVersion, entry.resource, entry.namespace);
    const group = groups.get(collection) ?? { entry, objects: [] };
    group.objects.push(object);
    groups.set(collection, group);
  }
  const found = new Map<string, ForeignMarks>();
  const foreignMarks = (item: Record<string, unknown>): ForeignMarks | undefined => {
    const metadata = item['metadata'] as { labels?: Record<string, string>; annotations?: Record<string, string> } | undefined;
    if (owner.match(metadata?.labels, metadata?.annotations) !== undefined) return undefined;
    return { labels: metadata?.labels ?? {}, ownerRef: metadata?.annotations?.[ANNOTATIONS.ownerRef] };
  };
  await Promise.all(
    [...groups].map(async ([collection, { entry, objects }]) => {
      if (objects.length > listThreshold) {
        const items = await member.queue.run((s) => member.api.list(collection, undefined, s, true), signal);
        const names = new Map(items.map((item) => [(item['metadata'] as { name?: string } | undefined)?.name ?? '', item]));
        for (const object of objects) {
          const item = names.get(object.name);
          const marks = item === undefined ? undefined : foreignMarks(item);
          if (marks !== undefined) found.set(identityOf(object), marks);
        }
        return;
      }
      await Promise.all(
        objects.map(async (object) => {
          const path = objectPath(object.apiVersion, entry.resource, entry.namespace, object.name);
          const item = await member.queue.run((s) => member.api.get(path, s, true), signal);
          const marks = item === undefined ? undefined : foreignMarks(item);
          if (marks !== undefined) found.set(identityOf(object), marks);
        }),
      );
    }),
  );
  return found;
}

/**
 * What a DQR owns on a member through one ClusterTarget, by its owner label,
 * confirmed by the full owner-ref annotation (the label is a short hash);
 * with allowedNamespaces, only in those namespaces. Metadata only.
 *
 * With `cacheUser` (the DQR's key), from the member's watch cache, which
 * this call also tells what the DQR uses; a scope the cache cannot vouch
 * for (not listed yet, its watch broken) is listed live, never taken as
 * empty. What comes from the cache may lag the member a little: an object
 * applied moments ago may be missing (the create finds it ours and applies
 * it again, harmlessly), one deleted may still be there (prune deletes
 * carry uid and resourceVersion preconditions).
 */
export async function listOwned(
  member: Member,
  target: ClusterTarget,
  kinds: readonly { apiVersion: string; kind: string; resource: ApiResource | undefined }[],
  owner: OwnerMatcher,
  signal: AbortSignal,
  cacheUser?: string,
): Promise<LiveObject[]> {
  const scopes: CacheScope[] = [];
  for (const { apiVersion, kind, resource } of kinds) {
    if (resource === undefined) continue;
    const namespaces = resource.namespaced && target.spec.allowedNamespaces.length > 0 ? target.spec.allowedNamespaces : [undefined];
    for (const namespace of namespaces) scopes.push({ apiVersion, kind, resource, namespace });
  }
  const cache = cacheUser === undefined ? undefined : member.cache;
  if (cacheUser !== undefined) cache?.use(cacheUser, scopes);
  const owned: LiveObject[] = [];
  for (const scope of scopes) {
    const items =
      (cache?.read(scope) as readonly Record<string, unknown>[] | undefined) ??
      (await member.queue.run((s) => member.api.list(MemberApi.collectionPath(scope.apiVersion, scope.resource, scope.namespace), owner.selector, s, true), signal));
    for (const item of items) {
      const metadata = item['metadata'] as { labels?: Record<string, string>; annotations?: Record<string, string> } | undefined;
      const owns = owner.match(metadata?.labels, metadata?.annotations);
      if (owns !== undefined) owned.push(toLive(scope.apiVersion, scope.kind, item, owns === 'legacy'));
    }
  }
  return owned;
}

export interface PruneResult {
  pruned: number;
  prunedObjects: LiveObject[];
  error: string | undefined;
}

/**
 * Deletes owned objects no row wants, each only as the object that was listed
 * (uid and resourceVersion preconditions; one changed since is left for the
 * next sync). `fence` is the DQR's Fence bound to its key: asked before the
 * batch and again as each delete is handed to its connection; it throws, and
 * so does this, once this process may no longer write.
 */
export async function pruneMember(member: Member, objects: readonly LiveObject[], fence: () => void, signal: AbortSignal): Promise<PruneResult> {
  fence();
  let pruned = 0;
  const prunedObjects: LiveObject[] = [];
  let error: string | undefined;
  await Promise.all(
    objects.map(async (object) => {
      try {
        const resource = await member.queue.run(() => member.api.resourceFor(object.apiVersion, object.kind), signal);
        if (resource === undefined) return;
        const path = objectPath(object.apiVersion, resource, resource.namespaced ? object.namespace : undefined, object.name);
        const done = member.cache?.beginRemoval(object.uid);
        try {
          await member.queue.run((s) => member.api.delete(path, object.uid, s, fence, object.resourceVersion), signal);
        } catch (error) {
          done?.(true);
          throw error;
        }
        done?.(false);
        pruned++;
        prunedObjects.push(object);
      } catch (cause) {
        if (cause instanceof FencedError) throw cause;
        const failure = describeApiError(cause);
        // Changed since it was listed: the next sync plans it again from what it is now.
        if (failure.code === 409) return;
        error ??= `pruning ${describeObject(object)} failed: ${failure.message}`;
      }
    }),
  );
  return { pruned, prunedObjects, error };
}

/**
 * Orphans owned objects: removes Rowcast's label and annotations so nothing
 * claims them any more, each only as the object that was listed (the
 * resourceVersion in the patch is a precondition). Deletes nothing.
 */
export async function unmarkMember(member: Member, objects: readonly LiveObject[], fence: () => void, signal: AbortSignal): Promise<{ unmarked: number; error: string | undefined }> {
  fence();
  let unmarked = 0;
  let error: string | undefined;
  const marks = { labels: { [OWNER_LABEL]: null }, annotations: { [ANNOTATIONS.ownerRef]: null, [ANNOTATIONS.rowKey]: null, [ANNOTATIONS.hash]: null } };
  await Promise.all(
    objects.map(async (object) => {
      try {
        const resource = await member.queue.run(() => member.api.resourceFor(object.apiVersion, object.kind), signal);
        if (resource === undefined) return;
        const path = objectPath(object.apiVersion, resource, resource.namespaced ? object.namespace : undefined, object.name);
        const body = { metadata: { ...marks, uid: object.uid, ...(object.resourceVersion === undefined ? {} : { resourceVersion: object.resourceVersion }) } };
        // Unmarked, it leaves the cache's label selector: a delete event that is no drift.
        const done = member.cache?.beginRemoval(object.uid);
        try {
          await member.queue.run((s) => member.api.request('PATCH', path, { body, contentType: 'application/merge-patch+json', signal: s, beforeSend: fence }), signal);
        } catch (error) {
          done?.(true);
          throw error;
        }
        done?.(false);
        unmarked++;
      } catch (cause) {
        if (cause instanceof FencedError) throw cause;
        error ??= `unmarking ${describeObject(object)} failed: ${describeApiError(cause).message}`;
      }
    }),
  );
  return { unmarked, error };
}
