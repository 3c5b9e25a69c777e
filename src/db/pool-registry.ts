import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { poolKey, validateConnectionSettings, type ConnectionSettings } from './connection-settings.ts';
import { classifyDbError, DbError } from './errors.ts';
import { NegotiatingPool, tlsPlan } from './tls.ts';
import { rowcastTypes } from './type-parsers.ts';

/** The slice of the telemetry logger this module uses; typed here so db does not depend on telemetry's shape. */
export interface DbLogger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

export interface PoolRegistryOptions {
  logger: DbLogger;
  /** Called after the registry has logged an error of an idle pooled connection; the pool has already dropped it. */
  onPoolError?: (key: string, error: Error) => void;
}

export interface PoolLease {
  /** The pool's identity: user, host, port, database, sslmode, pool settings and a keyed hash of the password. No secret. */
  readonly key: string;
  readonly pool: pg.Pool;
  /** Idempotent. The last lease of a pool ends it; resolves once its connections are closed. */
  release(): Promise<void>;
}

interface Entry {
  readonly key: string;
  readonly pool: pg.Pool;
  leases: number;
}

/** Name of the application in pg_stat_activity, so a DBA can tell Rowcast's sessions apart. */
const applicationName = 'rowcast';
const keepAliveDelayMs = 60_000;

/**
 * One pg.Pool per distinct connection, shared by every DatabaseQueryResource
 * that uses it and reference-counted by leases. A rotated password makes a new
 * key and so a new pool; the old one ends when its last lease goes, so
 * queries in flight finish on the old credentials.
 */
export class PoolRegistry {
  readonly #logger: DbLogger;
  readonly #onPoolError: ((key: string, error: Error) => void) | undefined;
  readonly #pools = new Map<string, Entry>();
  readonly #hashKey = randomBytes(32);
  /** Pools whose last lease went and that are still closing, so closeAll can wait for them too. */
  readonly #ending = new Set<Promise<void>>();
  #closed = false;

  constructor(options: PoolRegistryOptions) {
    this.#logger = options.logger;
    this.#onPoolError = options.onPoolError;
  }

  /** Live pools. */
  get size(): number {
    return this.#pools.size;
  }

  acquire(settings: ConnectionSettings): PoolLease {
    if (this.#closed) throw new DbError('ROWCAST_REGISTRY_CLOSED', 'the pool registry is closed');
    validateConnectionSettings(settings);
    const key = poolKey(settings, this.#hashKey);
    let entry = this.#pools.get(key);
    if (entry === undefined) {
      entry = { key, pool: this.#createPool(settings, key), leases: 0 };
      this.#pools.set(key, entry);
      this.#logger.info('database pool created', { pool: key });
    }
    entry.leases += 1;
    const leased = entry;
    let released = false;
    return Object.freeze({
      key,
      pool: leased.pool,
      release: async (): Promise<void> => {
        if (released) return;
        released = true;
        leased.leases -= 1;
        // After closeAll (or a replacement under the same key) this entry is no longer ours to end.
        if (leased.leases > 0 || this.#pools.get(key) !== leased) return;
        this.#pools.delete(key);
        await this.#end(leased);
      },
    });
  }

  /** Ends every pool, leased or not; leases released afterwards do nothing, and acquire throws. */
  async closeAll(): Promise<void> {
    this.#closed = true;
    const entries = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all([...entries.map((entry) => this.#end(entry)), ...this.#ending]);
  }

  async #end(entry: Entry): Promise<void> {
    const ending = entry.pool.end().then(
      () => {
        this.#logger.info('database pool ended', { pool: entry.key });
      },
      (error: unknown) => {
        this.#logger.warn('database pool did not end cleanly', { pool: entry.key, error: classifyDbError(error).message });
      },
    );
    this.#ending.add(ending);
    try {
      await ending;
    } finally {
      this.#ending.delete(ending);
    }
  }

  #createPool(settings: ConnectionSettings, key: string): pg.Pool {
    const plan = tlsPlan(settings);
    // Every field is set explicitly: pg fills gaps from PG* environment variables and ~/.pgpass.
    const config: pg.PoolConfig = {
      host: settings.host,
      port: settings.port,
      database: settings.database,
      user: settings.user,
      password: settings.password,
      ssl: plan.kind === 'on' ? plan.options : false,
      max: settings.pool.max,
      idleTimeoutMillis: settings.pool.idleTimeoutMs,
      connectionTimeoutMillis: settings.connectTimeoutMs,
      statement_timeout: settings.pool.statementTimeoutMs,
      application_name: applicationName,
      types: rowcastTypes,
      // Notices a peer that vanished (node drained, NAT entry expired) on an otherwise idle connection;
      // the OS default would wait two hours before the first probe.
      keepAlive: true,
      keepAliveInitialDelayMillis: keepAliveDelayMs,
    };
    const pool =
      plan.kind === 'negotiate'
        ? new NegotiatingPool(config, plan.options, (tls) => {
            if (tls) this.#logger.debug('database server accepted TLS', { pool: key, sslmode: settings.sslmode });
            else this.#logger.info('database server does not offer TLS; connecting without it', { pool: key, sslmode: settings.sslmode });
          })
        : new pg.Pool(config);
    // pg-pool re-emits an idle client's error on the pool; an 'error' event without a listener would crash the process.
    pool.on('error', (error) => {
      const { retryable, code, message } = classifyDbError(error, { secrets: [settings.password] });
      this.#logger.warn('idle database connection failed', { pool: key, code, retryable, error: message });
      try {
        this.#onPoolError?.(key, error);
      } catch (callbackError) {
        this.#logger.error('onPoolError threw', { pool: key, error: classifyDbError(callbackError, { secrets: [settings.password] }).message });
      }
    });
    return pool;
  }
}
