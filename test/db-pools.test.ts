import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import {
  classifyDbError,
  DbError,
  PoolRegistry,
  readRows,
  withConnectionDefaults,
  type ConnectionSettings,
  type ConnectionSettingsInput,
} from '../src/db/index.ts';
import { startPostgres, type RunningPostgres } from './harness/postgres.ts';
import { freePort, waitFor } from './harness/ports.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';
import { dbSettings, recordingLogger, rejection } from './helpers/db.ts';

const env = await openTestEnv('db-pools');
failOnLeaks(env);

function settings(overrides: Partial<ConnectionSettingsInput> = {}): ConnectionSettings {
  return dbSettings(env.db, overrides);
}

/** The first column of the first row. */
async function one<T>(pool: pg.Pool, sql: string): Promise<T> {
  const { rows } = await pool.query<[T]>({ text: sql, rowMode: 'array' });
  return rows[0]?.[0] as T;
}

test('equal settings share one pool; the last release ends it', async () => {
  const registry = new PoolRegistry({ logger: recordingLogger().logger });
  const first = registry.acquire(settings());
  const second = registry.acquire(settings());
  assert.equal(first.pool, second.pool);
  assert.equal(first.key, second.key);
  assert.equal(registry.size, 1);
  assert.ok(!first.key.includes(env.db.password), first.key);
  assert.equal(await one(first.pool, 'SELECT 1'), 1);

  await first.release();
  await first.release(); // idempotent: must not take the second lease's share
  assert.equal(registry.size, 1);
  assert.equal(second.pool.ended, false);
  assert.equal(await one(second.pool, 'SELECT 2'), 2);

  await second.release();
  assert.equal(registry.size, 0);
  assert.equal(second.pool.ended, true);

  const third = registry.acquire(settings());
  assert.notEqual(third.pool, first.pool, 'a fresh pool after the old one ended');
  await third.release();
});

test('anything that changes a connection makes a separate pool', async () => {
  const registry = new PoolRegistry({ logger: recordingLogger().logger });
  const base = registry.acquire(settings());
  const variants = [
    settings({ password: 'another-password' }),
    settings({ sslmode: 'disable' }),
    settings({ pool: { max: 3 } }),
    settings({ pool: { statementTimeoutMs: 1000 } }),
    settings({ pool: { idleTimeoutMs: 1000 } }),
    settings({ connectTimeoutMs: 1000 }),
    settings({ user: 'someone_else' }),
    settings({ database: 'postgres' }),
  ];
  const leases = variants.map((variant) => registry.acquire(variant));
  assert.equal(registry.size, 1 + variants.length);
  assert.equal(new Set(leases.map((lease) => lease.pool)).size, variants.length);
  assert.ok(leases.every((lease) => lease.pool !== base.pool));
  assert.ok(leases.every((lease) => !lease.key.includes('another-password')));
  // Same password in another registry: the keyed hash differs, so keys are no help in matching passwords across processes.
  const other = new PoolRegistry({ logger: recordingLogger().logger });
  const elsewhere = other.acquire(settings());
  assert.notEqual(elsewhere.key, base.key);
  await Promise.all([...leases, base, elsewhere].map((lease) => lease.release()));
  assert.equal(registry.size, 0);
});

test('a rotated password gets a new pool; the old one serves its leases until they go', async () => {
  const { logger } = recordingLogger();
  const registry = new PoolRegistry({ logger });
  const oldLease = registry.acquire(settings());
  assert.equal(await one(oldLease.pool, 'SELECT 1'), 1);
  const rotated = randomBytes(12).toString('base64url');
  await env.sql(`ALTER ROLE CURRENT_USER PASSWORD '${rotated}'`);
  try {
    const newLease = registry.acquire(settings({ password: rotated }));
    assert.notEqual(newLease.key, oldLease.key);
    assert.equal(registry.size, 2);
    assert.equal(await one(newLease.pool, 'SELECT 2'), 2);
    // The old pool's idle connection authenticated before the change and still works.
    assert.equal(await one(oldLease.pool, 'SELECT 3'), 3);
    await oldLease.release();
    assert.equal(oldLease.pool.ended, true);
    assert.equal(registry.size, 1);
    assert.equal(await one(newLease.pool, 'SELECT 4'), 4);
    await newLease.release();
  } finally {
    await env.sql(`ALTER ROLE CURRENT_USER PASSWORD '${env.db.password}'`);
  }
});

