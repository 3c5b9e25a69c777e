import { setTimeout as sleep } from 'node:timers/promises';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../telemetry/index.ts';
import { describeApiError } from './api-errors.ts';
import { backoffDelay, type BackoffPolicy } from './backoff.ts';
import { OverHeldLimitError, type HeldBytes } from './held-bytes.ts';

export type InformerEvent = 'add' | 'update' | 'delete';

/** A collection as a LIST returns it: the items and the resourceVersion a watch goes on from. */
export interface ListedCollection<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
  /** The length of the answers the items came in, when known: what holding them is counted as. */
  bytes?: number;
}

/** Opens a watch on a collection; resolves once the server answered with the lines of its events. */
export type OpenWatch = (path: string, query: Record<string, string | undefined>, signal: AbortSignal) => Promise<AsyncIterable<string>>;

export interface SupervisedInformerOptions<T extends KubernetesObject> {
  name: string;
  path: string;
  list: () => Promise<ListedCollection<T>>;
  watch: OpenWatch;
  labelSelector?: string;
  logger: Logger;
  /** Compute a key and enqueue it, nothing more: it runs inside the informer's own callbacks. */
  onEvent: (event: InformerEvent, object: T) => void;
  /** Called with true when a list and watch succeed, false when the informer fails. */
  onWatchingChange?: (watching: boolean) => void;
  backoff?: BackoffPolicy;
  /** Shared by the informers of one member: each object is counted as the length of the answer it came in. */
  budget?: HeldBytes;
}

interface Held<T> {
  object: T;
  /** What it is counted as against the budget. */
  bytes: number;
}

/**
 * Each watch asks the apiserver to end it after this long, with a bookmark
 * just before: its resourceVersion stays fresh, so a quiet label-selected
 * watch never falls out of the apiserver's window (a 410, then a full relist).
 */
const WATCH_SECONDS = 25;
/** No byte for this long (not even the bookmark before the server's end) means a hung member or a dead path: the watch is reopened. */
const WATCH_SILENCE_MS = 30_000;
/** A watch the server ended without an event is reopened after this, so a server that ends watches at once is not hammered. */
const QUIET_REOPEN_DELAY_MS = 1000;

interface WatchEventLine<T> {
  type?: string;
  object?: T & { code?: number; message?: string; reason?: string };
}

/** An ERROR event of a watch, as an error describeApiError reads. */
class WatchEventError extends Error {
  override readonly name = 'WatchEventError';
  readonly code: number | undefined;

  constructor(status: { code?: number; message?: string; reason?: string } | undefined) {
    super(`watch ended with an error: ${status?.message ?? status?.reason ?? 'no message'}`);
    this.code = status?.code;
  }
}

/**
 * A list-then-watch cache of one collection, restarted with jittered backoff
 * whenever listing or watching fails (a 500, a 401/403, a dropped
 * connection), relisting only when the apiserver says the resourceVersion is
 * gone (410). It tells whether it has synced and is watching, and keeps a
 * throwing handler from killing it.
 */
export class SupervisedInformer<T extends KubernetesObject> {
  private readonly options: SupervisedInformerOptions<T>;
  private readonly backoff: BackoffPolicy;
  /** By namespace ('' for cluster-scoped), then name. */
  private objects = new Map<string, Map<string, Held<T>>>();
  /** The sum of the bytes of what it holds, all taken from the budget. */
  private heldBytes = 0;
  /** Where the next watch starts; empty: list first. */
  private resourceVersion = '';
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Aborts the list or watch in flight when stopped. */
  private running: AbortController | undefined;
  private stopped = false;
  private syncedOnce = false;
  private isWatching = false;
  private readonly syncWaiters: (() => void)[] = [];

  constructor(options: SupervisedInformerOptions<T>) {
    this.options = options;
    this.backoff = options.backoff ?? { baseMs: 1000, maxMs: 60_000 };
  }

  get synced(): boolean {
    return this.syncedOnce;
  }

  get watching(): boolean {
    return this.isWatching;
  }

