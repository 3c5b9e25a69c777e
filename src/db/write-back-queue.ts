import { setTimeout as wait } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import PQueue from 'p-queue';
import type pg from 'pg';
import { backoffDelay, type BackoffPolicy } from '../runtime/index.ts';
import { bindToCurrentContext } from '../telemetry/index.ts';
import { cancelBackend } from './cancel.ts';
import { classifyDbError, DbError } from './errors.ts';
import { ConnectionWatch, cleanupTimeoutMs, leavesSessionState, replyBoundMs } from './session-guard.ts';
import type { DbLogger } from './pool-registry.ts';
import type { CompiledStatement } from './status-template.ts';

export type WriteBackResult = 'written' | 'unchanged';

export interface WriteBackQueueOptions {
  logger: DbLogger;
  /** Statements started per second and per database (poolKey). Default 20. */
  ratePerSecond?: number;
  /** Statements running at once per database, so write-back never takes a DQR's whole pool. Default 2. */
  concurrency?: number;
  /** Retries after the first attempt, for retryable errors only. Default 5. */
  retries?: number;
  /** Delay before each retry, exponential and jittered. Default 200 ms to 10 s. */
  backoff?: BackoffPolicy;
}

/**
 * A write-back that did not happen. `sqlState` and `retryable` describe the
 * last error (PostgreSQL's code, or a Node or Rowcast code); the message is
 * scrubbed of the connection's password. The caller turns it into a condition
 * reason and a metric; nothing else needs to happen, since the next status
 * change (or resync) tries again.
 */
export class WriteBackError extends Error {
  readonly sqlState: string | undefined;
  readonly retryable: boolean;
  readonly attempts: number;

  constructor(message: string, details: { sqlState: string | undefined; retryable: boolean; attempts: number }, options?: ErrorOptions) {
    super(message, options);
    this.name = 'WriteBackError';
    this.sqlState = details.sqlState;
    this.retryable = details.retryable;
    this.attempts = details.attempts;
  }
}

const rateWindowMs = 1000;
const defaults = { ratePerSecond: 20, concurrency: 2, retries: 5, backoff: { baseMs: 200, maxMs: 10_000 } } as const;

/**
 * Runs status write-back statements: only when something changed, at a
 * bounded rate per database, retried while the database is away.
 *
 * - Change detection: a hash of (statement text, values) per object; an
 *   equal enqueue answers 'unchanged' without touching the database. The hash
 *   is kept only after a successful write, and dropped after a failed one.
 * - Order: writes for one object run one after another, in enqueue order, so
 *   a slow retry of an old status can never land after a newer one.
 * - Rate: one p-queue per poolKey (a fixed one-second window of
 *   ratePerSecond starts, and `concurrency` at once). A retry waits its
 *   backoff outside the queue, so it holds no slot while it waits.
 */
export class WriteBackQueue {
  readonly #logger: DbLogger;
  readonly #rate: number;
  readonly #concurrency: number;
  readonly #retries: number;
  readonly #backoff: BackoffPolicy;
  readonly #queues = new Map<string, PQueue>();
  /** objectKey → hash of the statement and values last written. */
  readonly #written = new Map<string, string>();
  /** objectKey → the last write (or forget) queued for it, to chain the next one behind. */
  readonly #tails = new Map<string, Promise<unknown>>();
  readonly #closing = new AbortController();

  constructor(options: WriteBackQueueOptions) {
    this.#logger = options.logger;
    this.#rate = positiveInteger(options.ratePerSecond, defaults.ratePerSecond, 'ratePerSecond');
    this.#concurrency = positiveInteger(options.concurrency, defaults.concurrency, 'concurrency');
    this.#retries = options.retries === undefined ? defaults.retries : nonNegativeInteger(options.retries, 'retries');
    this.#backoff = options.backoff ?? defaults.backoff;
  }

  /** Objects whose last written statement is remembered. */
  get remembered(): number {
    return this.#written.size;
  }

