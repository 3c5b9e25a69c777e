import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { classifyDbError, DbError, maxTimestamp, PoolRegistry, readMaxTimestamp, withConnectionDefaults, type PoolLease } from '../src/db/index.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';
import { quietLogger, rejection } from './helpers/db.ts';
import { startPgHoldProxy } from './helpers/pg-hold-proxy.ts';

const env = await openTestEnv('db-change-ts');
failOnLeaks(env);


// One pool for the file, leased in before() so failOnLeaks's per-test baseline holds only what a test leaves behind.
const registry = new PoolRegistry({ logger: quietLogger });
let lease: PoolLease;

before(async () => {
  lease = registry.acquire(withConnectionDefaults({ ...env.db, sslmode: 'disable', pool: { idleTimeoutMs: 200 } }));
  await env.sql(`CREATE TABLE items (id int PRIMARY KEY, updated_at timestamptz NOT NULL)`);
});

after(async () => {
  await registry.closeAll();
});

test('null for an empty table; moves with an insert and an update; not with a delete', async () => {
  assert.equal(await maxTimestamp(lease.pool, 'items', 'updated_at'), null);

  await env.sql(`INSERT INTO items VALUES (1, '2024-03-01 10:00:00.000001+00'), (2, '2024-03-01 11:00:00+00'), (3, '2024-03-01 12:00:00.5+00')`);
  const first = await maxTimestamp(lease.pool, 'items', 'updated_at');
  assert.ok(first !== null);
  assert.match(first, /^2024-03-01 12:00:00\.5/);

  // One microsecond later is a change: text keeps what a Date would drop.
  await env.sql(`UPDATE items SET updated_at = '2024-03-01 12:00:00.500001+00' WHERE id = 1`);
  const second = await maxTimestamp(lease.pool, 'items', 'updated_at');
  assert.notEqual(second, first);
  assert.match(second ?? '', /\.500001/);

  // A delete leaves max() where it was: timestamp mode cannot see deletes (docs/database.md: the caller's periodic full sync does).
  await env.sql('DELETE FROM items WHERE id = 2');
  assert.equal(await maxTimestamp(lease.pool, 'items', 'updated_at'), second);
  await env.sql('DELETE FROM items WHERE id = 3');
  assert.equal(await maxTimestamp(lease.pool, 'items', 'updated_at'), second);

  // Stable across repeated calls (and connections): equal text when nothing changed.
  assert.equal(await maxTimestamp(lease.pool, 'items', 'updated_at'), await maxTimestamp(lease.pool, 'items', 'updated_at'));
});

test('schema-qualified, mixed-case and quoted names', async () => {
  await env.sql(`CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."Order Items" ("Updated ""At""" timestamp)`);
  await env.sql(`INSERT INTO "Sales"."Order Items" VALUES ('2020-01-01 00:00:00'), ('2021-06-30 23:59:59.25')`);
  assert.equal(await maxTimestamp(lease.pool, '"Sales"."Order Items"', '"Updated ""At"""'), '2021-06-30 23:59:59.25');
  // Unquoted parts fold to lower case, as in SQL: Public.ITEMS is public.items.
  await env.sql(`INSERT INTO items VALUES (10, '2030-01-01 00:00:00+00')`);
  assert.match((await maxTimestamp(lease.pool, 'Public.ITEMS', 'Updated_At')) ?? '', /^2030-01-01/);
});

test('readMaxTimestamp gives the instant of a timestamptz, timestamp or date max, and none for a counter', async () => {
  await env.sql(`CREATE TABLE kinds (tz timestamptz, plain timestamp, day date, counter bigint)`);
  assert.deepEqual(await readMaxTimestamp(lease.pool, 'kinds', 'tz'), { max: null, at: undefined });
  await env.sql(`INSERT INTO kinds VALUES ('2024-03-01 12:00:00.25+02', '2024-03-01 12:00:00', '2024-03-01', 41), (NULL, NULL, NULL, 42)`);
  const tz = await readMaxTimestamp(lease.pool, 'kinds', 'tz');
  assert.equal(tz.at, Date.parse('2024-03-01T10:00:00.250Z'));
  assert.equal(tz.max, await maxTimestamp(lease.pool, 'kinds', 'tz'));
  // Without a zone, the value is read in the session's TimeZone (the server's default here), as now() stored it there.
  const expected = (await env.sql<{ at: number }>(`SELECT extract(epoch FROM timestamptz '2024-03-01 12:00:00')::float8 * 1000 AS at`)).rows[0]?.at;
  assert.equal((await readMaxTimestamp(lease.pool, 'kinds', 'plain')).at, expected);
  assert.ok((await readMaxTimestamp(lease.pool, 'kinds', 'day')).at !== undefined);
  assert.deepEqual(await readMaxTimestamp(lease.pool, 'kinds', 'counter'), { max: '42', at: undefined });
});

test('hostile identifiers are refused before any SQL runs, naming the field', async () => {
  const tables = ['items; DROP TABLE items', 'items--', 'items WHERE false', 'a.b.c', '', 'items)', "items'"];
  for (const table of tables) {
    const error = await rejection(maxTimestamp(lease.pool, table, 'updated_at'));
    assert.ok(error instanceof DbError, String(error));
    assert.equal(error.code, 'ROWCAST_INVALID_IDENTIFIER');
    assert.match(error.message, /^spec\.changeDetection\.tableName: /);
    assert.equal(classifyDbError(error).retryable, false);
  }
  for (const column of ['updated_at) FROM items; DROP TABLE items; --', 'items.updated_at', 'max(updated_at)', '*']) {
    const error = await rejection(maxTimestamp(lease.pool, 'items', column));
    assert.ok(error instanceof DbError, String(error));
    assert.match(error.message, /^spec\.changeDetection\.timestampColumn: /);
  }
  // A quoted name holding SQL is only a name: the server looks for that table and does not find it.
  const missing = await rejection(maxTimestamp(lease.pool, '"items; DROP TABLE items; --"', 'updated_at'));
  assert.equal((missing as { code?: string }).code, '42P01');
  assert.equal(classifyDbError(missing).retryable, false);
  const { rows } = await env.sql<{ n: string }>('SELECT count(*) AS n FROM items');
  assert.ok(Number(rows[0]?.n) > 0, 'items still there');
});

