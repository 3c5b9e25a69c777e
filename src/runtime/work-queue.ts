import type { Logger } from '../telemetry/index.ts';
import { backoffDelay, type BackoffPolicy } from './backoff.ts';

export interface ReconcileResult {
  /** Run this key again after this long (polling), unless something enqueues it sooner. */
  requeueAfterMs?: number;
}

/** Bad input: retrying cannot help; the key waits for the next change instead. */
export class TerminalError extends Error {
  override readonly name = 'TerminalError';
}

export type Reconcile = (key: string, signal: AbortSignal) => Promise<ReconcileResult | undefined>;

export type ReconcileOutcome = 'success' | 'requeue_after' | 'error' | 'terminal';

export interface WorkQueueOptions {
  name: string;
  concurrency: number;
  reconcile: Reconcile;
  logger: Logger;
  backoff?: BackoffPolicy;
  /** For metrics: called after every run of a key. */
  onReconciled?: (key: string, outcome: ReconcileOutcome, durationMs: number) => void;
  /** For metrics: how long a key waited in the queue before it ran. */
  onDequeued?: (key: string, waitMs: number) => void;
}

interface Timer {
  at: number;
  handle: NodeJS.Timeout;
}

/**
 * Keys, not events (client-go's workqueue semantics): a key waiting in the
 * queue is never added twice, a key never runs twice at once (adding it while
 * it runs marks it to run once more afterwards), failures back off per key,
 * and a result's requeueAfterMs schedules the next run.
 */
export class WorkQueue {
  private readonly options: WorkQueueOptions;
  private readonly backoff: BackoffPolicy;
  private readonly queue: string[] = [];
  /** Keys waiting, with when they were queued. */
  private readonly queued = new Map<string, number>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, Timer>();
  private readonly failures = new Map<string, number>();
  private readonly abort = new AbortController();
  private started = false;
  private stopping = false;

  constructor(options: WorkQueueOptions) {
    this.options = options;
    this.backoff = options.backoff ?? { baseMs: 1000, maxMs: 300_000 };
  }

  /** Keys waiting to run (not counting those running or waiting on a timer). */
  get depth(): number {
    return this.queue.length;
  }

  get inFlight(): number {
    return this.running.size;
  }

  add(key: string): void {
    if (this.stopping) return;
    const timer = this.timers.get(key);
    if (timer !== undefined) {
      clearTimeout(timer.handle);
      this.timers.delete(key);
    }
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.set(key, performance.now());
    this.queue.push(key);
    this.pump();
  }

  /** The earliest of several pending delays wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopping) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing !== undefined) {
      if (existing.at <= at) return;
      clearTimeout(existing.handle);
    }
    const handle = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    this.timers.set(key, { at, handle });
  }

  /** Drops the key's timers and failure count, e.g. when its object is gone. */
  forget(key: string): void {
    const timer = this.timers.get(key);
    if (timer !== undefined) clearTimeout(timer.handle);
    this.timers.delete(key);
    this.failures.delete(key);
  }

  start(): void {
    this.started = true;
    this.pump();
  }

  /**
   * Stops taking work and lets running reconciles finish (a sync half-applied
   * or half-pruned is left to nobody); only after `graceMs` does it abort the
   * signal they were handed, then waits for them to return.
   */
  async shutdown(graceMs = 0): Promise<void> {
    this.stopping = true;
    for (const timer of this.timers.values()) clearTimeout(timer.handle);
    this.timers.clear();
    this.queue.length = 0;
    this.queued.clear();
    const running = Promise.allSettled([...this.running.values()]);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([running, grace]);
    clearTimeout(timer);
    this.abort.abort(new Error(`work queue ${this.options.name} is shutting down`));
    await running;
  }

  private pump(): void {
    while (this.started && !this.stopping && this.running.size < this.options.concurrency && this.queue.length > 0) {
      const key = this.queue.shift();
      if (key === undefined) return;
      this.options.onDequeued?.(key, performance.now() - (this.queued.get(key) ?? performance.now()));
      this.queued.delete(key);
      // Started on the next microtask, so a reconcile that throws at once still finds itself registered.
      this.running.set(key, Promise.resolve().then(() => this.run(key)));
    }
  }

  private async run(key: string): Promise<void> {
    const started = performance.now();
    let outcome: ReconcileOutcome = 'success';
    let retryAfter: number | undefined;
    try {
      const result = await this.options.reconcile(key, this.abort.signal);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined) {
        outcome = 'requeue_after';
        retryAfter = result.requeueAfterMs;
      }
    } catch (error) {
      if (error instanceof TerminalError) {
        outcome = 'terminal';
        this.failures.delete(key);
        this.options.logger.warn('reconcile failed terminally; waiting for a change', { queue: this.options.name, key, error });
      } else {
        outcome = 'error';
        const failures = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, failures);
        retryAfter = backoffDelay(this.backoff, failures);
        this.options.logger.warn('reconcile failed; retrying', { queue: this.options.name, key, error, failures, retryAfterMs: retryAfter });
      }
    } finally {
      this.running.delete(key);
    }
    this.options.onReconciled?.(key, outcome, performance.now() - started);
    if (this.dirty.delete(key)) this.add(key);
    else if (retryAfter !== undefined) this.addAfter(key, retryAfter);
    this.pump();
  }
}
