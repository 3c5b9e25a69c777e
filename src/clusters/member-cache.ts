import type { KubernetesObject } from '@kubernetes/client-node';
import { ANNOTATIONS, OWNER_LABEL } from '../api/index.ts';
import { SupervisedInformer, type BackoffPolicy, type InformerEvent } from '../runtime/index.ts';
import type { Logger } from '../telemetry/index.ts';
import { decideDrift, recordApply, type AppliedRecord, type DriftReason, type ManagedFieldsEntry } from './drift.ts';
import { MemberApi, type ApiResource } from './member-api.ts';

/** One collection a cache informer watches: a kind, cluster-wide or in one namespace. */
export interface CacheScope {
  apiVersion: string;
  kind: string;
  resource: ApiResource;
  /** undefined: cluster-wide (a cluster-scoped kind, or a target without allowedNamespaces). */
  namespace: string | undefined;
}

/** What the cache keeps of an object: the metadata planning reads (see compact). */
export type CachedObject = KubernetesObject;

/** A change to a managed object that Rowcast did not make (decideDrift says which): for the DQR's work on that member to correct or report. */
export interface DriftReport {
  /** The member (ClusterTarget namespace/name). */
  cluster: string;
  apiVersion: string;
  kind: string;
  namespace: string | undefined;
  name: string;
  uid: string | undefined;
  /** Rowcast's marks on the object as the event carried them: which DQR (ownerMatcher decides) and which row. */
  ownerLabel: string | undefined;
  ownerRef: string | undefined;
  rowKey: string | undefined;
  reason: DriftReason;
  /** Field managers other than Rowcast's on the object. */
  managers: string[];
}

/** One object as Rowcast names it to the cache when it applies or removes it. */
export interface CacheObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string | undefined;
  name: string;
}

export interface MemberCacheOptions {
  /** The ClusterTarget's namespace/name, for logs and reports. */
  member: string;
  logger: Logger;
  /**
   * Drift detection: with it, the cache remembers what each of Rowcast's
   * applies returned and reports every change it did not make. Runs inside
   * the informer's callback: enqueue, nothing more.
   */
  onDrift?: (report: DriftReport) => void;
  backoff?: BackoffPolicy;
}

/** Uids of removals whose delete events are still to come, kept at most: far more than one prune's. */
const MAX_REMOVING = 100_000;

function scopeKey(scope: Pick<CacheScope, 'apiVersion' | 'kind' | 'namespace'>): string {
  return `${scope.apiVersion}|${scope.kind}|${scope.namespace ?? ''}`;
}

interface Entry {
  scope: CacheScope;
  informer: SupervisedInformer<CachedObject>;
  users: Set<string>;
  /** Drift detection only, by namespace/name: what Rowcast's applies returned. */
  records: Map<string, AppliedRecord>;
  /** Applies in flight, by namespace/name. */
  applying: Map<string, number>;
}

function nameKey(namespace: string | undefined, name: string | undefined): string {
  return `${namespace ?? ''}/${name ?? ''}`;
}

/**
 * A metadata-only watch cache of what Rowcast manages on one member: one
 * informer per kind and scope (a namespace of the target's
 * allowedNamespaces, else cluster-wide), label-selected on the owner label
 * existing, so every DQR on the member shares it and picks its own objects
 * by owner in memory. Informers start on first use and stop when no user
 * (DQR) uses their scope any more. A scope reads as unknown (undefined),
 * never as empty, until its informer has listed and while its watch is
 * broken: the caller lists live then.
 */
export class MemberWatchCache {
  private readonly api: MemberApi;
  private readonly options: MemberCacheOptions;
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(api: MemberApi, options: MemberCacheOptions) {
    this.api = api;
    this.options = options;
  }

  /**
   * What `user` (a DQR) lists on this member from now on: replaces what it
   * used before; scopes no user uses any more stop.
   */
  use(user: string, scopes: readonly CacheScope[]): void {
    if (this.closed) return;
    const wanted = new Map(scopes.map((s) => [scopeKey(s), s]));
    for (const [key, scope] of wanted) {
      let entry = this.entries.get(key);
      if (entry === undefined) {
        const records = new Map<string, AppliedRecord>();
        const applying = new Map<string, number>();
        entry = { scope, informer: this.informerFor(scope, records, applying), users: new Set(), records, applying };
        this.entries.set(key, entry);
        entry.informer.start();
      }
      entry.users.add(user);
    }
    for (const [key, entry] of this.entries) {
      if (wanted.has(key) || !entry.users.delete(user) || entry.users.size > 0) continue;
      this.entries.delete(key);
      this.stopQuietly(entry);
    }
  }

