import { setTimeout as wait } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { backoffDelay, type BackoffPolicy } from '../runtime/index.ts';
import { connectionDefaults, poolKey, validateConnectionSettings, type ConnectionSettings } from './connection-settings.ts';
import { classifyDbError, DbError } from './errors.ts';
import { quoteIdentifier } from './identifiers.ts';
import type { DbLogger } from './pool-registry.ts';
import { isTlsRefused, tlsPlan } from './tls.ts';

export type NotifySignal = 'notify' | 'reconnect';

export interface NotifySubscription {
  /**
   * Resolves once the server has confirmed LISTEN for this channel (or when
   * the subscription is closed). A caller that awaits it before its first full
   * sync cannot miss a change committed in between. It never rejects and does
   * not resolve while the database is unreachable: bound the wait.
   */
  readonly ready: Promise<void>;
  /** Idempotent. The last subscriber of a channel UNLISTENs; the last of a database closes its connection (awaited). */
  close(): Promise<void>;
}

export interface NotifyHubOptions {
  logger: DbLogger;
  /** Quiet period: a signal fires once no notification has arrived for this long. Default 100 ms. */
  debounceMs?: number;
  /** Longest a signal waits under a continuous stream of notifications. Default 1000 ms (at least debounceMs). */
  maxWaitMs?: number;
  /** Delay between reconnect attempts, exponential and jittered. Default 500 ms to 30 s. */
  reconnect?: BackoffPolicy;
  /**
   * A `SELECT 1` this often on an otherwise idle LISTEN connection: TCP
   * keepalive alone takes minutes to notice a peer that vanished, and a
   * listener that is silently gone loses every notification. Default 30 s.
   */
  heartbeatMs?: number;
}

interface Subscriber {
  readonly channel: string;
  readonly onSignal: (reason: NotifySignal) => void;
  /** Pending debounced 'notify'. */
  timer: NodeJS.Timeout | undefined;
  /** When the first notification of the pending burst arrived (performance.now()). */
  burstStart: number | undefined;
  closed: boolean;
  resolveReady: () => void;
}

/** One dedicated connection per database, shared by every channel and subscriber on it. */
interface Listener {
  readonly key: string;
  readonly settings: ConnectionSettings;
  readonly channels: Map<string, Set<Subscriber>>;
  /** The current connection, while it is up; LISTEN/UNLISTEN are sent on it directly. */
  client: pg.Client | undefined;
  /** Channels whose LISTEN the current connection has confirmed. */
  readonly listened: Set<string>;
  /** sslmode allow/prefer: whether the server took TLS, decided on the first connection. */
  tls: boolean | undefined;
  readonly closing: AbortController;
  /** The connection loop; settles once its last connection has ended. */
  done: Promise<void>;
}

const defaults = {
  debounceMs: 100,
  maxWaitMs: 1000,
  reconnect: { baseMs: 500, maxMs: 30_000 },
  heartbeatMs: 30_000,
} as const;

/** Tells LISTEN sessions apart from pooled ones in pg_stat_activity. */
const applicationName = 'rowcast-listen';
const keepAliveDelayMs = 60_000;
/** Bound on UNLISTEN and on ending a connection, so close() cannot hang on a dead socket. */
const shutdownTimeoutMs = 5000;
/** PostgreSQL refuses longer channel names (pg_notify: "channel name too long"). */
const maxChannelBytes = 63;

/**
 * LISTEN for `spec.changeDetection.mode: notify`.
 *
 * A LISTEN needs a session of its own: a pooled connection goes back to the
 * pool and its LISTEN with it (and transaction-mode PgBouncer has no sessions
 * at all). So the hub keeps one pg.Client per database, not per DQR: every
 * DQR on that database shares it, whatever its channel, and it closes when the
 * last channel goes.
 *
 * Notifications are only hints: the payload is ignored (the documented pattern
 * sends a key or nothing), a burst becomes one 'notify' per subscriber, and
 * after a reconnect every subscriber gets 'reconnect', since notifications
 * sent while no one listened are gone for good: the caller runs a full sync.
 */
export class NotifyHub {
  readonly #logger: DbLogger;
  readonly #debounceMs: number;
  readonly #maxWaitMs: number;
  readonly #reconnect: BackoffPolicy;
  readonly #heartbeatMs: number;
  readonly #listeners = new Map<string, Listener>();
  /** Listeners being retired, so closeAll can wait for them too. */
  readonly #retiring = new Set<Promise<void>>();
  /** Keys the listeners by connection identity without holding passwords in the clear (see poolKey). */
  readonly #hashKey = randomBytes(32);
  #closed = false;

