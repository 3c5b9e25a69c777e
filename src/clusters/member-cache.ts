import type { KubernetesObject } from '@kubernetes/client-node';
import { OWNER_LABEL } from '../api/index.ts';
import { SupervisedInformer, type BackoffPolicy, type InformerEvent } from '../runtime/index.ts';
import type { Logger } from '../telemetry/index.ts';
import { MemberApi, type ApiResource } from './member-api.ts';

/** One collection a cache informer watches: a kind, cluster-wide or in one namespace. */
export interface CacheScope {
  apiVersion: string;
  kind: string;
  resource: ApiResource;
  /** undefined: cluster-wide (a cluster-scoped kind, or a target without allowedNamespaces). */
  namespace: string | undefined;
}

/** What the cache keeps of an object: its metadata (PartialObjectMetadata), without managedFields. */
export type CachedObject = KubernetesObject;

/** A watch event on a cached object, as it came (managedFields still on it), for drift detection. */
export interface CacheEvent {
  event: InformerEvent;
  scope: CacheScope;
  object: CachedObject;
}

export interface MemberCacheOptions {
  /** The ClusterTarget's namespace/name, for logs. */
  member: string;
  logger: Logger;
  /** Runs inside the informer's callback: compute and enqueue, nothing more. */
  onEvent?: (event: CacheEvent) => void;
  backoff?: BackoffPolicy;
}

function scopeKey(scope: Pick<CacheScope, 'apiVersion' | 'kind' | 'namespace'>): string {
  return `${scope.apiVersion}|${scope.kind}|${scope.namespace ?? ''}`;
}

interface Entry {
  scope: CacheScope;
  informer: SupervisedInformer<CachedObject>;
  users: Set<string>;
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
        entry = { scope, informer: this.informerFor(scope), users: new Set() };
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

  private stopQuietly(entry: Entry): void {
    entry.informer.stop().catch((error: unknown) => {
      this.options.logger.warn('cache informer did not stop cleanly', { cluster: this.options.member, kind: entry.scope.kind, error });
    });
  }

  private informerFor(scope: CacheScope): SupervisedInformer<CachedObject> {
    const path = MemberApi.collectionPath(scope.apiVersion, scope.resource, scope.namespace);
    const { logger, onEvent } = this.options;
    return new SupervisedInformer<CachedObject>({
      name: `${this.options.member}/cache/${scope.resource.name}${scope.namespace === undefined ? '' : `@${scope.namespace}`}`,
      kubeConfig: this.api.kubeConfig.metadataWatchConfig(),
      path,
      labelSelector: OWNER_LABEL,
      bookmarks: true,
      list: async () => {
        const { items, resourceVersion } = await this.api.listWithVersion(path, OWNER_LABEL, undefined, true);
        // Each item the cache keeps passes through onEvent below, which strips it.
        return { apiVersion: 'v1', kind: 'List', items, metadata: { resourceVersion } };
      },
      logger,
      ...(this.options.backoff === undefined ? {} : { backoff: this.options.backoff }),
      onEvent: (event, object) => {
        onEvent?.({ event, scope, object });
        // The cache's own copy: managedFields are most of an object's metadata and nothing here reads them after the event.
        stripManagedFields(object);
      },
    });
  }
}

function stripManagedFields(object: { metadata?: unknown }): void {
  const metadata = object.metadata as { managedFields?: unknown } | undefined;
  if (metadata !== undefined) delete metadata.managedFields;
}
