import { REASONS, WATCH_LABEL, type DatabaseQueryResource } from '../api/index.ts';
import { withConnectionDefaults, type ConnectionSettings, type SslMode } from '../db/index.ts';
import { readSecretKeys, type SecretLike } from '../runtime/index.ts';
import type { SecretScrubber } from '../telemetry/index.ts';

/** Why a referenced Secret is not there: Rowcast sees only the Secrets labelled for it. */
export function unwatchedSecret(namespace: string, name: string, field: string): string {
  return `Secret ${namespace}/${name} (${field}) not found among the Secrets labelled ${WATCH_LABEL}=true; Rowcast reads only those: label it with kubectl -n ${namespace} label secret ${name} ${WATCH_LABEL}=true`;
}

export type ConnectionFromSecret = { ok: true; settings: ConnectionSettings } | { ok: false; reason: string; message: string };

/**
 * A DQR's connection settings from its Secret, under the keys the spec names
 * (the ancestor's defaults: host, port, username, password, dbname, sslmode).
 * The password is registered with the scrubber as it is read.
 */
export function connectionSettingsFromSecret(dqr: DatabaseQueryResource, namespace: string, secret: SecretLike | undefined, scrubber: SecretScrubber): ConnectionFromSecret {
  const ref = dqr.spec.database.connectionSecretRef;
  if (secret === undefined) return { ok: false, reason: REASONS.secretNotFound, message: unwatchedSecret(namespace, ref.name, 'spec.database.connectionSecretRef') };
  const read = readSecretKeys(
    secret,
    { host: ref.hostKey, port: ref.portKey, user: ref.userKey, password: ref.passwordKey, database: ref.dbNameKey, sslmode: ref.sslModeKey },
    new Set(['port', 'sslmode']),
    scrubber,
  );
  if (!read.ok) return { ok: false, reason: REASONS.secretInvalid, message: `Secret ${namespace}/${ref.name} lacks key(s) ${read.missing.join(', ')} (spec.database.connectionSecretRef)` };
  const v = read.values;
  const port = v['port'] === undefined ? undefined : Number(v['port']);
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
    return { ok: false, reason: REASONS.secretInvalid, message: `Secret ${namespace}/${ref.name} key ${ref.portKey}: not a port number` };
  }
  // A URL here would carry its password into pg's host name, and from there into errors and spans.
  const host = v['host'] ?? '';
  if (host.includes('://') || host.includes('@') || /\s/.test(host)) {
    return {
      ok: false,
      reason: REASONS.secretInvalid,
      message: `Secret ${namespace}/${ref.name} key ${ref.hostKey}: not a host name (it looks like a URL); put only the host there and the port, user, password and database under their own keys`,
    };
  }
  const pool = dqr.spec.database.pool;
  return {
    ok: true,
    settings: withConnectionDefaults({
      host,
      port,
      database: v['database'] ?? '',
      user: v['user'] ?? '',
      password: v['password'] ?? '',
      sslmode: v['sslmode'] as SslMode | undefined,
      pool: { max: pool.max, idleTimeoutMs: pool.idleTimeoutMs, statementTimeoutMs: pool.statementTimeoutMs },
    }),
  };
}
