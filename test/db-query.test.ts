import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import pg from 'pg';
import {
  classifyDbError,
  PoolRegistry,
  readRows,
  type ConnectionSettings,
  type ConnectionSettingsInput,
  type PoolLease,
  type Row,
} from '../src/db/index.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';
import { dbSettings, quietLogger, rejection } from './helpers/db.ts';
import { startPgHoldProxy } from './helpers/pg-hold-proxy.ts';

const env = await openTestEnv('db-query');
failOnLeaks(env);

const registry = new PoolRegistry({ logger: quietLogger });

function settings(overrides: Partial<ConnectionSettingsInput> = {}): ConnectionSettings {
  return dbSettings(env.db, overrides);
}

/** Every test ends its own pool, so the leak check sees no connection left behind. */
async function withPool<T>(fn: (lease: PoolLease) => Promise<T>, overrides: Partial<ConnectionSettingsInput> = {}): Promise<T> {
  const lease = registry.acquire(settings(overrides));
  try {
    return await fn(lease);
  } finally {
    await lease.release();
  }
}

async function readAll(lease: PoolLease, sql: string, batchSize?: number): Promise<{ rows: Row[]; batches: number[]; columns: string[]; rowCount: number }> {
  const rows: Row[] = [];
  const batches: number[] = [];
  const summary = await readRows(
    lease.pool,
    sql,
    (batch) => {
      batches.push(batch.length);
      rows.push(...batch);
    },
    batchSize === undefined ? {} : { batchSize },
  );
  return { rows, batches, ...summary };
}

async function itemCount(): Promise<number> {
  return Number((await env.sql<{ n: string }>('SELECT count(*) AS n FROM items')).rows[0]?.n);
}

before(async () => {
  await env.sql('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)');
  await env.sql("INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 2500) g");
});

test('2,500 rows in batches of 1,000 arrive as 1,000 + 1,000 + 500, in order', async () => {
  await withPool(async (lease) => {
    const { rows, batches, columns, rowCount } = await readAll(lease, 'SELECT id, name FROM items ORDER BY id', 1000);
    assert.deepEqual(batches, [1000, 1000, 500]);
    assert.equal(rowCount, 2500);
    assert.deepEqual(columns, ['id', 'name']);
    assert.deepEqual(rows[0], { id: 1, name: 'item-1' });
    assert.deepEqual(rows.map((row) => row['id']), Array.from({ length: 2500 }, (_, i) => i + 1));
  });
});

test('an exact multiple of the batch size gives no empty batch; an empty result gives none but keeps its columns', async () => {
  await withPool(async (lease) => {
    assert.deepEqual((await readAll(lease, 'SELECT id FROM items WHERE id <= 2000', 1000)).batches, [1000, 1000]);
    const empty = await readAll(lease, 'SELECT id, name FROM items WHERE false', 1000);
    assert.deepEqual(empty.batches, []);
    assert.deepEqual(empty.columns, ['id', 'name']);
    assert.equal(empty.rowCount, 0);
    assert.deepEqual((await readAll(lease, 'SELECT id FROM items ORDER BY id')).batches, [1000, 1000, 500], 'default batch size is 1000');
  });
});

test('rows are fetched lazily: a billion-row result can be stopped after three batches', async () => {
  await withPool(async (lease) => {
    let batches = 0;
    const stop = new Error('enough');
    const error = await rejection(
      readRows(
        lease.pool,
        'SELECT generate_series(1, 1000000000) AS g',
        () => {
          batches += 1;
          if (batches === 3) throw stop;
        },
        { batchSize: 100 },
      ),
    );
    assert.equal(error, stop);
    assert.equal(batches, 3);
  });
});

test('setup statements run in the same transaction as the query, which is READ ONLY', async () => {
  await withPool(async (lease) => {
    const { rows } = await readAll(
      lease,
      `-- setup first
       SET LOCAL statement_timeout = '5s';
       SET LOCAL search_path = 'pg_catalog';
       SELECT current_setting('statement_timeout') AS statement_timeout,
              current_setting('search_path') AS search_path,
              current_setting('transaction_read_only') AS read_only,
              current_setting('application_name') AS application_name`,
    );
    assert.deepEqual(rows, [{ statement_timeout: '5s', search_path: 'pg_catalog', read_only: 'on', application_name: 'rowcast' }]);
  });
});

