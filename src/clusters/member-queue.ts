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

export interface MemberQueueOptions {
  limits: RateLimitSettings;
  /** Most tasks waiting at once; callers beyond it wait for room, so a slow member slows its producers instead of hoarding memory. */
  maxWaiting?: number;
  /** Consecutive connection failures that open the circuit. */
  failureThreshold?: number;
  /** How long an open circuit refuses work before letting one task probe. */
  openMs?: number;
  /** 429s one task may take while the member admits no call at all; then it fails (a member that admits nothing is failing). */
  throttleRetries?: number;
  /** Calls admitted without a 429 before a lowered concurrency grows by one again. */
  growAfter?: number;
  onWait?: (waitMs: number) => void;
  onThrottled?: (retryAfterMs: number) => void;
}

type Settings = Required<Omit<MemberQueueOptions, 'onWait' | 'onThrottled'>> & Pick<MemberQueueOptions, 'onWait' | 'onThrottled'>;

interface RoomWaiter {
  admit: () => void;
  refuse: (reason: unknown) => void;
}

/** Retries of a refused call go before calls that have not been sent yet. */
const RETRY_PRIORITY = 1;

/**
 * One member's own queue: its rate limit and concurrency, its own pause on a
 * 429, and its own circuit breaker, so a slow, throttling or dead member never
 * holds up another.
 *
 * The rate limit is p-queue's fixed window: up to `burst` calls start in each
 * window of burst/qps seconds, which averages to qps and allows a burst at the
 * start of a window, close to client-go's token bucket.
 *
 * A 429 says the member admits fewer calls than are sent: the whole queue
 * pauses for the server's Retry-After, the refused call is sent again first,
 * and the concurrency halves (once per round of calls sent at that
 * concurrency, so one burst of 429s halves it once), then grows by one after
 * each `growAfter` calls admitted: the queue settles at what the member admits
 * instead of retrying into a wall of 429s.
 */
export class MemberQueue {
  readonly limits: RateLimitSettings;
  private readonly queue: PQueue;
  private readonly options: Settings;
  private readonly closing = new AbortController();
  private failures = 0;
  private openUntil = 0;
  private pauseTimer: NodeJS.Timeout | undefined;
  private pausedUntil = 0;
  /** Calls the member has answered with anything but a 429, ever: a task's retries count only while this stands still. */
  private admitted = 0;
  /** Bumped on each decrease: a 429 of a call sent before it was already answered by that decrease. */
  private epoch = 0;
  private admittedAtLevel = 0;
  private readonly roomWaiters: RoomWaiter[] = [];
  /** Callers let in that have not added their task yet. */
  private reserved = 0;

  constructor(options: MemberQueueOptions) {
    this.options = { maxWaiting: 10_000, failureThreshold: 5, openMs: 15_000, throttleRetries: 10, growAfter: 20, ...options };
    this.limits = options.limits;
    const { qps, burst, concurrency } = options.limits;
    this.queue = new PQueue({ concurrency, intervalCap: burst, interval: Math.max(1, Math.round((burst / qps) * 1000)) });
    this.queue.on('active', () => this.letWaitersIn());
    this.queue.on('next', () => this.letWaitersIn());
  }

  /** Tasks waiting (for room or to start) plus tasks running. */
  get depth(): number {
    return this.roomWaiters.length + this.reserved + this.queue.size + this.queue.pending;
  }

  /** Calls sent at once now: spec.rateLimit.concurrency, lowered while the member answers 429. */
  get concurrency(): number {
    return this.queue.concurrency;
  }

  get circuitOpen(): boolean {
    return Date.now() < this.openUntil;
  }

  async run<T>(task: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const combined = signal === undefined ? this.closing.signal : AbortSignal.any([signal, this.closing.signal]);
    this.refuseIfUnavailable();
    await this.room(combined);
    let stalled = 0;
    for (let attempt = 0; ; attempt++) {
      const admittedBefore = this.admitted;
      const sent = { epoch: this.epoch };
      try {
        return await this.runOnce(task, combined, sent, attempt === 0 ? 0 : RETRY_PRIORITY);
      } catch (error) {
        const failure = describeApiError(error);
        if (failure.kind !== 'throttled' || combined.aborted) throw error;
        stalled = this.admitted === admittedBefore ? stalled + 1 : 0;
        if (stalled > this.options.throttleRetries) throw error;
        this.throttled(failure.retryAfterMs ?? 1000, sent.epoch);
      }
    }
  }