  start(): void {
    this.stopped = false;
    void this.run();
  }

  /** Resolves once the first list has completed and its watch is open; never rejects: failures keep retrying. */
  waitForSync(): Promise<void> {
    if (this.syncedOnce) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  list(namespace?: string): readonly T[] {
    const all: T[] = [];
    if (namespace !== undefined && namespace !== '') {
      for (const held of this.objects.get(namespace)?.values() ?? []) all.push(held.object);
      return all;
    }
    for (const named of this.objects.values()) for (const held of named.values()) all.push(held.object);
    return all;
  }

  /** How many objects it holds. */
  get size(): number {
    let size = 0;
    for (const named of this.objects.values()) size += named.size;
    return size;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.objects.get(namespace ?? '')?.get(name)?.object;
  }

  /** Stops listing and watching. What it holds stays readable, but no longer counts against the budget. */
  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.running?.abort();
    this.running = undefined;
    this.setWatching(false);
    if (this.heldBytes !== 0) {
      this.options.budget?.take(-this.heldBytes);
      for (const named of this.objects.values()) for (const held of named.values()) held.bytes = 0;
      this.heldBytes = 0;
    }
    return Promise.resolve();
  }

  private async run(): Promise<void> {
    this.running?.abort();
    const running = new AbortController();
    this.running = running;
    // A function, not the property: TypeScript would keep the first check's answer across the awaits.
    const aborted = (): boolean => running.signal.aborted;
    try {
      for (;;) {
        if (this.resourceVersion === '') await this.relist();
        if (aborted()) return;
        const ended = await this.watchOnce(running.signal);
        if (aborted()) return;
        if (ended === 'gone') this.resourceVersion = '';
        else if (ended === 'quiet') await sleep(QUIET_REOPEN_DELAY_MS, undefined, { signal: running.signal });
      }
    } catch (error) {
      if (!aborted()) this.failed(error);
    }
  }

  private async relist(): Promise<void> {
    const listed = await this.options.list();
    if (this.stopped) return;
    const fresh = new Map<string, Set<string>>();
    for (const object of listed.items) {
      const namespace = object.metadata?.namespace ?? '';
      let named = fresh.get(namespace);
      if (named === undefined) fresh.set(namespace, (named = new Set<string>()));
      named.add(object.metadata?.name ?? '');
    }
    // Each item counted as its share of the answers: what the list held in memory to hand them over.
    const each = listed.items.length === 0 ? 0 : Math.ceil((listed.bytes ?? 0) / listed.items.length);
    // Counted by name, as they are held: an item listed twice is held once.
    let distinct = 0;
    for (const named of fresh.values()) distinct += named.size;
    this.take(each * distinct - this.heldBytes, `a list of ${this.options.path}`);
    for (const [namespace, named] of this.objects) {
      for (const [name, held] of named) if (fresh.get(namespace)?.has(name) !== true) this.remove(held.object);
    }
    for (const object of listed.items) this.upsert(object, each);
    this.resourceVersion = listed.metadata?.resourceVersion ?? '';
  }

  /** Takes from the budget, or fails the informer: a member that sends more than it may hold is never held beyond it. */
  private take(bytes: number, what: string): void {
    const budget = this.options.budget;
    if (budget !== undefined && !budget.take(bytes)) throw new OverHeldLimitError(what, budget.limit);
  }