test('SET LOCAL ends with the query; a session-level SET never reaches the next query on the pool', async () => {
  await withPool(
    async (lease) => {
      const read = async (sql: string): Promise<Row | undefined> => (await readAll(lease, sql)).rows[0];
      const local = await read("SET LOCAL statement_timeout = '5s'; SELECT pg_backend_pid() AS pid");
      const afterLocal = await read("SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS timeout");
      assert.equal(afterLocal?.['pid'], local?.['pid'], 'a SET LOCAL query gives its connection back for reuse');
      assert.equal(afterLocal?.['timeout'], '30s', "the pool's statement_timeout");

      const session = await read("SET statement_timeout = '7s'; SELECT pg_backend_pid() AS pid");
      const afterSession = await read("SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS timeout");
      assert.notEqual(afterSession?.['pid'], session?.['pid'], 'a connection with session state is not reused');
      assert.equal(afterSession?.['timeout'], '30s');
    },
    { pool: { max: 1 } },
  );
});

test('READ ONLY is enforced: an INSERT, as the query or as setup, fails with 25006 and writes nothing', async () => {
  await withPool(async (lease) => {
    for (const sql of [
      "INSERT INTO items VALUES (9001, 'x')",
      "INSERT INTO items VALUES (9001, 'x') RETURNING id",
      "INSERT INTO items VALUES (9001, 'x'); SELECT 1",
      "WITH w AS (INSERT INTO items VALUES (9001, 'x') RETURNING id) SELECT id FROM w",
    ]) {
      const classified = classifyDbError(await rejection(readAll(lease, sql)));
      assert.equal(classified.code, '25006', sql);
      assert.equal(classified.retryable, false, sql);
      // PostgreSQL names the INSERT, or the SELECT around a data-modifying CTE.
      assert.match(classified.message, /^cannot execute (INSERT|SELECT) in a read-only transaction$/);
    }
    assert.equal(await itemCount(), 2500);
    // The pool is still good after those failures.
    assert.equal((await readAll(lease, 'SELECT count(*)::int AS n FROM items')).rows[0]?.['n'], 2500);
  });
});

test('setup statements cannot lift READ ONLY or leave the transaction', async () => {
  await withPool(async (lease) => {
    const readWrite = await rejection(readAll(lease, "SET TRANSACTION READ WRITE; INSERT INTO items VALUES (9002, 'x') RETURNING id"));
    assert.equal(classifyDbError(readWrite).code, '25001');
    for (const escape of ['COMMIT', 'ROLLBACK', 'END', 'ABORT']) {
      const error = await rejection(readAll(lease, `${escape}; INSERT INTO items VALUES (9002, 'x') RETURNING id`));
      assert.deepEqual(classifyDbError(error).code, 'ROWCAST_TRANSACTION_ENDED', escape);
      assert.equal(classifyDbError(error).retryable, false);
    }
    assert.equal(await itemCount(), 2500);
  });
});

test('a syntax error is terminal and its message carries no password', async () => {
  await withPool(async (lease) => {
    const error = await rejection(readAll(lease, `SELEC '${env.db.password}'`));
    const classified = classifyDbError(error, { secrets: [env.db.password] });
    assert.equal(classified.code, '42601');
    assert.equal(classified.retryable, false);
    assert.ok(!classified.message.includes(env.db.password), classified.message);
    assert.ok(!JSON.stringify(classified).includes(env.db.password));
  });
});

test('undefined tables and columns, and missing privileges, are terminal', async () => {
  await withPool(async (lease) => {
    const cases: [string, string][] = [
      ['SELECT * FROM no_such_table', '42P01'],
      ['SELECT no_such_column FROM items', '42703'],
      ['SELECT rolpassword FROM pg_authid', '42501'],
    ];
    for (const [sql, code] of cases) {
      const classified = classifyDbError(await rejection(readAll(lease, sql)));
      assert.equal(classified.code, code, sql);
      assert.equal(classified.retryable, false, sql);
    }
  });
});