test('pools carry the settings: timeouts, size, application_name, type parsers', async () => {
  const registry = new PoolRegistry({ logger: recordingLogger().logger });
  const lease = registry.acquire(settings({ pool: { max: 3, idleTimeoutMs: 2500, statementTimeoutMs: 1234 }, connectTimeoutMs: 4321 }));
  try {
    assert.equal(lease.pool.options.max, 3);
    assert.equal(lease.pool.options.idleTimeoutMillis, 2500);
    assert.equal(lease.pool.options.connectionTimeoutMillis, 4321);
    assert.equal(await one(lease.pool, "SELECT current_setting('statement_timeout')"), '1234ms');
    assert.equal(await one(lease.pool, "SELECT current_setting('application_name')"), 'rowcast');
    // pool.query (used for change detection and write-back) sees the same types as readRows.
    assert.equal(await one(lease.pool, "SELECT '2024-01-02 03:04:05+00'::timestamptz"), '2024-01-02T03:04:05Z');
    assert.equal(await one(lease.pool, 'SELECT 1::int8'), '1');
  } finally {
    await lease.release();
  }
  const defaults = registry.acquire(settings());
  try {
    assert.equal(defaults.pool.options.max, 10);
    assert.equal(defaults.pool.options.idleTimeoutMillis, 10_000);
    assert.equal(defaults.pool.options.connectionTimeoutMillis, 10_000);
    assert.equal(await one(defaults.pool, "SELECT current_setting('statement_timeout')"), '30s');
  } finally {
    await defaults.release();
  }
});

test('an error on an idle connection is logged without secrets and reported, and does not crash the process', async () => {
  const { logger, entries } = recordingLogger();
  const reported: [string, Error][] = [];
  const registry = new PoolRegistry({
    logger,
    onPoolError: (key, error) => {
      reported.push([key, error]);
      throw new Error('a throwing callback must not crash the process either');
    },
  });
  const lease = registry.acquire(settings());
  try {
    const pid = await one<number>(lease.pool, 'SELECT pg_backend_pid()');
    assert.equal(lease.pool.idleCount, 1);
    await env.sql('SELECT pg_terminate_backend($1, 5000)', [pid]);
    await waitFor('the pool to report the dead connection', () => Promise.resolve(reported.length > 0), 5000, 20);
    const [key, error] = reported[0] ?? assert.fail('nothing reported');
    assert.equal(key, lease.key);
    assert.equal(classifyDbError(error).retryable, true);
    assert.equal(lease.pool.totalCount, 0, 'the dead client left the pool');
    const warning = entries.find((entry) => entry.level === 'warn' && entry.msg === 'idle database connection failed');
    assert.ok(warning !== undefined);
    assert.equal(warning.fields?.['pool'], lease.key);
    assert.ok(entries.some((entry) => entry.level === 'error' && entry.msg === 'onPoolError threw'));
    assert.ok(!JSON.stringify(entries).includes(env.db.password));
    // Still alive, and the pool makes a new connection.
    assert.equal(await one(lease.pool, 'SELECT 5'), 5);
  } finally {
    await lease.release();
  }
});

test('connection failures are classified: refused and unanswered are retryable, a wrong password is terminal', async () => {
  const registry = new PoolRegistry({ logger: recordingLogger().logger });

  const closedPort = await freePort();
  const refused = registry.acquire(settings({ port: closedPort, sslmode: 'disable' }));
  const refusedError = classifyDbError(await rejection(refused.pool.query('SELECT 1')));
  assert.deepEqual([refusedError.code, refusedError.retryable], ['ECONNREFUSED', true]);
  await refused.release();

  // A server that accepts and then never answers: pg's default would wait for ever.
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const address = silent.address();
  assert.ok(address !== null && typeof address === 'object');
  try {
    const hung = registry.acquire(settings({ port: address.port, connectTimeoutMs: 300 }));
    const started = performance.now();
    const hungError = classifyDbError(await rejection(hung.pool.query('SELECT 1')));
    assert.ok(performance.now() - started < 3000);
    assert.equal(hungError.retryable, true, hungError.message);
    await hung.release();
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }

  const wrong = registry.acquire(settings({ password: 'wrong-password-1234' }));
  const wrongError = classifyDbError(await rejection(wrong.pool.query('SELECT 1')), { secrets: ['wrong-password-1234'] });
  assert.deepEqual([wrongError.code, wrongError.retryable], ['28P01', false]);
  assert.ok(!wrongError.message.includes('wrong-password-1234'));
  await wrong.release();
});

