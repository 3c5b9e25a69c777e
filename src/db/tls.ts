import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import type { ConnectionSettings } from './connection-settings.ts';

/**
 * How a pool's connections use TLS. pg takes only "TLS with these options" or
 * "no TLS"; libpq's allow and prefer ("TLS if the server offers it") have no pg
 * equivalent, so they become `negotiate`, which NegotiatingPool implements.
 */
export type TlsPlan =
  | { kind: 'off' }
  | { kind: 'on'; options: ConnectionOptions }
  | { kind: 'negotiate'; options: ConnectionOptions };

// Node verifies the chain and the host name by default; verify-ca keeps the chain check only.
const skipHostName = (): undefined => undefined;

export function tlsPlan(settings: ConnectionSettings): TlsPlan {
  // libpq never uses TLS over a Unix-domain socket, whatever sslmode says.
  if (settings.host.startsWith('/')) return { kind: 'off' };
  const ca = settings.sslRootCert === undefined ? {} : { ca: settings.sslRootCert };
  switch (settings.sslmode) {
    case 'disable':
      return { kind: 'off' };
    case 'allow':
    case 'prefer':
      // Encryption without authentication, exactly libpq's prefer: a certificate is not checked.
      return { kind: 'negotiate', options: { rejectUnauthorized: false } };
    case 'require':
      // libpq: require with a root certificate behaves as verify-ca.
      return settings.sslRootCert === undefined
        ? { kind: 'on', options: { rejectUnauthorized: false } }
        : { kind: 'on', options: { ...ca, rejectUnauthorized: true, checkServerIdentity: skipHostName } };
    case 'verify-ca':
      return { kind: 'on', options: { ...ca, rejectUnauthorized: true, checkServerIdentity: skipHostName } };
    case 'verify-full':
      return { kind: 'on', options: { ...ca, rejectUnauthorized: true } };
  }
}

/** pg's error when the server answers the SSLRequest with 'N' (lib/connection.js). */
export function isTlsRefused(error: unknown): boolean {
  return error instanceof Error && error.message === 'The server does not support SSL connections';
}

type ConnectCallback = (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void;

/**
 * A pool for sslmode allow/prefer. The first connection tries TLS; if the
 * server answers that it has none, the pool remembers that and connects
 * without TLS from then on (and retries that first connection at once, so
 * callers never see the refusal). Once the server has accepted TLS the pool
 * never falls back, so a later downgrade attempt fails instead of succeeding
 * silently. The decision lives as long as the pool: a server that changes its
 * TLS setup is seen by the next pool (settings change or restart).
 */
export class NegotiatingPool extends pg.Pool {
  readonly #state: { tls: boolean | undefined };
  readonly #onDecision: (tls: boolean) => void;

  constructor(config: pg.PoolConfig, tlsOptions: ConnectionOptions, onDecision: (tls: boolean) => void) {
    const state: { tls: boolean | undefined } = { tls: undefined };
    // pg-pool builds every client from its own options; the class below picks TLS per client from the shared state.
    class NegotiatingClient extends pg.Client {
      constructor(clientConfig: pg.ClientConfig) {
        // pg-pool keeps the password as a non-enumerable property, which a spread would drop.
        super({ ...clientConfig, password: clientConfig.password, ssl: state.tls === false ? false : tlsOptions });
      }
    }
    super({ ...config, Client: NegotiatingClient as unknown as NonNullable<pg.PoolConfig['Client']> });
    this.#state = state;
    this.#onDecision = onDecision;
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(callback: ConnectCallback): void;
  override connect(callback?: ConnectCallback): Promise<pg.PoolClient> | undefined {
    const connected = this.#state.tls === undefined ? this.#firstConnect() : super.connect();
    if (callback === undefined) return connected;
    connected.then(
      (client) => {
        callback(undefined, client, (release) => {
          client.release(release as Error | boolean | undefined);
        });
      },
      (error: unknown) => {
        callback(error instanceof Error ? error : new Error(String(error)), undefined, () => undefined);
      },
    );
    return undefined;
  }

  async #firstConnect(): Promise<pg.PoolClient> {
    try {
      const client = await super.connect();
      this.#decide(true);
      return client;
    } catch (error) {
      if (!isTlsRefused(error)) throw error;
      this.#decide(false);
      return super.connect();
    }
  }

  #decide(tls: boolean): void {
    if (this.#state.tls !== undefined) return;
    this.#state.tls = tls;
    this.#onDecision(tls);
  }
}
