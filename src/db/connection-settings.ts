import { createHmac } from 'node:crypto';
import { DbError } from './errors.ts';

/** libpq's sslmode values; docs/database.md says how each maps onto pg. */
export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export const sslModes: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

export interface PoolSettings {
  max: number;
  idleTimeoutMs: number;
  statementTimeoutMs: number;
}

export interface ConnectionSettings {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  sslmode: SslMode;
  pool: PoolSettings;
  /** Always set: pg's own default (0) waits for ever on a server that never answers. */
  connectTimeoutMs: number;
  /**
   * PEM of the CA(s) that signed the server certificate, for verify-ca and
   * verify-full (and require, which then verifies like verify-ca, as libpq
   * does when it finds a root certificate). Without it Node's built-in roots
   * (plus NODE_EXTRA_CA_CERTS) are trusted.
   */
  sslRootCert?: string;
}

/** Settings as they come from a Secret and a spec: anything missing or 0 takes the default. */
export interface ConnectionSettingsInput {
  host: string;
  port?: number | undefined;
  database: string;
  user: string;
  password: string;
  sslmode?: SslMode | undefined;
  pool?: Partial<PoolSettings> | undefined;
  connectTimeoutMs?: number | undefined;
  sslRootCert?: string | undefined;
}

/** libpq's port and sslmode, pg's pool size and idle timeout, and bounded waits everywhere. */
export const connectionDefaults: Readonly<{ port: number; sslmode: SslMode; pool: Readonly<PoolSettings>; connectTimeoutMs: number }> = Object.freeze({
  port: 5432,
  sslmode: 'prefer',
  pool: Object.freeze({ max: 10, idleTimeoutMs: 10_000, statementTimeoutMs: 30_000 }),
  connectTimeoutMs: 10_000,
});

/** 0 means "the default", never "unlimited", as elsewhere in Rowcast. */
function orDefault(value: number | undefined, fallback: number): number {
  return value === undefined || value === 0 ? fallback : value;
}

export function withConnectionDefaults(input: ConnectionSettingsInput): ConnectionSettings {
  const settings: ConnectionSettings = {
    host: input.host,
    port: orDefault(input.port, connectionDefaults.port),
    database: input.database,
    user: input.user,
    password: input.password,
    sslmode: input.sslmode ?? connectionDefaults.sslmode,
    pool: {
      max: orDefault(input.pool?.max, connectionDefaults.pool.max),
      idleTimeoutMs: orDefault(input.pool?.idleTimeoutMs, connectionDefaults.pool.idleTimeoutMs),
      statementTimeoutMs: orDefault(input.pool?.statementTimeoutMs, connectionDefaults.pool.statementTimeoutMs),
    },
    connectTimeoutMs: orDefault(input.connectTimeoutMs, connectionDefaults.connectTimeoutMs),
  };
  if (input.sslRootCert !== undefined && input.sslRootCert !== '') settings.sslRootCert = input.sslRootCert;
  return settings;
}

/** Throws a terminal DbError naming the first bad field; never echoes the password. */
export function validateConnectionSettings(settings: ConnectionSettings): void {
  const fail = (field: string, why: string): never => {
    throw new DbError('ROWCAST_INVALID_SETTINGS', `database connection setting ${field} ${why}`);
  };
  if (settings.host === '') fail('host', 'is empty');
  if (settings.database === '') fail('database', 'is empty');
  if (settings.user === '') fail('user', 'is empty');
  if (!Number.isInteger(settings.port) || settings.port < 1 || settings.port > 65_535) fail('port', `must be 1-65535, got ${settings.port}`);
  if (!sslModes.includes(settings.sslmode)) fail('sslmode', `must be one of ${sslModes.join(', ')}, got ${JSON.stringify(settings.sslmode)}`);
  const positive: [string, number][] = [
    ['pool.max', settings.pool.max],
    ['pool.idleTimeoutMs', settings.pool.idleTimeoutMs],
    ['pool.statementTimeoutMs', settings.pool.statementTimeoutMs],
    ['connectTimeoutMs', settings.connectTimeoutMs],
  ];
  for (const [field, value] of positive) {
    // 0 would switch pg's timeouts off (wait for ever); withConnectionDefaults turns 0 into the default.
    if (!Number.isInteger(value) || value < 1) fail(field, `must be a positive integer, got ${value}`);
  }
}

/**
 * The pool's identity. Everything that changes how a connection is made is in
 * it; the password and CA only as a keyed hash, so the key can be logged and a
 * rotated password still yields a new key. The hash key is random per registry:
 * a logged key is no help in guessing the password offline.
 */
export function poolKey(settings: ConnectionSettings, hashKey: Buffer): string {
  const credential = createHmac('sha256', hashKey)
    .update(JSON.stringify([settings.password, settings.sslRootCert ?? null]))
    .digest('hex')
    .slice(0, 16);
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
  const { max, idleTimeoutMs, statementTimeoutMs } = settings.pool;
  return (
    `${encodeURIComponent(settings.user)}@${host}:${settings.port}/${encodeURIComponent(settings.database)}` +
    `?sslmode=${settings.sslmode}&max=${max}&idleTimeoutMs=${idleTimeoutMs}&statementTimeoutMs=${statementTimeoutMs}` +
    `&connectTimeoutMs=${settings.connectTimeoutMs}#${credential}`
  );
}