test('invalid settings are refused with the field named and no password', () => {
  const registry = new PoolRegistry({ logger: recordingLogger().logger });
  const bad: [Partial<ConnectionSettings>, RegExp][] = [
    [{ port: 70_000 }, /port/],
    [{ host: '' }, /host/],
    [{ sslmode: 'maybe' as ConnectionSettings['sslmode'] }, /sslmode/],
    [{ pool: { max: 0, idleTimeoutMs: 1, statementTimeoutMs: 1 } }, /pool\.max/],
    [{ connectTimeoutMs: -1 }, /connectTimeoutMs/],
  ];
  for (const [overrides, field] of bad) {
    assert.throws(
      () => registry.acquire({ ...settings(), ...overrides }),
      (error: unknown) => error instanceof DbError && error.code === 'ROWCAST_INVALID_SETTINGS' && field.test(error.message) && !error.message.includes(env.db.password),
    );
  }
  assert.equal(registry.size, 0);
});

test('closeAll ends every pool, leased or not; later releases are harmless and acquire refuses', async () => {
  const registry = new PoolRegistry({ logger: recordingLogger().logger });
  const a = registry.acquire(settings());
  const b = registry.acquire(settings({ pool: { max: 2 } }));
  await Promise.all([one(a.pool, 'SELECT 1'), one(b.pool, 'SELECT 1')]);
  await registry.closeAll();
  assert.equal(registry.size, 0);
  assert.ok(a.pool.ended && b.pool.ended);
  await a.release();
  await b.release();
  assert.throws(() => registry.acquire(settings()), (error: unknown) => error instanceof DbError && error.code === 'ROWCAST_REGISTRY_CLOSED');
});