  constructor(options: NotifyHubOptions) {
    this.#logger = options.logger;
    this.#debounceMs = positive(options.debounceMs, defaults.debounceMs, 'debounceMs');
    this.#maxWaitMs = Math.max(this.#debounceMs, positive(options.maxWaitMs, defaults.maxWaitMs, 'maxWaitMs'));
    this.#reconnect = {
      baseMs: positive(options.reconnect?.baseMs, defaults.reconnect.baseMs, 'reconnect.baseMs'),
      maxMs: positive(options.reconnect?.maxMs, defaults.reconnect.maxMs, 'reconnect.maxMs'),
    };
    this.#heartbeatMs = positive(options.heartbeatMs, defaults.heartbeatMs, 'heartbeatMs');
  }

  /** Databases with a LISTEN connection up right now. */
  get connections(): number {
    let live = 0;
    for (const listener of this.#listeners.values()) if (listener.client !== undefined) live += 1;
    return live;
  }

  subscribe(settings: ConnectionSettings, channel: string, onSignal: (reason: NotifySignal) => void): NotifySubscription {
    if (this.#closed) throw new DbError('ROWCAST_HUB_CLOSED', 'the notify hub is closed');
    validateConnectionSettings(settings);
    validateChannel(channel);
    const key = this.#listenerKey(settings);
    let listener = this.#listeners.get(key);
    if (listener === undefined) {
      listener = {
        key,
        settings,
        channels: new Map(),
        client: undefined,
        listened: new Set(),
        tls: undefined,
        closing: new AbortController(),
        done: Promise.resolve(),
      };
      this.#listeners.set(key, listener);
      const started = listener;
      // The loop handles its own failures; this only keeps a throwing logger from becoming an unhandled rejection.
      listener.done = this.#run(started).catch((error: unknown) => {
        this.#logFailure('LISTEN connection loop stopped', started, error, 0);
      });
    }
    let resolveReady = (): void => undefined;
    const ready = new Promise<void>((resolve) => {
      resolveReady = resolve;
    });
    const subscriber: Subscriber = { channel, onSignal, timer: undefined, burstStart: undefined, closed: false, resolveReady };
    let subscribers = listener.channels.get(channel);
    if (subscribers === undefined) {
      subscribers = new Set();
      listener.channels.set(channel, subscribers);
      subscribers.add(subscriber);
      // Connected: LISTEN now. Otherwise the connection loop LISTENs every channel once it is up.
      if (listener.client !== undefined) void this.#listen(listener, listener.client, [channel]);
    } else {
      subscribers.add(subscriber);
      // Already LISTENed on the live connection: no round trip to wait for.
      if (listener.listened.has(channel)) resolveReady();
    }
    const owner = listener;
    let closing: Promise<void> | undefined;
    return {
      ready,
      close: () => (closing ??= this.#unsubscribe(owner, subscriber)),
    };
  }

  /** Ends every connection and drops every subscriber; subscribe throws afterwards. */
  async closeAll(): Promise<void> {
    this.#closed = true;
    const listeners = [...this.#listeners.values()];
    for (const listener of listeners) {
      for (const subscribers of listener.channels.values()) for (const subscriber of subscribers) this.#drop(subscriber);
      listener.channels.clear();
      void this.#retire(listener);
    }
    while (this.#retiring.size > 0) await Promise.all([...this.#retiring]);
  }

  #listenerKey(settings: ConnectionSettings): string {
    // Pool sizing and timeouts do not change which database a LISTEN reaches: DQRs that differ only there share a connection.
    return poolKey({ ...settings, pool: { ...connectionDefaults.pool }, connectTimeoutMs: connectionDefaults.connectTimeoutMs }, this.#hashKey);
  }

  async #unsubscribe(listener: Listener, subscriber: Subscriber): Promise<void> {
    if (subscriber.closed) return;
    this.#drop(subscriber);
    const subscribers = listener.channels.get(subscriber.channel);
    if (subscribers === undefined || !subscribers.delete(subscriber) || subscribers.size > 0) return;
    listener.channels.delete(subscriber.channel);
    listener.listened.delete(subscriber.channel);
    if (listener.channels.size === 0) {
      await this.#retire(listener);
      return;
    }
    const client = listener.client;
    if (client === undefined) return;
    // A failure here means the connection is going; the loop reconnects and LISTENs only the channels left.
    await withTimeout(client.query(`UNLISTEN ${quoteIdentifier(subscriber.channel)}`), shutdownTimeoutMs).catch(() => undefined);
  }

  #drop(subscriber: Subscriber): void {
    subscriber.closed = true;
    clearTimeout(subscriber.timer);
    subscriber.timer = undefined;
    subscriber.resolveReady();
  }

  /** Stops the listener's loop and waits for its connection to end. */
  #retire(listener: Listener): Promise<void> {
    if (this.#listeners.get(listener.key) === listener) this.#listeners.delete(listener.key);
    listener.closing.abort();
    const done = listener.done;
    this.#retiring.add(done);
    void done.finally(() => this.#retiring.delete(done));
    return done;
  }

  /**
   * The connection loop of one database: connect, LISTEN every channel, wait
   * for the connection to drop, back off, repeat, until the listener retires.
   */
  async #run(listener: Listener): Promise<void> {
    const { signal } = listener.closing;
    // A function, not the property: TypeScript would otherwise keep `aborted` narrowed to false across awaits.
    const retired = (): boolean => signal.aborted;
    let failures = 0;
    let everListened = false;
    while (!retired()) {
      if (failures > 0) {
        const delay = backoffDelay(this.#reconnect, failures);
        this.#logger.debug('LISTEN connection retry scheduled', { database: listener.key, delayMs: delay, failures });
        await wait(delay, undefined, { signal }).catch(() => undefined);
        if (retired()) break;
      }
      let client: pg.Client;
      try {
        client = await this.#connect(listener);
      } catch (error) {
        failures += 1;
        this.#logFailure('LISTEN connection failed', listener, error, failures);
        continue;
      }
      const dropped = watchConnection(client, signal);
      if (retired()) {
        await endClient(client);
        break;
      }
      listener.client = client;
      listener.listened.clear();
      client.on('notification', (message: pg.Notification) => {
        this.#notified(listener, client, message.channel);
      });
      const heartbeat = this.#startHeartbeat(listener, client);
      try {
        await this.#listen(listener, client, [...listener.channels.keys()]);
      } catch (error) {
        // Usually the connection broke under the LISTEN and the drop below is on its way; a server that
        // refuses LISTEN (a standby: 25006) leaves the subscribers on their poll, which the log says.
        this.#logFailure('LISTEN failed', listener, error, failures + 1);
      }
      if (listener.client === client && !retired()) {
        failures = 0;
        if (everListened) {
          this.#logger.info('LISTEN connection re-established; subscribers run a full sync', { database: listener.key, channels: listener.channels.size });
          for (const subscribers of listener.channels.values()) for (const subscriber of subscribers) this.#signal(subscriber, 'reconnect');
        } else {
          this.#logger.info('LISTEN connection established', { database: listener.key, channels: listener.channels.size });
        }
        everListened = true;
      }
      const reason = await dropped;
      clearInterval(heartbeat);
      listener.client = undefined;
      listener.listened.clear();
      await endClient(client);
      if (reason !== 'closed') {
        failures = Math.max(failures, 1);
        this.#logFailure('LISTEN connection lost; notifications are missed until it is back', listener, reason, failures);
      }
    }
  }

  async #connect(listener: Listener): Promise<pg.Client> {
    const { settings } = listener;
    const plan = tlsPlan(settings);
    const attempt = async (ssl: false | NonNullable<pg.ClientConfig['ssl']>): Promise<pg.Client> => {
      // Every field explicit, as for pools: pg would otherwise fill gaps from PG* variables and ~/.pgpass.
      const client = new pg.Client({
        host: settings.host,
        port: settings.port,
        database: settings.database,
        user: settings.user,
        password: settings.password,
        ssl,
        connectionTimeoutMillis: settings.connectTimeoutMs,
        statement_timeout: settings.pool.statementTimeoutMs,
        application_name: applicationName,
        keepAlive: true,
        keepAliveInitialDelayMillis: keepAliveDelayMs,
      });
      // An 'error' without a listener crashes the process; watchConnection takes over once connected.
      client.on('error', () => undefined);
      try {
        await client.connect();
      } catch (error) {
        await endClient(client);
        throw error;
      }
      return client;
    };
    if (plan.kind === 'off') return attempt(false);
    if (plan.kind === 'on') return attempt(plan.options);
    if (listener.tls === false) return attempt(false);
    try {
      const client = await attempt(plan.options);
      listener.tls = true;
      return client;
    } catch (error) {
      // sslmode allow/prefer, as the pools do it: plain text only when the server says it has no TLS, and only before it ever took TLS.
      if (listener.tls !== undefined || !isTlsRefused(error)) throw error;
      listener.tls = false;
      this.#logger.info('database server does not offer TLS; connecting without it', { database: listener.key, sslmode: settings.sslmode });
      return attempt(false);
    }
  }

  /**
   * LISTENs the channels in one round trip and marks their subscribers ready.
   * Sent directly on the client: pg queues queries in order, so a LISTEN and
   * a later UNLISTEN of the same channel reach the server in that order.
   */
  #listen(listener: Listener, client: pg.Client, channels: string[]): Promise<void> {
    if (channels.length === 0) return Promise.resolve();
    const sql = channels.map((channel) => `LISTEN ${quoteIdentifier(channel)}`).join('; ');
    const listened = client.query(sql).then(() => {
      if (listener.client !== client) return;
      for (const channel of channels) {
        const subscribers = listener.channels.get(channel);
        if (subscribers === undefined) continue;
        listener.listened.add(channel);
        for (const subscriber of subscribers) subscriber.resolveReady();
      }
    });
    // A LISTEN sent from subscribe() has no one awaiting it; a failure there is a dying connection, which the loop handles.
    listened.catch(() => undefined);
    return listened;
  }

  #startHeartbeat(listener: Listener, client: pg.Client): NodeJS.Timeout {
    let inFlight = false;
    const timer = setInterval(() => {
      if (inFlight || listener.client !== client) return;
      inFlight = true;
      withTimeout(client.query('SELECT 1'), Math.min(this.#heartbeatMs, 10_000))
        .catch((error: unknown) => {
          if (listener.client !== client) return;
          this.#logFailure('LISTEN connection heartbeat failed; reconnecting', listener, error, 1);
          // With a query outstanding pg's end() destroys the socket, which ends the connection and wakes the loop.
          void endClient(client);
        })
        .finally(() => {
          inFlight = false;
        });
    }, this.#heartbeatMs);
    timer.unref();
    return timer;
  }

  #notified(listener: Listener, client: pg.Client, channel: string): void {
    if (listener.client !== client) return;
    const subscribers = listener.channels.get(channel);
    if (subscribers === undefined) return;
    for (const subscriber of subscribers) this.#debounce(subscriber);
  }

  /** A signal once the channel has been quiet for debounceMs, and at latest maxWaitMs after the burst's first notification. */
  #debounce(subscriber: Subscriber): void {
    if (subscriber.closed) return;
    const now = performance.now();
    subscriber.burstStart ??= now;
    clearTimeout(subscriber.timer);
    const wait = Math.max(0, Math.min(this.#debounceMs, subscriber.burstStart + this.#maxWaitMs - now));
    subscriber.timer = setTimeout(() => {
      this.#signal(subscriber, 'notify');
    }, wait);
  }

  #signal(subscriber: Subscriber, reason: NotifySignal): void {
    // A reconnect's full sync covers any burst still pending.
    clearTimeout(subscriber.timer);
    subscriber.timer = undefined;
    subscriber.burstStart = undefined;
    if (subscriber.closed) return;
    try {
      subscriber.onSignal(reason);
    } catch (error) {
      this.#logger.error('notify subscriber threw', { channel: subscriber.channel, reason, error: classifyDbError(error).message });
    }
  }

  #logFailure(msg: string, listener: Listener, error: unknown, failures: number): void {
    const { retryable, code, message } = classifyDbError(error, { secrets: [listener.settings.password] });
    const fields = { database: listener.key, code, retryable, failures, error: message };
    if (retryable) this.#logger.warn(msg, fields);
    else this.#logger.error(msg, fields);
  }
}