  /**
   * One watch, from the resourceVersion last seen. Ends 'gone' when that
   * version is too old (relist), 'quiet' when the server ended it without an
   * event, 'busy' when it ended after some, or when it fell silent once open.
   */
  private async watchOnce(running: AbortSignal): Promise<'gone' | 'quiet' | 'busy'> {
    const watch = new AbortController();
    const signal = AbortSignal.any([running, watch.signal]);
    const fell = { silent: false };
    let timer: NodeJS.Timeout | undefined;
    const heard = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        fell.silent = true;
        watch.abort();
      }, WATCH_SILENCE_MS);
    };
    let events = 0;
    let open = false;
    try {
      heard();
      const query = { resourceVersion: this.resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(WATCH_SECONDS), labelSelector: this.options.labelSelector };
      const lines = await this.options.watch(this.options.path, query, signal);
      open = true;
      this.opened();
      for await (const line of lines) {
        heard();
        if (line === '') continue;
        const event = JSON.parse(line) as WatchEventLine<T>;
        if (event.type === 'ERROR') {
          if (event.object?.code === 410) return 'gone';
          // Any other error event (a resourceVersion the server cannot serve, say): the restart lists anew.
          this.resourceVersion = '';
          throw new WatchEventError(event.object);
        }
        const object = event.object;
        if (object === undefined) continue;
        const heldBytes = this.objects.get(object.metadata?.namespace ?? '')?.get(object.metadata?.name ?? '')?.bytes ?? 0;
        if (event.type === 'ADDED' || event.type === 'MODIFIED') {
          this.take(line.length - heldBytes, `a watch event of ${this.options.path}`);
          this.upsert(object, line.length);
        } else if (event.type === 'DELETED') {
          this.options.budget?.take(-heldBytes);
          this.remove(object);
        }
        this.resourceVersion = object.metadata?.resourceVersion ?? this.resourceVersion;
        events++;
      }
      return events === 0 ? 'quiet' : 'busy';
    } catch (error) {
      // Silent once open: reopen at once. Never answered: a failure like any other (backoff, not watching).
      if (fell.silent && !running.aborted) {
        if (open) return 'busy';
        throw new Error(`watch not answered within ${WATCH_SILENCE_MS / 1000} s`);
      }
      if (typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 410) return 'gone';
      throw error;
    } finally {
      clearTimeout(timer);
      watch.abort();
    }
  }

  /** A watch is open after a list: the cache is synced and being kept current. */
  private opened(): void {
    this.failures = 0;
    this.setWatching(true);
    if (!this.syncedOnce) {
      this.syncedOnce = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
    }
  }

  /** Keeps an object counted as `bytes`, already taken from the budget by the caller. */
  private upsert(object: T, bytes: number): void {
    const namespace = object.metadata?.namespace ?? '';
    const name = object.metadata?.name ?? '';
    let named = this.objects.get(namespace);
    if (named === undefined) this.objects.set(namespace, (named = new Map<string, Held<T>>()));
    const found = named.get(name);
    this.heldBytes += bytes - (found?.bytes ?? 0);
    if (found !== undefined && found.object.metadata?.resourceVersion !== undefined && found.object.metadata.resourceVersion === object.metadata?.resourceVersion) {
      found.bytes = bytes;
      return;
    }
    named.set(name, { object, bytes });
    this.emit(found === undefined ? 'add' : 'update', object);
  }

  /** Lets an object go; its bytes are given back to the budget by the caller. */
  private remove(object: T): void {
    const namespace = object.metadata?.namespace ?? '';
    const named = this.objects.get(namespace);
    const name = object.metadata?.name ?? '';
    const held = named?.get(name);
    if (named === undefined || held === undefined) return;
    named.delete(name);
    this.heldBytes -= held.bytes;
    if (named.size === 0) this.objects.delete(namespace);
    this.emit('delete', object);
  }

  private emit(event: InformerEvent, object: T): void {
    try {
      this.options.onEvent(event, object);
    } catch (error) {
      this.options.logger.error('informer handler threw; event dropped', { informer: this.options.name, event, error });
    }
  }

  private failed(error: unknown): void {
    this.setWatching(false);
    if (this.stopped) return;
    this.failures++;
    const delay = backoffDelay(this.backoff, this.failures);
    const failure = describeApiError(error);
    this.options.logger.warn('informer failed; restarting', {
      informer: this.options.name,
      reason: failure.message,
      code: failure.code,
      failures: this.failures,
      retryAfterMs: delay,
    });
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (!this.stopped) void this.run();
    }, delay);
  }

  private setWatching(watching: boolean): void {
    if (this.isWatching === watching) return;
    this.isWatching = watching;
    this.options.onWatchingChange?.(watching);
  }
}
