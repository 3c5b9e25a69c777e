import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import {
  bindParams,
  compileStatusTemplate,
  DbError,
  PoolRegistry,
  withConnectionDefaults,
  WriteBackError,
  WriteBackQueue,
  type CompiledStatement,
  type PoolLease,
  type WriteBackQueueOptions,
} from '../src/db/index.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';
import { recordingLogger, rejection } from './helpers/db.ts';
import { startPgHoldProxy } from './helpers/pg-hold-proxy.ts';

const env = await openTestEnv('db-writeback');
failOnLeaks(env);

const registry = new PoolRegistry({ logger: recordingLogger().logger });
let lease: PoolLease;

before(async () => {
  lease = registry.acquire(withConnectionDefaults({ ...env.db, sslmode: 'disable', pool: { idleTimeoutMs: 200 } }));
  await env.sql(`
    CREATE TABLE apps (id int PRIMARY KEY, ready int, status jsonb, cluster text, note text, region text);
    INSERT INTO apps (id) SELECT generate_series(1, 50);
    -- Counts the UPDATEs that reach the table: 'unchanged' must cost no statement at all.
    CREATE TABLE update_log (id int, at timestamptz DEFAULT clock_timestamp());
    CREATE FUNCTION log_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO update_log (id) VALUES (NEW.id); RETURN NEW; END $$;
    CREATE TRIGGER apps_log AFTER UPDATE ON apps FOR EACH ROW EXECUTE FUNCTION log_update();
    -- Sequences are not transactional: they count attempts even when the attempt's transaction is lost.
    CREATE SEQUENCE flaky_calls;
    CREATE FUNCTION flaky() RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('flaky_calls') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
        RETURN true;
      END $$;
    CREATE SEQUENCE older_calls;
    CREATE FUNCTION older_dies_once(note text) RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN
        IF note = 'older' AND nextval('older_calls') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
        RETURN true;
      END $$;
    CREATE SEQUENCE always_dies_calls;
    CREATE FUNCTION always_dies() RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN PERFORM nextval('always_dies_calls'); PERFORM pg_terminate_backend(pg_backend_pid()); RETURN true; END $$;
    CREATE SEQUENCE terminal_calls;
    CREATE FUNCTION refuse(id int) RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN PERFORM nextval('terminal_calls'); RAISE EXCEPTION 'row % is not allowed', id USING ERRCODE = '22023'; END $$;
  `);
});

after(async () => {
  await registry.closeAll();
});

function openQueue(t: TestContext, options: Partial<WriteBackQueueOptions> = {}): WriteBackQueue {
  const queue = new WriteBackQueue({ logger: recordingLogger().logger, backoff: { baseMs: 50, maxMs: 200 }, ...options });
  t.after(() => queue.closeAll());
  return queue;
}

function compile(template: string): CompiledStatement {
  const result = compileStatusTemplate(template);
  if (!result.ok) assert.fail(JSON.stringify(result.error));
  return result.statement;
}

async function updates(id: number): Promise<number> {
  const { rows } = await env.sql<{ n: string }>('SELECT count(*) AS n FROM update_log WHERE id = $1', [id]);
  return Number(rows[0]?.n);
}