/** Resolves 'closed' when the listener retires, or with the error (or 'ended') once the connection drops. */
function watchConnection(client: pg.Client, signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    client.on('error', resolve);
    client.once('end', () => {
      resolve(new Error('Connection terminated unexpectedly'));
    });
    if (signal.aborted) resolve('closed');
    else signal.addEventListener('abort', () => resolve('closed'), { once: true });
  });
}

/** Ends a client within shutdownTimeoutMs, whatever state it is in. */
async function endClient(client: pg.Client): Promise<void> {
  await withTimeout(client.end(), shutdownTimeoutMs).catch(() => undefined);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`no answer within ${ms} ms`));
      }, ms);
    }),
  ]).finally(() => {
    clearTimeout(timer);
  });
}


function validateChannel(channel: string): void {
  const fail = (why: string): never => {
    throw new DbError('ROWCAST_INVALID_IDENTIFIER', `spec.changeDetection.channel: ${JSON.stringify(channel.slice(0, 80))} ${why}`);
  };
  if (channel === '') fail('is empty');
  if (channel.includes('\0')) fail('holds a NUL character');
  if (Buffer.byteLength(channel) > maxChannelBytes) fail(`is longer than ${maxChannelBytes} bytes, which PostgreSQL refuses`);
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined || value === 0) return fallback;
  if (!Number.isFinite(value) || value < 0) throw new DbError('ROWCAST_INVALID_OPTIONS', `${name} must be a positive number, got ${value}`);
  return value;
}