  enqueue(pool: pg.Pool, poolKey: string, objectKey: string, statement: CompiledStatement, values: unknown[]): Promise<WriteBackResult> {
    if (this.#closing.signal.aborted) return Promise.reject(new DbError('ROWCAST_WRITE_BACK_CLOSED', 'the write-back queue is closed'));
    const hash = hashOf(statement.text, values);
    const run = this.#after(objectKey, () => this.#write(pool, poolKey, objectKey, statement, values, hash));
    return run;
  }

  /** The object is gone (pruned): its remembered hash goes, after any write for it still in flight. */
  forget(objectKey: string): void {
    this.#written.delete(objectKey);
    void this.#after(objectKey, () => {
      this.#written.delete(objectKey);
      return Promise.resolve();
    });
  }

  /** Every object whose key starts with the prefix is gone (its DQR was deleted): forget each. */
  forgetPrefix(prefix: string): void {
    for (const objectKey of [...this.#written.keys()]) if (objectKey.startsWith(prefix)) this.forget(objectKey);
  }

  /** Refuses new work, rejects what waits (in a queue or a backoff) and waits for statements already running. */
  async closeAll(): Promise<void> {
    this.#closing.abort(new DbError('ROWCAST_WRITE_BACK_CLOSED', 'the write-back queue is closed'));
    await Promise.all([...this.#queues.values()].map((queue) => queue.onIdle()));
    await Promise.all([...this.#tails.values()]);
  }

  /** Runs `task` once the previous work for the object has settled, whatever its outcome. */
  #after<T>(objectKey: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(objectKey) ?? Promise.resolve();
    const run = previous.then(task);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#tails.set(objectKey, tail);
    void tail.then(() => {
      if (this.#tails.get(objectKey) === tail) this.#tails.delete(objectKey);
    });
    return run;
  }

  async #write(pool: pg.Pool, poolKey: string, objectKey: string, statement: CompiledStatement, values: unknown[], hash: string): Promise<WriteBackResult> {
    if (this.#written.get(objectKey) === hash) return 'unchanged';
    this.#written.delete(objectKey);
    const signal = this.#closing.signal;
    for (let attempt = 1; ; attempt++) {
      try {
        signal.throwIfAborted();
        // Extended protocol even without values: the server then accepts exactly one statement.
        const query: pg.QueryConfig & { queryMode: 'extended' } = { text: statement.text, values, queryMode: 'extended' };
        // Bound: p-queue starts a task from whichever task's end made room, in that task's trace.
        await this.#queue(poolKey).add(bindToCurrentContext(() => runGuarded(pool, query, signal)), { signal });
        this.#written.set(objectKey, hash);
        return 'written';
      } catch (error) {
        const password = typeof pool.options.password === 'string' ? pool.options.password : undefined;
        const { retryable, code, message } = classifyDbError(error, password === undefined ? {} : { secrets: [password] });
        const closed = signal.aborted;
        // A pool whose lease was released (rotated credentials) will not come back: the caller re-enqueues on the new one.
        const poolEnded = pool.ended;
        if (!retryable || attempt > this.#retries || closed || poolEnded) {
          this.#logger.warn('status write-back failed', { pool: poolKey, object: objectKey, code, retryable, attempts: attempt, error: message });
          const why = closed ? 'the write-back queue closed' : poolEnded ? 'the pool has ended' : retryable ? `gave up after ${attempt} attempts` : 'terminal error';
          throw new WriteBackError(`status write-back failed (${why}): ${message}`, { sqlState: code, retryable: retryable && !poolEnded, attempts: attempt }, { cause: error });
        }
        const delay = backoffDelay(this.#backoff, attempt);
        this.#logger.debug('status write-back retry scheduled', { pool: poolKey, object: objectKey, code, attempts: attempt, delayMs: delay, error: message });
        await wait(delay, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  #queue(poolKey: string): PQueue {
    let queue = this.#queues.get(poolKey);
    if (queue === undefined) {
      const created = new PQueue({ concurrency: this.#concurrency, intervalCap: this.#rate, interval: rateWindowMs });
      // Pool keys change with rotated passwords, so a queue with nothing left to do goes rather than piling up;
      // only after a full window, or a new queue would start with a fresh budget and sequential writes would
      // escape the rate limit.
      created.on('idle', () => {
        setTimeout(() => {
          if (this.#queues.get(poolKey) === created && created.size === 0 && created.pending === 0) this.#queues.delete(poolKey);
        }, rateWindowMs).unref();
      });
      this.#queues.set(poolKey, created);
      queue = created;
    }
    return queue;
  }
}

/** Stable for equal values: the hash must not depend on anything but the statement and what binds to it. */
function hashOf(text: string, values: readonly unknown[]): string {
  const encoded = JSON.stringify([text, values], (_key, value: unknown) => {
    if (typeof value === 'bigint') return { bigint: value.toString() };
    if (value === undefined) return null;
    return value;
  });
  return createHash('sha256').update(encoded).digest('base64url');
}


function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined || value === 0) return fallback;
  if (!Number.isInteger(value) || value < 0) throw new DbError('ROWCAST_INVALID_OPTIONS', `${name} must be a positive integer, got ${value}`);
  return value;
}

function nonNegativeInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 0) throw new DbError('ROWCAST_INVALID_OPTIONS', `${name} must be a non-negative integer, got ${value}`);
  return value;
}

/**
 * One write-back statement under the session guard the DQR's query runs
 * with: each round trip bounded, and a statement that may change its session
 * closes the connection instead of handing the change to the next checkout.
 */
async function runGuarded(pool: pg.Pool, query: pg.QueryConfig & { queryMode: 'extended' }, signal: AbortSignal): Promise<void> {
  const client = await pool.connect();
  const connection = new ConnectionWatch(client, replyBoundMs(pool), 'the write-back');
  const cancel = (): void => {
    void cancelBackend(client, cleanupTimeoutMs);
  };
  signal.addEventListener('abort', cancel, { once: true });
  try {
    await connection.reply(client.query(query), 'the write-back statement');
    client.release(leavesSessionState(query.text) ? true : undefined);
  } catch (error) {
    client.release(error instanceof Error ? error : true);
    throw error;
  } finally {
    signal.removeEventListener('abort', cancel);
    connection.dispose();
  }
}