async function lastValue(sequence: string): Promise<number> {
  const { rows } = await env.sql<{ n: string }>(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM ${sequence}`);
  return Number(rows[0]?.n);
}

const cluster = { name: 'eu-1', labels: { 'topology.kubernetes.io/region': 'eu-west' } };

const statusUpdate = compile(`
  UPDATE apps
     SET ready = {{param resource.status.readyReplicas}},
         status = {{param resource.status}}::jsonb,
         cluster = {{ param cluster.name }},
         region = {{param cluster.labels["topology.kubernetes.io/region"]}},
         note = {{param resource.metadata.annotations.note}}
   WHERE id = {{param row.id}}`);

test('hostile values land verbatim through a real UPDATE; a missing path is NULL', async (t) => {
  assert.deepEqual(statusUpdate.params, [
    'resource.status.readyReplicas',
    'resource.status',
    'cluster.name',
    'cluster.labels["topology.kubernetes.io/region"]',
    'resource.metadata.annotations.note',
    'row.id',
  ]);
  assert.match(statusUpdate.text, /SET ready = \$1,\s+status = \$2::jsonb,\s+cluster = \$3,\s+region = \$4,\s+note = \$5\s+WHERE id = \$6/);
  const queue = openQueue(t);
  const hostile = [
    `'; DROP TABLE apps; --`,
    `Robert'); DROP TABLE apps;--`,
    `"double" 'single' \`back\` \\ \\\\ \\' \\"`,
    `$1 $$ $tag$ {{param row.id}} {{{x}}}`,
    `ünïcödé 😀 \u202e רגע 中文 \t\r\n end`,
    `E'\\x41' U&'\\0041'`,
  ];
  for (const [index, note] of hostile.entries()) {
    const id = index + 1;
    const resource = { metadata: { annotations: { note } }, status: { conditions: [{ type: 'Available', message: note }] } };
    const values = bindParams(statusUpdate, { resource, row: { id }, cluster });
    assert.equal(await queue.enqueue(lease.pool, lease.key, `obj-${id}`, statusUpdate, values), 'written');
    const { rows } = await env.sql<{ ready: number | null; status: unknown; cluster: string; note: string; region: string }>(
      'SELECT ready, status, cluster, note, region FROM apps WHERE id = $1',
      [id],
    );
    assert.deepEqual(rows[0], { ready: null, status: resource.status, cluster: 'eu-1', note, region: 'eu-west' }, note);
  }
  const { rows } = await env.sql<{ n: string }>('SELECT count(*) AS n FROM apps');
  assert.equal(rows[0]?.n, '50', 'the table is intact');
});

test("equal values again are 'unchanged' and cost no statement; a change or forget() writes", async (t) => {
  const queue = openQueue(t);
  const id = 20;
  const context = (ready: number): Parameters<typeof bindParams>[1] => ({
    resource: { status: { readyReplicas: ready }, metadata: {} },
    row: { id },
    cluster,
  });
  const enqueue = (ready: number): Promise<string> => queue.enqueue(lease.pool, lease.key, 'obj-20', statusUpdate, bindParams(statusUpdate, context(ready)));
  assert.equal(await enqueue(1), 'written');
  assert.equal(await enqueue(1), 'unchanged');
  assert.equal(await enqueue(1), 'unchanged');
  assert.equal(await updates(id), 1);
  assert.equal(await enqueue(2), 'written');
  assert.equal(await updates(id), 2);
  // Concurrent equal enqueues: the first writes, the others see its hash.
  assert.deepEqual(await Promise.all([enqueue(3), enqueue(3), enqueue(3)]), ['written', 'unchanged', 'unchanged']);
  assert.equal(await updates(id), 3);
  queue.forget('obj-20');
  assert.equal(await enqueue(3), 'written');
  assert.equal(await updates(id), 4);
  // Another object with the same statement and values is its own object.
  assert.equal(await queue.enqueue(lease.pool, lease.key, 'obj-20-twin', statusUpdate, bindParams(statusUpdate, context(3))), 'written');
});

test('a terminal error rejects at once, without a retry', async (t) => {
  const { logger, entries } = recordingLogger();
  const queue = new WriteBackQueue({ logger, retries: 5, backoff: { baseMs: 50, maxMs: 200 } });
  t.after(() => queue.closeAll());
  const statement = compile('SELECT refuse({{param row.id}})');
  const error = await rejection(queue.enqueue(lease.pool, lease.key, 'obj-t', statement, bindParams(statement, { resource: {}, row: { id: 7 }, cluster })));
  assert.ok(error instanceof WriteBackError, String(error));
  assert.deepEqual([error.sqlState, error.retryable, error.attempts], ['22023', false, 1]);
  assert.match(error.message, /\(terminal error\): row 7 is not allowed/);
  assert.equal(await lastValue('terminal_calls'), 1);
  assert.ok(entries.some((entry) => entry.msg === 'status write-back failed' && entry.fields?.['code'] === '22023'));

  // An undefined column is terminal too; the failed write is not remembered, so the same values are tried again next time.
  const broken = compile('UPDATE apps SET no_such_column = {{param row.id}} WHERE id = 1');
  const values = bindParams(broken, { resource: {}, row: { id: 1 }, cluster });
  for (let i = 0; i < 2; i++) {
    const again = await rejection(queue.enqueue(lease.pool, lease.key, 'obj-broken', broken, values));
    assert.ok(again instanceof WriteBackError);
    assert.deepEqual([again.sqlState, again.attempts], ['42703', 1]);
  }
});