test('a query that returns no columns, or two columns of one name, is refused', async () => {
  await withPool(async (lease) => {
    const noColumns = classifyDbError(await rejection(readAll(lease, "SET LOCAL statement_timeout = '1s'")));
    assert.deepEqual([noColumns.code, noColumns.retryable], ['ROWCAST_NO_RESULT_COLUMNS', false]);
    const twice = classifyDbError(await rejection(readAll(lease, 'SELECT 1 AS id, 2 AS id')));
    assert.deepEqual([twice.code, twice.retryable], ['ROWCAST_DUPLICATE_COLUMN', false]);
    const empty = classifyDbError(await rejection(readAll(lease, ' -- nothing\n ; ')));
    assert.equal(empty.code, 'ROWCAST_EMPTY_QUERY');
  });
});

test('a connection terminated mid-read is retryable, and the pool recovers', async () => {
  await withPool(async (lease) => {
    const error = await rejection(
      readRows(
        lease.pool,
        'SELECT pg_backend_pid() AS pid, g FROM generate_series(1, 3000) g',
        async (rows) => {
          const pid = rows[0]?.['pid'];
          // Waits (up to 5 s) until the backend is gone.
          await env.sql('SELECT pg_terminate_backend($1, 5000)', [pid]);
        },
        { batchSize: 1000 },
      ),
    );
    const classified = classifyDbError(error);
    assert.equal(classified.retryable, true, `${classified.code ?? ''} ${classified.message}`);
    assert.equal((await readAll(lease, 'SELECT 1 AS one')).rows[0]?.['one'], 1);
  });
});