  /** A DQR that is gone, or no longer writes to this member. */
  release(user: string): void {
    this.use(user, []);
  }

  /**
   * The cached objects of a scope, or undefined when the cache cannot tell:
   * not used (yet), not listed yet, or its watch broken and restarting.
   * Objects may lag the member by the watch's latency: deletes based on them
   * must carry uid and resourceVersion preconditions.
   */
  read(scope: Pick<CacheScope, 'apiVersion' | 'kind' | 'namespace'>): readonly CachedObject[] | undefined {
    const entry = this.entries.get(scopeKey(scope));
    if (entry === undefined || !entry.informer.synced || !entry.informer.watching) return undefined;
    return entry.informer.list();
  }

  /** Uids of objects Rowcast is pruning or unmarking: their leaving is no drift. */
  private readonly removing = new Set<string>();

  /** The entries that hold an object: its namespace's scope, or its kind's cluster-wide one. */
  private entriesOf(ref: CacheObjectRef): Entry[] {
    return [this.entries.get(scopeKey({ ...ref, namespace: undefined })), ref.namespace === undefined ? undefined : this.entries.get(scopeKey(ref))].filter((e) => e !== undefined);
  }

  /**
   * Rowcast is about to apply an object as `manager`: until the returned
   * function is called with what the apply returned (or nothing, when it
   * failed), the object's events are its own.
   */
  beginApply(ref: CacheObjectRef, manager: string): (applied: Record<string, unknown> | undefined) => void {
    if (this.options.onDrift === undefined) return () => undefined;
    const entries = this.entriesOf(ref);
    const key = nameKey(ref.namespace, ref.name);
    for (const entry of entries) entry.applying.set(key, (entry.applying.get(key) ?? 0) + 1);
    return (applied) => {
      const metadata = applied?.['metadata'] as { resourceVersion?: string; managedFields?: ManagedFieldsEntry[] } | undefined;
      for (const entry of entries) {
        const left = (entry.applying.get(key) ?? 1) - 1;
        if (left > 0) entry.applying.set(key, left);
        else entry.applying.delete(key);
        if (metadata !== undefined) entry.records.set(key, recordApply(entry.records.get(key), manager, metadata));
      }
    };
  }

  /** Rowcast is about to prune or unmark this object: its leaving is not drift. The returned function undoes that if the call failed. */
  beginRemoval(uid: string): (failed: boolean) => void {
    if (this.options.onDrift === undefined) return () => undefined;
    this.removing.add(uid);
    // Its delete event normally clears it; one never seen (its scope stopped meanwhile) must not pile up.
    if (this.removing.size > MAX_REMOVING) {
      const oldest = this.removing.values().next().value;
      if (oldest !== undefined) this.removing.delete(oldest);
    }
    return (failed) => {
      if (failed) this.removing.delete(uid);
    };
  }

  /** Scopes watched and objects held, for metrics and memory figures. */
  get stats(): { scopes: number; watching: number; objects: number } {
    let watching = 0;
    let objects = 0;
    for (const entry of this.entries.values()) {
      if (entry.informer.watching) watching++;
      objects += entry.informer.list().length;
    }
    return { scopes: this.entries.size, watching, objects };
  }

  /** The member is rebuilt or removed: every informer stops. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.informer.stop()));
  }

  /** Values many objects share (namespace, owner label, owner-ref), held once. */
  private readonly interned = new Map<string, string>();

  private intern(value: string): string {
    const held = this.interned.get(value);
    if (held !== undefined) return held;
    // Bounded by the owners and namespaces on the member, not by its objects.
    this.interned.set(value, value);
    return value;
  }

