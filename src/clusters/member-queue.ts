import PQueue from 'p-queue';
import { describeApiError } from '../runtime/index.ts';

export interface RateLimitSettings {
  qps: number;
  burst: number;
  concurrency: number;
}

/** The member is failing fast: its circuit is open after repeated connection failures. */
export class MemberUnavailableError extends Error {
  override readonly name = 'MemberUnavailableError';
}

/** The member's queue is full; the work is retried later rather than held in memory. */
export class MemberBusyError extends Error {
  override readonly name = 'MemberBusyError';
}

export interface MemberQueueOptions {
  limits: RateLimitSettings;
  /** Most tasks waiting at once; more are refused so a dead member cannot hoard memory. */
  maxWaiting?: number;
  /** Consecutive connection failures that open the circuit. */
  failureThreshold?: number;
  /** How long an open circuit refuses work before letting one task probe. */
  openMs?: number;
  /** Retries of one task after 429s, each after the server's Retry-After. */
  throttleRetries?: number;
  onWait?: (waitMs: number) => void;
  onThrottled?: (retryAfterMs: number) => void;
}

/**
 * One member's own queue: its rate limit and concurrency, its own pause on a
 * 429 (for the server's Retry-After), and its own circuit breaker, so a slow,
 * throttling or dead member never holds up another.
 *
 * The rate limit is p-queue's fixed window: up to `burst` calls start in each
 * window of burst/qps seconds, which averages to qps and allows a burst at the
 * start of a window, close to client-go's token bucket.
 */
export class MemberQueue {
  readonly limits: RateLimitSettings;
  private readonly queue: PQueue;
  private readonly options: Required<Omit<MemberQueueOptions, 'onWait' | 'onThrottled'>> & Pick<MemberQueueOptions, 'onWait' | 'onThrottled'>;
  private readonly closing = new AbortController();
  private failures = 0;
  private openUntil = 0;
  private pauseTimer: NodeJS.Timeout | undefined;

  constructor(options: MemberQueueOptions) {
    this.options = { maxWaiting: 10_000, failureThreshold: 5, openMs: 15_000, throttleRetries: 5, ...options };
    this.limits = options.limits;
    const { qps, burst, concurrency } = options.limits;
    this.queue = new PQueue({ concurrency, intervalCap: burst, interval: Math.max(1, Math.round((burst / qps) * 1000)) });
  }

  /** Tasks waiting plus tasks running. */
  get depth(): number {
    return this.queue.size + this.queue.pending;
  }

  get circuitOpen(): boolean {
    return Date.now() < this.openUntil;
  }

  async run<T>(task: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.runOnce(task, signal);
      } catch (error) {
        const failure = describeApiError(error);
        if (failure.kind !== 'throttled' || attempt >= this.options.throttleRetries || this.closing.signal.aborted) throw error;
        this.pause(failure.retryAfterMs ?? 1000);
      }
    }
  }

  /** Refuses new work, cancels what waits, and lets running tasks finish. */
  async close(): Promise<void> {
    this.closing.abort(new MemberUnavailableError('member removed'));
    clearTimeout(this.pauseTimer);
    this.queue.start();
    await this.queue.onPendingZero();
  }

  private async runOnce<T>(task: (signal: AbortSignal) => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    if (this.closing.signal.aborted) throw new MemberUnavailableError('member removed');
    if (this.circuitOpen) throw new MemberUnavailableError('member unreachable; failing fast until it answers again');
    if (this.queue.size >= this.options.maxWaiting) throw new MemberBusyError(`member queue full (${this.options.maxWaiting} waiting)`);
    const combined = signal === undefined ? this.closing.signal : AbortSignal.any([signal, this.closing.signal]);
    const enqueued = performance.now();
    return this.queue.add(
      async () => {
        this.options.onWait?.(performance.now() - enqueued);
        try {
          const result = await task(combined);
          this.failures = 0;
          return result;
        } catch (error) {
          this.noteFailure(error);
          throw error;
        }
      },
      { signal: combined },
    );
  }

  private noteFailure(error: unknown): void {
    const failure = describeApiError(error);
    if (failure.kind === 'throttled') {
      this.options.onThrottled?.(failure.retryAfterMs ?? 1000);
      return;
    }
    if (failure.kind !== 'unavailable') return;
    this.failures++;
    if (this.failures >= this.options.failureThreshold) {
      this.openUntil = Date.now() + this.options.openMs;
      // Half-open afterwards: one more failure reopens it at once.
      this.failures = this.options.failureThreshold - 1;
    }
  }

  private pause(ms: number): void {
    this.queue.pause();
    clearTimeout(this.pauseTimer);
    this.pauseTimer = setTimeout(() => this.queue.start(), ms);
  }
}