/** Settles within `boundMs` or says it hung: a read that never settles must fail this test, not stall the run. */
async function settleWithin(promise: Promise<unknown>, boundMs: number): Promise<{ settled: 'resolved' | 'hung' } | { settled: 'rejected'; error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise.then(
        () => ({ settled: 'resolved' as const }),
        (error: unknown) => ({ settled: 'rejected' as const, error }),
      ),
      new Promise<{ settled: 'hung' }>((resolve) => {
        timer = setTimeout(() => resolve({ settled: 'hung' }), boundMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

test('the reading backend terminated in the last round trip of a read (after its last rows) fails the read instead of hanging', async () => {
  let cursorParsed = false;
  const proxy = await startPgHoldProxy(env.db.port, (type, body) => {
    if (type === 'P' && body.includes('end-of-read-marker')) cursorParsed = true;
    return cursorParsed && type === 'C';
  });
  const batches: number[] = [];
  const lease = registry.acquire(settings({ sslmode: 'disable', port: proxy.port }));
  try {
    const outcome = settleWithin(readRows(lease.pool, "SELECT id, name, 'end-of-read-marker' AS marker FROM items WHERE id <= 5", (rows) => {
      batches.push(rows.length);
    }), 30_000);
    // The server has sent the rows and CommandComplete; the client's Close and Sync are held.
    await proxy.holding;
    const killed = await env.sql("SELECT pg_terminate_backend(pid, 5000) AS done FROM pg_stat_activity WHERE query LIKE '%end-of-read-marker%' AND pid <> pg_backend_pid()");
    assert.equal(killed.rowCount, 1, 'the reading backend was found');
    const settled = await outcome;
    assert.equal(settled.settled, 'rejected', `the read ${settled.settled} after its backend was terminated`);
    assert.equal(classifyDbError(settled.error).retryable, true);
    assert.deepEqual(batches, [], 'rows of a read that failed were handed on');
  } finally {
    // The proxy goes first: closing it is what frees a read that hung.
    await proxy.close();
    await lease.release();
  }
});

test('a COMMIT that the server never answers fails within the bound set by the statement timeout', async () => {
  const proxy = await startPgHoldProxy(env.db.port, (type, body) => type === 'Q' && body.toString('utf8').startsWith('COMMIT'));
  const lease = registry.acquire(settings({ sslmode: 'disable', port: proxy.port, pool: { statementTimeoutMs: 1000 } }));
  try {
    const outcome = await settleWithin(readRows(lease.pool, 'SELECT id FROM items WHERE id <= 3', () => undefined), 30_000);
    assert.equal(outcome.settled, 'rejected', `the read ${outcome.settled} while its COMMIT got no answer`);
    const classified = classifyDbError(outcome.error);
    assert.equal(classified.retryable, true);
    assert.match(classified.message, /COMMIT/);
  } finally {
    await proxy.close();
    await lease.release();
  }
});

test("the pool's statement timeout is honoured and retryable", async () => {
  await withPool(
    async (lease) => {
      const started = performance.now();
      const classified = classifyDbError(await rejection(readAll(lease, 'SELECT pg_sleep(10) AS slept')));
      assert.equal(classified.code, '57014');
      assert.equal(classified.retryable, true);
      assert.ok(performance.now() - started < 5000, 'cancelled long before the sleep ends');
    },
    { pool: { statementTimeoutMs: 300 } },
  );
});

test('an abort cancels the statement on the server and rejects at once', async () => {
  await withPool(async (lease) => {
    const controller = new AbortController();
    const reading = readRows(lease.pool, 'SELECT pg_sleep(30) AS slept', () => undefined, { signal: controller.signal });
    // Wait until the server runs it.
    for (let i = 0; i < 100; i += 1) {
      const running = await env.sql("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'");
      if (running.rowCount === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const started = performance.now();
    controller.abort();
    const error = await rejection(reading);
    assert.ok(performance.now() - started < 1000);
    assert.equal((error as Error).name, 'AbortError');
    assert.equal(classifyDbError(error).retryable, true);
    // Closing our socket alone would leave the backend sleeping for 30 s: the cancel request stops it.
    let sleeping = 1;
    for (let i = 0; i < 40 && sleeping > 0; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      sleeping = (await env.sql("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'")).rowCount ?? 0;
    }
    assert.equal(sleeping, 0, 'the backend still runs the statement');
  });
});

test('an abort while waiting for a pooled connection rejects at once and the connection still goes back', async () => {
  await withPool(
    async (lease) => {
      let unblock = (): void => undefined;
      const blocked = new Promise<void>((resolve) => {
        unblock = resolve;
      });
      let firstBatch = (): void => undefined;
      const holding = new Promise<void>((resolve) => {
        firstBatch = resolve;
      });
      const first = readRows(lease.pool, 'SELECT 1 AS one', async () => {
        firstBatch();
        await blocked;
      });
      await holding;
      const controller = new AbortController();
      const second = readRows(lease.pool, 'SELECT 2 AS two', () => undefined, { signal: controller.signal });
      controller.abort();
      assert.equal(((await rejection(second)) as Error).name, 'AbortError');
      unblock();
      assert.equal((await first).rowCount, 1);
      assert.equal((await readAll(lease, 'SELECT 3 AS three')).rows[0]?.['three'], 3);
      assert.equal(lease.pool.waitingCount, 0);
    },
    { pool: { max: 1 } },
  );
});

test('templates see exact, printable values for each type', async () => {
  await withPool(async (lease) => {
    const { rows } = await readAll(
      lease,
      `SET LOCAL TimeZone = 'America/St_Johns';
       SELECT
         1::int2 AS int2, 2147483647::int4 AS int4, 9007199254740993::int8 AS int8,
         12345678901234567890.123456789::numeric AS numeric, 1.5::float4 AS float4, 0.1::float8 AS float8,
         'NaN'::float8 AS float8_nan, true AS bool_true, false AS bool_false,
         '{"a": [1, 2.5, {"b": null}], "big": 12345678901234567890}'::json AS json, '{"b": 1, "a": "x"}'::jsonb AS jsonb,
         'plain' AS text, 'v'::varchar AS varchar, '00000000-0000-0000-0000-00000000000a'::uuid AS uuid,
         '2024-02-29 23:59:59.123456'::timestamp AS timestamp,
         '2024-02-29 23:59:59.123456+05:30'::timestamptz AS timestamptz,
         '2024-12-31 23:30:00+00'::timestamptz AS timestamptz_local_new_year,
         '1850-01-01 00:00:00+00'::timestamptz AS timestamptz_lmt,
         'infinity'::timestamptz AS timestamptz_infinity,
         '2024-02-29'::date AS date, '0044-03-15 BC'::date AS date_bc,
         '12:34:56.5'::time AS time, '1 day 02:03:04'::interval AS interval,
         '\\x00ff10'::bytea AS bytea, ''::bytea AS bytea_empty,
         NULL::int4 AS null_int, NULL::text AS null_text, NULL::jsonb AS null_jsonb,
         ARRAY[1, NULL, 3]::int4[] AS int4_array, ARRAY[9007199254740993]::int8[] AS int8_array,
         ARRAY['a b', 'c,d', '"q"', 'back\\slash', 'NULL', NULL, '', '{x}'] AS text_array,
         ARRAY[1.10]::numeric[] AS numeric_array, ARRAY[true, false] AS bool_array,
         ARRAY['{"x": [1]}']::jsonb[] AS jsonb_array, ARRAY['2024-01-02']::date[] AS date_array,
         ARRAY['2024-01-02 03:04:05+00']::timestamptz[] AS timestamptz_array, ARRAY['\\x01ff'::bytea] AS bytea_array,
         ARRAY[ARRAY[1, 2], ARRAY[3, 4]] AS int_matrix, '{}'::int4[] AS empty_array, '[0:1]={7,8}'::int4[] AS offset_array`,
    );
    assert.deepEqual(rows[0], {
      int2: 1,
      int4: 2147483647,
      int8: '9007199254740993',
      numeric: '12345678901234567890.123456789',
      float4: 1.5,
      float8: 0.1,
      float8_nan: NaN,
      bool_true: true,
      bool_false: false,
      // JSON numbers are JavaScript numbers: a big one in JSON is rounded, as JSON.parse does everywhere.
      json: { a: [1, 2.5, { b: null }], big: 12345678901234567890 },
      jsonb: { a: 'x', b: 1 },
      text: 'plain',
      varchar: 'v',
      uuid: '00000000-0000-0000-0000-00000000000a',
      timestamp: '2024-02-29T23:59:59.123456',
      timestamptz: '2024-02-29T18:29:59.123456Z',
      timestamptz_local_new_year: '2024-12-31T23:30:00Z',
      timestamptz_lmt: '1850-01-01T00:00:00Z',
      timestamptz_infinity: 'infinity',
      date: '2024-02-29',
      // ISO 8601 expanded year, astronomical numbering (1 BC is year 0), as Date.prototype.toISOString prints it.
      date_bc: '-000043-03-15',
      time: '12:34:56.5',
      interval: 'P1DT2H3M4S',
      bytea: 'AP8Q',
      bytea_empty: '',
      null_int: null,
      null_text: null,
      null_jsonb: null,
      int4_array: [1, null, 3],
      int8_array: ['9007199254740993'],
      text_array: ['a b', 'c,d', '"q"', 'back\\slash', 'NULL', null, '', '{x}'],
      numeric_array: ['1.10'],
      bool_array: [true, false],
      jsonb_array: [{ x: [1] }],
      date_array: ['2024-01-02'],
      timestamptz_array: ['2024-01-02T03:04:05Z'],
      bytea_array: ['Af8='],
      int_matrix: [
        [1, 2],
        [3, 4],
      ],
      empty_array: [],
      offset_array: [7, 8],
    });
  });
});

test("the type mapping is private to Rowcast: pg's global parsers are untouched", async () => {
  const client = new pg.Client({ ...env.db });
  await client.connect();
  try {
    const { rows } = await client.query<{ ts: unknown; big: unknown }>("SELECT '2024-01-02 03:04:05+00'::timestamptz AS ts, 1::int8 AS big");
    assert.ok(rows[0]?.ts instanceof Date);
    assert.equal(rows[0].big, '1');
  } finally {
    await client.end();
  }
});