  /**
   * Keeps of a cached object only what planning reads: name, namespace, uid,
   * resourceVersion, the owner label and Rowcast's annotations; managedFields
   * alone are most of an object's metadata. Mutates the cache's own copy,
   * after the event's handlers have seen it whole.
   */
  private compact(object: CachedObject): void {
    const metadata = object.metadata;
    if (metadata === undefined) return;
    const labels = metadata.labels;
    const annotations = metadata.annotations;
    const owner = labels?.[OWNER_LABEL];
    const kept: Record<string, string> = {};
    for (const key of KEPT_ANNOTATIONS) {
      const value = annotations?.[key];
      if (value !== undefined) kept[key] = key === ANNOTATIONS.ownerRef ? this.intern(value) : value;
    }
    const compacted: NonNullable<CachedObject['metadata']> = { annotations: kept };
    if (metadata.name !== undefined) compacted.name = metadata.name;
    if (metadata.namespace !== undefined) compacted.namespace = this.intern(metadata.namespace);
    if (metadata.uid !== undefined) compacted.uid = metadata.uid;
    if (metadata.resourceVersion !== undefined) compacted.resourceVersion = metadata.resourceVersion;
    if (owner !== undefined) compacted.labels = { [OWNER_LABEL]: this.intern(owner) };
    object.metadata = compacted;
    // The same two strings on every object (PartialObjectMetadata, meta.k8s.io/v1); assigned, not deleted, which would slow the object down.
    if (object.apiVersion !== undefined) object.apiVersion = this.intern(object.apiVersion);
    if (object.kind !== undefined) object.kind = this.intern(object.kind);
  }

  private stopQuietly(entry: Entry): void {
    entry.informer.stop().catch((error: unknown) => {
      this.options.logger.warn('cache informer did not stop cleanly', { cluster: this.options.member, kind: entry.scope.kind, error });
    });
  }

  /** Runs in the informer's callback, before the object is compacted. */
  private observe(scope: CacheScope, records: Map<string, AppliedRecord>, applying: Map<string, number>, event: InformerEvent, object: CachedObject): void {
    const onDrift = this.options.onDrift;
    if (onDrift === undefined) return;
    const metadata = object.metadata;
    const key = nameKey(metadata?.namespace, metadata?.name);
    const uid = metadata?.uid;
    const removedByRowcast = uid !== undefined && this.removing.has(uid);
    const verdict = decideDrift({
      event,
      resourceVersion: metadata?.resourceVersion,
      labels: metadata?.labels,
      deleting: metadata?.deletionTimestamp !== undefined,
      managedFields: metadata?.managedFields,
      record: records.get(key),
      applying: applying.has(key),
      removedByRowcast,
    });
    if (verdict.record === undefined) records.delete(key);
    else records.set(key, verdict.record);
    if (event === 'delete' && uid !== undefined) this.removing.delete(uid);
    if (!verdict.drift) return;
    onDrift({
      cluster: this.options.member,
      apiVersion: scope.apiVersion,
      kind: scope.kind,
      namespace: metadata?.namespace,
      name: metadata?.name ?? '',
      uid,
      ownerLabel: metadata?.labels?.[OWNER_LABEL],
      ownerRef: metadata?.annotations?.[ANNOTATIONS.ownerRef],
      rowKey: metadata?.annotations?.[ANNOTATIONS.rowKey],
      reason: verdict.reason,
      managers: verdict.managers,
    });
  }

  private informerFor(scope: CacheScope, records: Map<string, AppliedRecord>, applying: Map<string, number>): SupervisedInformer<CachedObject> {
    const path = MemberApi.collectionPath(scope.apiVersion, scope.resource, scope.namespace);
    const { logger } = this.options;
    return new SupervisedInformer<CachedObject>({
      name: `${this.options.member}/cache/${scope.resource.name}${scope.namespace === undefined ? '' : `@${scope.namespace}`}`,
      path,
      // Metadata only: each event's object is PartialObjectMetadata.
      watch: (watchPath, query, signal) => this.api.watch(watchPath, query, signal, true),
      labelSelector: OWNER_LABEL,
      // Each item the cache keeps passes through onEvent below, which compacts it.
      list: () => this.api.listCollection<CachedObject>(path, OWNER_LABEL, true),
      logger,
      ...(this.api.held === undefined ? {} : { budget: this.api.held }),
      ...(this.options.backoff === undefined ? {} : { backoff: this.options.backoff }),
      onEvent: (event, object) => {
        this.observe(scope, records, applying, event, object);
        // The cache's own copy, compacted in place once the event is handled.
        this.compact(object);
      },
    });
  }
}

/** Annotations planning and the status watch read; the rest (and every label but the owner's) is not kept. */
const KEPT_ANNOTATIONS = [ANNOTATIONS.ownerRef, ANNOTATIONS.rowKey, ANNOTATIONS.hash];