  /** Refuses new work, cancels what waits, and lets running tasks finish. */
  async close(): Promise<void> {
    this.closing.abort(new MemberUnavailableError('member removed'));
    for (const waiter of this.roomWaiters.splice(0)) waiter.refuse(this.closing.signal.reason);
    clearTimeout(this.pauseTimer);
    this.queue.start();
    await this.queue.onPendingZero();
  }

  private refuseIfUnavailable(): void {
    if (this.closing.signal.aborted) throw new MemberUnavailableError('member removed');
    if (this.circuitOpen) throw new MemberUnavailableError('member unreachable; failing fast until it answers again');
  }

  /** Back-pressure: resolves once the queue has room for one more task, in the order callers asked, and holds that room. */
  private async room(signal: AbortSignal): Promise<void> {
    if (this.roomWaiters.length === 0 && this.queue.size + this.reserved < this.options.maxWaiting) {
      this.reserved++;
      return;
    }
    signal.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const waiter: RoomWaiter = {
        admit: () => {
          signal.removeEventListener('abort', onAbort);
          this.reserved++;
          resolve();
        },
        refuse: (reason) => {
          signal.removeEventListener('abort', onAbort);
          reject(reason instanceof Error ? reason : new Error(String(reason)));
        },
      };
      const onAbort = (): void => {
        const at = this.roomWaiters.indexOf(waiter);
        if (at >= 0) this.roomWaiters.splice(at, 1);
        waiter.refuse(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.roomWaiters.push(waiter);
    });
  }

  private letWaitersIn(): void {
    while (this.roomWaiters.length > 0 && this.queue.size + this.reserved < this.options.maxWaiting) this.roomWaiters.shift()?.admit();
  }

  private async runOnce<T>(task: (signal: AbortSignal) => Promise<T>, signal: AbortSignal, sent: { epoch: number }, priority: number): Promise<T> {
    // A first attempt's reserved room becomes its place in the queue; a retry was in it already.
    if (priority === 0) this.reserved--;
    const enqueued = performance.now();
    return this.queue.add(
      async () => {
        this.options.onWait?.(performance.now() - enqueued);
        sent.epoch = this.epoch;
        try {
          const result = await task(signal);
          this.failures = 0;
          this.noteAdmitted();
          return result;
        } catch (error) {
          this.noteFailure(error);
          throw error;
        }
      },
      { signal, priority },
    );
  }

  private noteAdmitted(): void {
    this.admitted++;
    if (this.queue.concurrency >= this.limits.concurrency) return;
    if (++this.admittedAtLevel < this.options.growAfter) return;
    this.admittedAtLevel = 0;
    this.queue.concurrency = this.queue.concurrency + 1;
  }

  private noteFailure(error: unknown): void {
    const failure = describeApiError(error);
    if (failure.kind === 'throttled') {
      this.options.onThrottled?.(failure.retryAfterMs ?? 1000);
      return;
    }
    // Any answer but a 429 is the member admitting the call, even a refusal of the object.
    if (failure.code !== undefined) this.noteAdmitted();
    if (failure.kind !== 'unavailable') return;
    this.failures++;
    if (this.failures >= this.options.failureThreshold) {
      this.openUntil = Date.now() + this.options.openMs;
      // Half-open afterwards: one more failure reopens it at once.
      this.failures = this.options.failureThreshold - 1;
    }
  }

  /** A 429 to a call sent at `epoch`: pause the whole queue for the Retry-After, and halve the concurrency once per epoch. */
  private throttled(retryAfterMs: number, epoch: number): void {
    if (epoch === this.epoch) {
      this.epoch++;
      this.admittedAtLevel = 0;
      this.queue.concurrency = Math.max(1, Math.floor(this.queue.concurrency / 2));
    }
    const until = Date.now() + retryAfterMs;
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    this.queue.pause();
    clearTimeout(this.pauseTimer);
    this.pauseTimer = setTimeout(() => this.queue.start(), retryAfterMs);
  }
}
