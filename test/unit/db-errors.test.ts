import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyDbError, connectionDefaults, DbError, withConnectionDefaults, type DbReachability } from '../../src/db/index.ts';

/** Shaped like pg's DatabaseError: a message and a SQLSTATE code. */
function serverError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code, severity: 'ERROR' });
}

function nodeError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

// The last column: did the database answer, refuse the login, or not answer at all (DatabaseConnected says so).
const cases: readonly (readonly [string, unknown, boolean, string | undefined, DbReachability])[] = [
  ['syntax error', serverError('42601', 'syntax error at or near "SELEC"'), false, '42601', 'answered'],
  ['undefined table', serverError('42P01', 'relation "t" does not exist'), false, '42P01', 'answered'],
  ['undefined column', serverError('42703', 'column "c" does not exist'), false, '42703', 'answered'],
  ['read-only violation', serverError('25006', 'cannot execute INSERT in a read-only transaction'), false, '25006', 'answered'],
  ['role may not log in', serverError('28000', 'role "u" is not permitted to log in'), false, '28000', 'login-refused'],
  ['permission denied', serverError('42501', 'permission denied for table t'), false, '42501', 'answered'],
  ['wrong password', serverError('28P01', 'password authentication failed for user "u"'), false, '28P01', 'login-refused'],
  ['no such database', serverError('3D000', 'database "d" does not exist'), false, '3D000', 'login-refused'],
  ['division by zero', serverError('22012', 'division by zero'), false, '22012', 'answered'],
  ['admin shutdown', serverError('57P01', 'terminating connection due to administrator command'), true, '57P01', 'unreachable'],
  ['crash shutdown', serverError('57P02', 'terminating connection because of crash of another server process'), true, '57P02', 'unreachable'],
  ['starting up', serverError('57P03', 'the database system is starting up'), true, '57P03', 'unreachable'],
  ['statement timeout', serverError('57014', 'canceling statement due to statement timeout'), true, '57014', 'answered'],
  ['too many connections', serverError('53300', 'sorry, too many clients already'), true, '53300', 'unreachable'],
  ['connection failure', serverError('08006', 'connection failure'), true, '08006', 'unreachable'],
  ['connection does not exist', serverError('08003', 'connection does not exist'), true, '08003', 'unreachable'],
  ['serialization failure', serverError('40001', 'could not serialize access'), true, '40001', 'answered'],
  ['deadlock', serverError('40P01', 'deadlock detected'), true, '40P01', 'answered'],
  ['lock not available', serverError('55P03', 'could not obtain lock'), true, '55P03', 'answered'],
  ['refused', nodeError('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.1:5432'), true, 'ECONNREFUSED', 'unreachable'],
  ['reset', nodeError('ECONNRESET', 'read ECONNRESET'), true, 'ECONNRESET', 'unreachable'],
  ['DNS', nodeError('ENOTFOUND', 'getaddrinfo ENOTFOUND db'), true, 'ENOTFOUND', 'unreachable'],
  ['terminated', new Error('Connection terminated unexpectedly'), true, undefined, 'unreachable'],
  ['connect timeout', new Error('timeout exceeded when trying to connect'), true, undefined, 'unreachable'],
  ['TLS refused', new Error('The server does not support SSL connections'), false, undefined, 'unreachable'],
  ['untrusted certificate', nodeError('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unable to verify the first certificate'), false, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unreachable'],
  ['wrong host name', nodeError('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames"), false, 'ERR_TLS_CERT_ALTNAME_INVALID', 'unreachable'],
  ['own terminal error', new DbError('ROWCAST_DUPLICATE_COLUMN', 'two columns named "id"'), false, 'ROWCAST_DUPLICATE_COLUMN', 'answered'],
  ['abort', new DOMException('This operation was aborted', 'AbortError'), true, 'ABORT_ERR', 'unreachable'],
];

for (const [name, error, retryable, code, reachability] of cases) {
  test(`classifyDbError: ${name} is ${retryable ? 'retryable' : 'terminal'}, the database ${reachability}`, () => {
    const classified = classifyDbError(error);
    assert.equal(classified.retryable, retryable);
    assert.equal(classified.reachability, reachability);
    assert.equal(classified.code, code);
    assert.equal(classified.message, (error as Error).message);
  });
}

test('classifyDbError: a password in a connection URL or named as a secret is blanked out', () => {
  const error = new Error("could not parse postgresql://app:s3cret-pw@db:5432/x, nor 'hunter22'");
  const classified = classifyDbError(error, { secrets: ['hunter22'] });
  assert.equal(classified.message, "could not parse postgresql://app:***@db:5432/x, nor '***'");
});

test('classifyDbError: things that are not errors still give an answer', () => {
  assert.deepEqual(classifyDbError('boom'), { retryable: true, reachability: 'unreachable', message: 'boom' });
  assert.deepEqual(classifyDbError({}), { retryable: true, reachability: 'unreachable', message: 'unknown database error' });
});

test('withConnectionDefaults: libpq port and sslmode, pg pool defaults, bounded connect timeout', () => {
  const settings = withConnectionDefaults({ host: 'db', database: 'app', user: 'u', password: 'p' });
  assert.deepEqual(settings, {
    host: 'db',
    port: 5432,
    database: 'app',
    user: 'u',
    password: 'p',
    sslmode: 'prefer',
    pool: { max: 10, idleTimeoutMs: 10_000, statementTimeoutMs: 30_000 },
    connectTimeoutMs: 10_000,
  });
  assert.equal(connectionDefaults.sslmode, 'prefer');
});

test('withConnectionDefaults: 0 means the default, never unlimited; given values are kept', () => {
  const settings = withConnectionDefaults({
    host: 'db',
    port: 0,
    database: 'app',
    user: 'u',
    password: 'p',
    sslmode: 'verify-full',
    pool: { max: 0, idleTimeoutMs: 5, statementTimeoutMs: 0 },
    connectTimeoutMs: 0,
    sslRootCert: 'PEM',
  });
  assert.equal(settings.port, 5432);
  assert.deepEqual(settings.pool, { max: 10, idleTimeoutMs: 5, statementTimeoutMs: 30_000 });
  assert.equal(settings.connectTimeoutMs, 10_000);
  assert.equal(settings.sslmode, 'verify-full');
  assert.equal(settings.sslRootCert, 'PEM');
});