test('sslmode against a server without TLS: prefer and allow connect in plain text, require and verify-* refuse', async () => {
  const { logger, entries } = recordingLogger();
  const registry = new PoolRegistry({ logger });
  for (const sslmode of ['prefer', 'allow', 'disable'] as const) {
    const lease = registry.acquire(settings({ sslmode }));
    try {
      // Several first connections at once all fall back, none fails.
      const results = await Promise.all(Array.from({ length: 3 }, () => one<boolean>(lease.pool, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')));
      assert.deepEqual(results, [false, false, false], sslmode);
      const rows: unknown[] = [];
      await readRows(lease.pool, 'SELECT 1 AS one', (batch) => {
        rows.push(...batch);
      });
      assert.deepEqual(rows, [{ one: 1 }]);
    } finally {
      await lease.release();
    }
  }
  assert.ok(entries.some((entry) => entry.msg === 'database server does not offer TLS; connecting without it' && entry.fields?.['sslmode'] === 'prefer'));
  for (const sslmode of ['require', 'verify-ca', 'verify-full'] as const) {
    const lease = registry.acquire(settings({ sslmode }));
    const classified = classifyDbError(await rejection(lease.pool.query('SELECT 1')));
    assert.equal(classified.retryable, false, sslmode);
    assert.match(classified.message, /does not support SSL/);
    await lease.release();
  }
});

const openssl = promisify(execFile);

/**
 * A PostgreSQL of this file's own with TLS on, started with the harness's
 * startPostgres, and a certificate whose only name is db.invalid, so host-name
 * checking can be seen to work (and to be skipped by verify-ca).
 */
async function startTlsPostgres(): Promise<{ server: RunningPostgres; ca: string; runDir: string }> {
  const runDir = await mkdtemp(join(tmpdir(), 'rowcast-db-tls-'));
  const server = await startPostgres(runDir);
  const dir = join(runDir, 'postgres', 'tls');
  await mkdir(dir);
  const file = (name: string): string => join(dir, name);
  await openssl('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-keyout', file('ca.key'), '-out', file('ca.crt'), '-subj', '/CN=rowcast-db-test-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await openssl('openssl', [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', file('server.key'), '-subj', '/CN=db.invalid', '-out', file('server.csr'),
  ]);
  await writeFile(file('server.ext'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:db.invalid\n');
  await openssl('openssl', [
    'x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial',
    '-days', '2', '-sha256', '-extfile', file('server.ext'), '-out', file('server.crt'),
  ]);
  // The server runs as whoever owns its data directory (postgres or nobody when the tests run as root) and wants its key private.
  const owner = await stat(join(runDir, 'postgres', 'data'));
  for (const name of ['server.crt', 'server.key']) await chown(file(name), owner.uid, owner.gid);
  await chmod(file('server.key'), 0o600);
  const admin = new pg.Client({ ...server.info, database: 'postgres' });
  await admin.connect();
  try {
    await admin.query(`ALTER SYSTEM SET ssl_cert_file = '${file('server.crt')}'`);
    await admin.query(`ALTER SYSTEM SET ssl_key_file = '${file('server.key')}'`);
    await admin.query('ALTER SYSTEM SET ssl = on');
    await admin.query('SELECT pg_reload_conf()');
  } finally {
    await admin.end();
  }
  await waitFor(
    'PostgreSQL to turn TLS on',
    async () => {
      const probe = new pg.Client({ ...server.info, database: 'postgres', ssl: { rejectUnauthorized: false } });
      try {
        await probe.connect();
        return true;
      } catch {
        return false;
      } finally {
        await probe.end().catch(() => undefined);
      }
    },
    10_000,
    100,
  );
  return { server, ca: await readFile(file('ca.crt'), 'utf8'), runDir };
}

describe('sslmode against a server with TLS', () => {
  let tlsServer: { server: RunningPostgres; ca: string; runDir: string } | undefined;
  const registry = new PoolRegistry({ logger: recordingLogger().logger });

  before(async () => {
    tlsServer = await startTlsPostgres();
  });
  after(async () => {
    await registry.closeAll();
    await tlsServer?.server.process.stop();
    if (tlsServer !== undefined) await rm(tlsServer.runDir, { recursive: true, force: true });
  });

  function tlsSettings(overrides: Partial<ConnectionSettingsInput>): ConnectionSettings {
    const info = tlsServer?.server.info;
    assert.ok(info !== undefined);
    return withConnectionDefaults({ host: info.host, port: info.port, database: 'postgres', user: info.user, password: info.password, ...overrides });
  }

  async function usesTls(overrides: Partial<ConnectionSettingsInput>): Promise<boolean> {
    const lease = registry.acquire(tlsSettings(overrides));
    try {
      return await one<boolean>(lease.pool, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    } finally {
      await lease.release();
    }
  }

  async function refusal(overrides: Partial<ConnectionSettingsInput>): Promise<ReturnType<typeof classifyDbError>> {
    const lease = registry.acquire(tlsSettings(overrides));
    try {
      return classifyDbError(await rejection(lease.pool.query('SELECT 1')));
    } finally {
      await lease.release();
    }
  }

  test('disable stays in plain text; allow, prefer and require encrypt without checking the certificate', async () => {
    assert.equal(await usesTls({ sslmode: 'disable' }), false);
    assert.equal(await usesTls({ sslmode: 'allow' }), true);
    assert.equal(await usesTls({ sslmode: 'prefer' }), true);
    assert.equal(await usesTls({ sslmode: 'require' }), true);
  });

  test('verify-ca checks the chain but not the name; verify-full checks both', async () => {
    const ca = tlsServer?.ca ?? '';
    assert.equal(await usesTls({ sslmode: 'verify-ca', sslRootCert: ca }), true);
    // libpq: require with a root certificate verifies like verify-ca.
    assert.equal(await usesTls({ sslmode: 'require', sslRootCert: ca }), true);

    const wrongName = await refusal({ sslmode: 'verify-full', sslRootCert: ca });
    assert.deepEqual([wrongName.code, wrongName.retryable], ['ERR_TLS_CERT_ALTNAME_INVALID', false]);
    const unknownCa = await refusal({ sslmode: 'verify-ca' });
    assert.equal(unknownCa.retryable, false, `${unknownCa.code ?? ''} ${unknownCa.message}`);
    assert.match(unknownCa.code ?? '', /SELF_SIGNED|UNABLE_TO|CERT/);
  });
});