test('runs READ ONLY: a view whose read would write fails with 25006', async () => {
  await env.sql(`
    CREATE TABLE side_effects (at timestamptz);
    CREATE FUNCTION stamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO side_effects VALUES (now()); RETURN now(); END $$;
    CREATE VIEW sneaky AS SELECT stamp() AS ts`);
  const error = await rejection(maxTimestamp(lease.pool, 'sneaky', 'ts'));
  assert.equal((error as { code?: string }).code, '25006');
  const { rows } = await env.sql<{ n: string }>('SELECT count(*) AS n FROM side_effects');
  assert.equal(rows[0]?.n, '0');
});

test('a probe is one round trip: one message that waits for an answer, on a warm connection', async () => {
  // Query (Q), Sync (S) and Flush (H) are the frontend messages the server answers; every other one waits for them.
  const sent: string[] = [];
  const proxy = await startPgHoldProxy(env.db.port, (type) => {
    sent.push(type);
    return false;
  }, env.db.host);
  const registry = new PoolRegistry({ logger: quietLogger });
  try {
    const { pool } = registry.acquire(withConnectionDefaults({ ...env.db, port: proxy.port, sslmode: 'disable', pool: { max: 1 } }));
    await env.sql(`INSERT INTO items VALUES (500, '2031-01-01 00:00:00+00') ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at`);
    const warm = await readMaxTimestamp(pool, 'items', 'updated_at');
    sent.length = 0;
    const reading = await readMaxTimestamp(pool, 'items', 'updated_at');
    assert.deepEqual(reading, warm);
    assert.match(reading.max ?? '', /^2031-01-01 00:00:00/);
    assert.deepEqual(sent.filter((type) => 'QSH'.includes(type)), ['Q']);
  } finally {
    await registry.closeAll();
    await proxy.close();
  }
});

test('a probe that fails in SQL keeps its connection, with no transaction left open', async () => {
  const registry = new PoolRegistry({ logger: quietLogger });
  try {
    const { pool } = registry.acquire(withConnectionDefaults({ ...env.db, sslmode: 'disable', pool: { max: 1 } }));
    await readMaxTimestamp(pool, 'items', 'updated_at');
    const missing = await rejection(readMaxTimestamp(pool, 'items', 'no_such_column'));
    assert.equal((missing as { code?: string }).code, '42703');
    // A column dropped under a DQR fails every poll: reconnecting each time would cost more round trips than the probe saves.
    assert.deepEqual({ total: pool.totalCount, idle: pool.idleCount }, { total: 1, idle: 1 });
    assert.match((await readMaxTimestamp(pool, 'items', 'updated_at')).max ?? '', /^20/);
  } finally {
    await registry.closeAll();
  }
});

test('an abort during a probe cancels it on the server', async () => {
  await env.sql(`CREATE VIEW slow AS SELECT now() AS ts FROM pg_sleep(30)`);
  const controller = new AbortController();
  const probe = readMaxTimestamp(lease.pool, 'slow', 'ts', controller.signal);
  const sleeping = async (): Promise<number> =>
    Number((await env.sql<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%FROM "slow"%' AND pid <> pg_backend_pid()`)).rows[0]?.n);
  while ((await sleeping()) === 0) await new Promise((resolve) => setTimeout(resolve, 50));
  controller.abort();
  assert.equal(((await rejection(probe)) as Error).name, 'AbortError');
  const deadline = Date.now() + 10_000;
  while ((await sleeping()) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(await sleeping(), 0, 'the statement still runs on the server');
});

test("the instant does not depend on the session's DateStyle or TimeZone", async () => {
  await env.sql(`CREATE TABLE styled (tz timestamptz); INSERT INTO styled VALUES ('2024-03-01 12:00:00.25+02')`);
  // SQL style prints a zone abbreviation; IST reads back as Israel's (+02), not India's (+05:30).
  await env.sql(`ALTER DATABASE "${env.db.database}" SET DateStyle = 'SQL, DMY'`);
  await env.sql(`ALTER DATABASE "${env.db.database}" SET TimeZone = 'Asia/Kolkata'`);
  const registry = new PoolRegistry({ logger: quietLogger });
  try {
    const { pool } = registry.acquire(withConnectionDefaults({ ...env.db, sslmode: 'disable' }));
    const reading = await readMaxTimestamp(pool, 'styled', 'tz');
    assert.match(reading.max ?? '', /^01\/03\/2024/);
    assert.equal(reading.at, Date.parse('2024-03-01T10:00:00.250Z'));
  } finally {
    await registry.closeAll();
    await env.sql(`ALTER DATABASE "${env.db.database}" RESET DateStyle`);
    await env.sql(`ALTER DATABASE "${env.db.database}" RESET TimeZone`);
  }
});

test('an aborted signal rejects without a result', async () => {
  const controller = new AbortController();
  controller.abort();
  const error = await rejection(maxTimestamp(lease.pool, 'items', 'updated_at', controller.signal));
  assert.equal((error as Error).name, 'AbortError');
  assert.equal(classifyDbError(error).retryable, true);
});