test('a backend terminated mid-statement is retried on a new connection', async (t) => {
  const queue = openQueue(t);
  const statement = compile('UPDATE apps SET note = {{param resource.note}} WHERE id = {{param row.id}} AND flaky()');
  const result = await queue.enqueue(lease.pool, lease.key, 'obj-30', statement, bindParams(statement, { resource: { note: 'after retry' }, row: { id: 30 }, cluster }));
  assert.equal(result, 'written');
  assert.equal(await lastValue('flaky_calls'), 2, 'one attempt killed, one that succeeded');
  const { rows } = await env.sql<{ note: string }>('SELECT note FROM apps WHERE id = 30');
  assert.equal(rows[0]?.note, 'after retry');
});

test('retries are bounded: a database that keeps failing rejects after the last retry', async (t) => {
  const queue = openQueue(t, { retries: 2 });
  const statement = compile('UPDATE apps SET note = {{param resource.note}} WHERE id = 31 AND always_dies()');
  const error = await rejection(queue.enqueue(lease.pool, lease.key, 'obj-31', statement, bindParams(statement, { resource: { note: 'x' }, row: {}, cluster })));
  assert.ok(error instanceof WriteBackError, String(error));
  assert.equal(error.retryable, true);
  assert.equal(error.attempts, 3);
  assert.match(error.message, /gave up after 3 attempts/);
  assert.equal(await lastValue('always_dies_calls'), 3);
});

test('writes for one object keep their order even when the older one is retried', async (t) => {
  const queue = openQueue(t, { backoff: { baseMs: 300, maxMs: 300 } });
  // The first attempt of 'older' dies; its retry comes 150-300 ms later, long after 'newer' could have run.
  const statement = compile('UPDATE apps SET note = {{param resource.note}} WHERE id = 32 AND older_dies_once({{param resource.note}})');
  const write = (note: string): Promise<string> =>
    queue.enqueue(lease.pool, lease.key, 'obj-32', statement, bindParams(statement, { resource: { note }, row: {}, cluster }));
  const [older, newer] = await Promise.all([write('older'), write('newer')]);
  assert.deepEqual([older, newer], ['written', 'written']);
  assert.equal(await lastValue('older_calls'), 2);
  const { rows } = await env.sql<{ note: string }>('SELECT note FROM apps WHERE id = 32');
  assert.equal(rows[0]?.note, 'newer');
});

test('ratePerSecond bounds statements per database', async (t) => {
  // Connections that stay open and are open already: the server's clock then
  // sees when statements were sent, not when a new connection finished its
  // handshake (which on a busy machine can take longer than the tolerance).
  const warm = registry.acquire(withConnectionDefaults({ ...env.db, sslmode: 'disable', pool: { max: 5, idleTimeoutMs: 30_000 } }));
  try {
    await ratePerSecondOn(t, warm);
  } finally {
    await warm.release();
  }
});

async function ratePerSecondOn(t: TestContext, warm: PoolLease): Promise<void> {
  const queue = openQueue(t, { ratePerSecond: 5, concurrency: 5 });
  const statement = compile('UPDATE apps SET ready = {{param resource.ready}} WHERE id = {{param row.id}}');
  await Promise.all(Array.from({ length: 5 }, () => warm.pool.query('SELECT pg_sleep(0.05)')));
  await env.sql('TRUNCATE update_log');
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      queue.enqueue(warm.pool, warm.key, `rate-${i}`, statement, bindParams(statement, { resource: { ready: 100 + i }, row: { id: 40 + (i % 10) }, cluster })),
    ),
  );
  const elapsed = performance.now() - started;
  assert.ok(results.every((result) => result === 'written'));
  // 5 + 5 + 2 in three one-second windows: at least two window boundaries.
  assert.ok(elapsed >= 1900, `12 writes at 5/s took ${Math.round(elapsed)} ms`);
  // Seen by the server: any six consecutive statements span about a second (timers may only make it longer).
  const { rows } = await env.sql<{ ms: number }>('SELECT (extract(epoch FROM at) * 1000)::float8 AS ms FROM update_log ORDER BY at');
  const times = rows.map((row) => row.ms);
  assert.equal(times.length, 12);
  for (let i = 0; i + 5 < times.length; i++) {
    const span = (times[i + 5] ?? 0) - (times[i] ?? 0);
    assert.ok(span >= 900, `statements ${i}..${i + 5} within ${Math.round(span)} ms`);
  }
}

