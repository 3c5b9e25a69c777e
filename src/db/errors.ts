/**
 * An error this module raises itself, about a query's shape or a pool's
 * settings rather than the server's verdict. `code` is stable for callers and
 * tests; such an error is always terminal: the query or the settings have to
 * change.
 */
export class DbError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DbError';
    this.code = code;
  }
}

/** The connection died or went silent in the middle of a statement: the server may be fine, so this is retried. */
export class DbConnectionError extends Error {
  readonly code = 'ROWCAST_CONNECTION_LOST';

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DbConnectionError';
  }
}

/**
 * What the failure says about the database itself: it answered (the query or
 * its rights are at fault), it refused this login, or it could not be reached.
 */
export type DbReachability = 'answered' | 'login-refused' | 'unreachable';

export interface DbErrorClassification {
  retryable: boolean;
  reachability: DbReachability;
  /** SQLSTATE for server errors, the Node/OpenSSL code for socket and TLS errors, or a DbError code. */
  code?: string;
  message: string;
}

export interface ClassifyOptions {
  /** Values to blank out of the message wherever they appear (passwords known to the caller). */
  secrets?: readonly string[];
}

/**
 * SQLSTATE classes that mean "the database is (for now) unavailable or busy":
 * 08 connection exception, 53 insufficient resources (53300 too many
 * connections), 57 operator intervention (57P01 admin shutdown, 57014 query
 * canceled by statement_timeout), 58 system error, 40 transaction rollback
 * (serialization failure, deadlock). Everything else the server says is about
 * the query or its rights (42601 syntax, 42P01/42703 undefined, 42501
 * permission, 25006 read-only, 28P01 password) and will fail again the same way.
 */
const retryableClasses = new Set(['08', '53', '57', '58', '40']);
const retryableStates = new Set(['55P03' /* lock_not_available */, '55006' /* object_in_use */]);

/** Node socket and DNS failures: the server or the network path is away. */
const retryableNodeCodes = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN',
  'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'ABORT_ERR',
]);

/** The server refused TLS or the certificate did not verify: a settings problem, not an outage. */
const terminalMessages = [/does not support SSL/i, /error establishing an SSL connection/i];

function scrub(message: string, secrets: readonly string[]): string {
  // A connection URL can carry its password; keep the user and host, drop the secret.
  let out = message.replace(/(postgres(?:ql)?:\/\/[^:/?#@\s]*:)[^@\s]*@/gi, '$1***@');
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('***');
  }
  return out;
}

/**
 * SQLSTATEs sent while the session is being set up: 28 is a refused login
 * (28P01 bad password, 28000 a role that may not log in), 3D000 a database
 * that does not exist; 08, 53300 and 57P03 say the server cannot take the
 * session now.
 */
function reachabilityOf(sqlState: string): DbReachability {
  if (sqlState.startsWith('28') || sqlState === '3D000') return 'login-refused';
  if (sqlState.startsWith('08') || sqlState === '53300' || sqlState === '57P01' || sqlState === '57P02' || sqlState === '57P03') return 'unreachable';
  return 'answered';
}

function stringProp(value: object, key: string): string | undefined {
  const v = (value as Record<string, unknown>)[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * Sorts a database error once into retryable (unavailability: back off and
 * try again, and never read it as "zero rows") and terminal (fix the query,
 * the grants or the settings). An error with no SQLSTATE that is not a known
 * TLS or settings failure counts as retryable: pg raises plain Errors with
 * only a message for connections that end or never come ("Connection
 * terminated unexpectedly", "timeout exceeded when trying to connect").
 */
export function classifyDbError(error: unknown, options: ClassifyOptions = {}): DbErrorClassification {
  const secrets = options.secrets ?? [];
  if (typeof error !== 'object' || error === null) {
    return { retryable: true, reachability: 'unreachable', message: scrub(String(error), secrets) };
  }
  const message = scrub(stringProp(error, 'message') ?? 'unknown database error', secrets);
  const code = stringProp(error, 'code');
  const withCode = (retryable: boolean, reachability: DbReachability = 'unreachable'): DbErrorClassification =>
    code === undefined ? { retryable, reachability, message } : { retryable, reachability, code, message };

  // A DbError is about the query's shape or the settings, found before or after the server answered.
  if (error instanceof DbError) return withCode(false, 'answered');
  if (error instanceof DbConnectionError) return withCode(true, 'unreachable');
  if (error instanceof Error && error.name === 'AbortError') return { retryable: true, reachability: 'unreachable', code: 'ABORT_ERR', message };

  // SQLSTATE: five characters, digits and upper-case letters.
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) {
    return withCode(retryableClasses.has(code.slice(0, 2)) || retryableStates.has(code), reachabilityOf(code));
  }
  if (code !== undefined && retryableNodeCodes.has(code)) return withCode(true);
  // TLS verification failures carry OpenSSL codes (DEPTH_ZERO_SELF_SIGNED_CERT, ERR_TLS_CERT_ALTNAME_INVALID, …).
  if (code !== undefined && (/CERT|SELF_SIGNED|ERR_TLS|ERR_SSL|UNABLE_TO_/.test(code))) return withCode(false);
  if (terminalMessages.some((re) => re.test(message))) return withCode(false);
  return withCode(true);
}
