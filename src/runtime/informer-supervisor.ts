import { setTimeout as sleep } from 'node:timers/promises';
import { ListWatch, Watch, makeInformer, type KubeConfig, type KubernetesListObject, type KubernetesObject, type ListPromise } from '@kubernetes/client-node';
import type { Logger } from '../telemetry/index.ts';
import { describeApiError } from './api-errors.ts';
import { backoffDelay, type BackoffPolicy } from './backoff.ts';

export type InformerEvent = 'add' | 'update' | 'delete';

export interface SupervisedInformerOptions<T extends KubernetesObject> {
  name: string;
  kubeConfig: KubeConfig;
  path: string;
  list: ListPromise<T>;
  labelSelector?: string;
  logger: Logger;
  /** Compute a key and enqueue it, nothing more: it runs inside the informer's own callbacks. */
  onEvent: (event: InformerEvent, object: T) => void;
  /** Called with true when a list and watch succeed, false when the informer fails. */
  onWatchingChange?: (watching: boolean) => void;
  backoff?: BackoffPolicy;
  /**
   * Keep the watch's resourceVersion fresh with bookmarks, so a quiet
   * label-selected watch never falls out of the apiserver's window (a 410,
   * then a full relist): the apiserver sends one shortly before a watch's
   * timeoutSeconds, which is set below client-node's 30 s inactivity cut.
   */
  bookmarks?: boolean;
}

/** Below client-node's 30 s inactivity timer: the apiserver ends the watch, after its bookmark, before the client gives up on it. */
const BOOKMARKED_WATCH_SECONDS = 25;
/** client-node waits up to 30 s before reopening a watch the server ended without an event since; the cache would lag that long. */
const MAX_REOPEN_DELAY_MS = 1000;

/**
 * client-node's informer stops for good on any error but a watch timeout or a
 * 410 (a 500, a 401/403, a failed list, a dropped connection): this restarts it
 * with jittered backoff, tells whether it has synced and is watching, and keeps
 * a throwing handler from killing it.
 */
export class SupervisedInformer<T extends KubernetesObject> {
  private readonly options: SupervisedInformerOptions<T>;
  private readonly informer: ReturnType<typeof makeInformer<T>>;
  private readonly backoff: BackoffPolicy;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private syncedOnce = false;
  private isWatching = false;
  private readonly syncWaiters: (() => void)[] = [];

  constructor(options: SupervisedInformerOptions<T>) {
    this.options = options;
    this.backoff = options.backoff ?? { baseMs: 1000, maxMs: 60_000 };
    this.informer =
      options.bookmarks === true
        ? new ListWatch<T>(`${options.path}?allowWatchBookmarks=true&timeoutSeconds=${BOOKMARKED_WATCH_SECONDS}`, new Watch(options.kubeConfig), () => this.listUnlessStopped(), false, options.labelSelector, undefined, {
            delayFn: (ms: number) => this.reopenDelay(ms),
          })
        : makeInformer<T>(options.kubeConfig, options.path, () => this.listUnlessStopped(), options.labelSelector);
    for (const event of ['add', 'update', 'delete'] as const) {
      this.informer.on(event, (object: T) => {
        try {
          options.onEvent(event, object);
        } catch (error) {
          options.logger.error('informer handler threw; event dropped', { informer: options.name, event, error });
        }
      });
    }
    this.informer.on('error', (error: unknown) => {
      this.failed(error);
    });
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

  /** Resolves once the first list has completed; never rejects: failures keep retrying. */
  waitForSync(): Promise<void> {
    if (this.syncedOnce) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  list(namespace?: string): readonly T[] {
    return this.informer.list(namespace);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.setWatching(false);
    await this.informer.stop();
  }

  private async run(): Promise<void> {
    let failedDuringStart = false;
    const onError = (): void => {
      failedDuringStart = true;
    };
    this.informer.on('error', onError);
    try {
      await this.informer.start();
    } catch (error) {
      // A throwing handler during the initial list rejects start(); treat it like any failure.
      failedDuringStart = true;
      this.failed(error);
    } finally {
      this.informer.off('error', onError);
    }
    if (this.stopped) {
      // stop() may have come while the watch was being opened, before there was a request to abort.
      await this.informer.stop();
      return;
    }
    if (failedDuringStart) return;
    this.failures = 0;
    this.setWatching(true);
    if (!this.syncedOnce) {
      this.syncedOnce = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
    }
  }

  /**
   * client-node opens its watch as soon as its list returns, without asking
   * whether it was stopped meanwhile: a stop() during the list would leave a
   * watch nobody closes. Failing the list instead ends the attempt there.
   */
  private async listUnlessStopped(): Promise<KubernetesListObject<T>> {
    const list = await this.options.list();
    if (this.stopped) throw new Error(`informer ${this.options.name} stopped while listing`);
    return list;
  }

  /**
   * client-node reopens the watch after this without asking whether it was
   * stopped meanwhile: once stopped, it never resolves, and no watch opens
   * that nobody would close.
   */
  private async reopenDelay(ms: number): Promise<void> {
    await sleep(Math.min(ms, MAX_REOPEN_DELAY_MS));
    if (this.stopped) await new Promise<never>(() => undefined);
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