test('closeAll rejects work still waiting and refuses new work', async (t) => {
  const queue = openQueue(t, { ratePerSecond: 1, concurrency: 1 });
  const statement = compile('UPDATE apps SET ready = {{param resource.ready}} WHERE id = 45');
  const pending = [1, 2, 3].map((ready) =>
    queue.enqueue(lease.pool, lease.key, `close-${ready}`, statement, bindParams(statement, { resource: { ready }, row: {}, cluster })),
  );
  const first = await pending[0];
  assert.equal(first, 'written');
  await queue.closeAll();
  for (const waiting of pending.slice(1)) {
    const error = await rejection(waiting);
    assert.ok(error instanceof WriteBackError, String(error));
    assert.match(error.message, /write-back queue closed/);
  }
  const late = await rejection(queue.enqueue(lease.pool, lease.key, 'late', statement, []));
  assert.ok(late instanceof DbError);
  assert.equal(late.code, 'ROWCAST_WRITE_BACK_CLOSED');
});

test('a pool that has ended (credentials rotated) fails at once instead of retrying', async (t) => {
  const queue = openQueue(t, { retries: 5, backoff: { baseMs: 1000, maxMs: 1000 } });
  const old = registry.acquire(withConnectionDefaults({ ...env.db, sslmode: 'disable', pool: { max: 2, idleTimeoutMs: 200 } }));
  await old.release();
  const statement = compile('UPDATE apps SET ready = {{param resource.ready}} WHERE id = 46');
  const started = performance.now();
  const error = await rejection(queue.enqueue(old.pool, old.key, 'obj-46', statement, bindParams(statement, { resource: { ready: 1 }, row: {}, cluster })));
  assert.ok(error instanceof WriteBackError, String(error));
  assert.deepEqual([error.attempts, error.retryable], [1, false]);
  assert.match(error.message, /the pool has ended/);
  assert.ok(performance.now() - started < 900, 'no backoff wait');
});

test('a write-back that changes its session leaves no trace on the pool the DQR reads with', async (t) => {
  const queue = openQueue(t);
  const lone = registry.acquire(withConnectionDefaults({ ...env.db, sslmode: 'disable', pool: { max: 1, idleTimeoutMs: 200, statementTimeoutMs: 5000 } }));
  t.after(() => lone.release());
  // One connection: without the guard the next checkout is the very session the statement changed.
  const statement = compile("SELECT set_config('statement_timeout', '0', false), set_config('application_name', 'tainted', false) WHERE {{param resource.ready}}::int IS NOT NULL");
  assert.equal(await queue.enqueue(lone.pool, lone.key, 'obj-session', statement, bindParams(statement, { resource: { ready: 1 }, row: {}, cluster })), 'written');
  const { rows } = await lone.pool.query<{ application_name: string; statement_timeout: string }>('SELECT current_setting($1) AS application_name, current_setting($2) AS statement_timeout', ['application_name', 'statement_timeout']);
  assert.notEqual(rows[0]?.application_name, 'tainted');
  assert.equal(rows[0]?.statement_timeout, '5s');
});

test('a write-back the server never answers fails within the bound set by the statement timeout', async (t) => {
  const queue = openQueue(t, { retries: 0 });
  const proxy = await startPgHoldProxy(env.db.port, (type, body) => type === 'P' && body.toString('utf8').includes('held_write'));
  const held = registry.acquire(withConnectionDefaults({ ...env.db, sslmode: 'disable', port: proxy.port, pool: { idleTimeoutMs: 200, statementTimeoutMs: 1000 } }));
  try {
    const statement = compile('UPDATE apps SET note = {{param resource.note}} WHERE id = 47 AND true /* held_write */');
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      queue.enqueue(held.pool, held.key, 'obj-held', statement, bindParams(statement, { resource: { note: 'x' }, row: {}, cluster })).then(
        () => 'written',
        (error: unknown) => (error instanceof WriteBackError ? `failed: ${error.message}` : String(error)),
      ),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve('hung'), 30_000);
      }),
    ]);
    clearTimeout(timer);
    assert.match(outcome, /^failed: .*did not answer/);
  } finally {
    await proxy.close();
    await held.release();
  }
});
