import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import pg from 'pg';
import {
  DbError,
  ensureLedger,
  ledgerChunkSize,
  PoolRegistry,
  updateLedgerStatus,
  withConnectionDefaults,
  writeLedger,
  type LedgerEntry,
  type LedgerKey,
  type PoolLease,
} from '../src/db/index.ts';
import { waitFor } from './harness/ports.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';
import { quietLogger, rejection } from './helpers/db.ts';

const env = await openTestEnv('db-ledger');
failOnLeaks(env);

const registry = new PoolRegistry({ logger: quietLogger });
let lease: PoolLease;

before(() => {
  lease = registry.acquire(withConnectionDefaults({ ...env.db, sslmode: 'disable', pool: { idleTimeoutMs: 200 } }));
});

after(async () => {
  await registry.closeAll();
});

const appliedAt = new Date('2025-05-01T12:00:00.123Z');

function entry(overrides: Partial<LedgerEntry> & Pick<LedgerEntry, 'name'>): LedgerEntry {
  return {
    dqr: 'apps/users',
    cluster: 'eu-1',
    kind: 'ConfigMap',
    namespace: 'team-a',
    rowKey: overrides.name,
    apiVersion: 'v1',
    hash: 'h1',
    generation: 1,
    appliedAt,
    ...overrides,
  };
}

function keyOf(e: LedgerEntry): LedgerKey {
  return { dqr: e.dqr, cluster: e.cluster, kind: e.kind, namespace: e.namespace, name: e.name };
}

async function count(table: string): Promise<number> {
  const { rows } = await env.sql<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
  return Number(rows[0]?.n);
}

test('ensureLedger creates table and index, is idempotent, and is safe when controllers race', async () => {
  await ensureLedger(lease.pool, 'ledger_a');
  await ensureLedger(lease.pool, 'ledger_a');
  const { rows: columns } = await env.sql<{ column_name: string; data_type: string }>(
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'ledger_a' ORDER BY ordinal_position",
  );
  assert.deepEqual(
    columns.map((c) => `${c.column_name}:${c.data_type}`),
    [
      'dqr:text', 'cluster:text', 'row_key:text', 'api_version:text', 'kind:text', 'namespace:text', 'name:text', 'hash:text',
      'generation:bigint', 'applied_at:timestamp with time zone', 'status:jsonb', 'last_error:text',
    ],
  );
  const { rows: indexes } = await env.sql<{ indexdef: string }>("SELECT indexdef FROM pg_indexes WHERE tablename = 'ledger_a' ORDER BY indexname");
  assert.deepEqual(
    indexes.map((i) => i.indexdef.replace(/^.* USING /, '')),
    ['btree (dqr, row_key)', 'btree (dqr, cluster, kind, namespace, name)'],
  );

  // Eight controllers at once on a fresh table (each on its own connection).
  const racers = await Promise.allSettled(Array.from({ length: 8 }, () => ensureLedger(lease.pool, 'public.ledger_race')));
  assert.deepEqual(racers.filter((r) => r.status === 'rejected'), []);
  assert.equal(await count('ledger_race'), 0);

  // Schema-qualified and quoted; a long name gets a shortened index name.
  await env.sql('CREATE SCHEMA fleet');
  await ensureLedger(lease.pool, 'fleet."Ledger"');
  const long = 'l'.repeat(60);
  await ensureLedger(lease.pool, `fleet.${long}`);
  const { rows: fleetIndexes } = await env.sql<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE schemaname = 'fleet' AND indexdef LIKE '%(dqr, row_key)' ORDER BY indexname");
  assert.equal(fleetIndexes.length, 2);
  assert.ok(fleetIndexes.some((i) => i.indexname === 'Ledger_dqr_row_key_idx'));
  assert.ok(fleetIndexes.every((i) => Buffer.byteLength(i.indexname) <= 63), JSON.stringify(fleetIndexes));
});

test('ensureLedger survives a rival creating the same table at the same moment (23505/42P07)', async () => {
  // A rival that does not take Rowcast's advisory lock (another tool, or an older controller) creates the
  // table and has not committed yet: ensureLedger's CREATE TABLE IF NOT EXISTS cannot see it and waits on
  // the rival's catalog row, then fails with unique_violation once the rival commits.
  const { host, port, database, user, password } = env.db;
  const rival = new pg.Client({ host, port, database, user, password });
  await rival.connect();
  await rival.query('BEGIN');
  await rival.query(`CREATE TABLE ledger_rival (
    dqr text, cluster text, row_key text, api_version text, kind text, namespace text, name text, hash text,
    generation bigint, applied_at timestamptz, status jsonb, last_error text, PRIMARY KEY (dqr, cluster, kind, namespace, name))`);
  const ensuring = ensureLedger(lease.pool, 'ledger_rival');
  ensuring.catch(() => undefined); // awaited below; a rejection while we poll is not unhandled
  await waitFor(
    "ensureLedger's CREATE TABLE to wait on the rival",
    async () => {
      const { rows } = await env.sql<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'CREATE TABLE IF NOT EXISTS%'`,
      );
      return rows[0]?.n === '1';
    },
    5000,
    20,
  ).finally(() => rival.query('COMMIT').then(() => rival.end()));
  await ensuring;
  assert.equal(await count('ledger_rival'), 0);
});

test('ensureLedger refuses hostile names and a table that is not a ledger', async () => {
  for (const table of ['ledger; DROP TABLE x', 'a.b.c', 'ledger (id int)', '']) {
    const error = await rejection(ensureLedger(lease.pool, table));
    assert.ok(error instanceof DbError && /^spec\.ledger\.table: /.test(error.message), String(error));
  }
  await env.sql('CREATE TABLE not_a_ledger (dqr text, cluster text, name text)');
  const error = await rejection(ensureLedger(lease.pool, 'not_a_ledger'));
  assert.ok(error instanceof DbError);
  assert.equal(error.code, 'ROWCAST_LEDGER_SHAPE');
  assert.match(error.message, /lacks column\(s\) row_key, api_version, kind, namespace, hash, generation, applied_at, status, last_error/);
});

test('upserts and deletes; status kept unless given; updateLedgerStatus', async () => {
  await ensureLedger(lease.pool, 'ledger_b');
  const a = entry({ name: 'a' });
  const b = entry({ name: 'b', cluster: 'us-1' });
  const ns = entry({ name: 'cluster-wide', kind: 'Namespace', namespace: '' });
  await writeLedger(lease.pool, 'ledger_b', { upserts: [a, b, ns], deletes: [] });
  assert.equal(await count('ledger_b'), 3);

  await updateLedgerStatus(lease.pool, 'ledger_b', keyOf(a), { readyReplicas: 2, text: "it's \"fine\"" }, 'apply failed: 422');
  // A key the ledger does not hold stays absent.
  await updateLedgerStatus(lease.pool, 'ledger_b', keyOf(entry({ name: 'ghost' })), { x: 1 });
  assert.equal(await count('ledger_b'), 3);

  // A new apply of a: new hash and generation, status kept, last_error cleared.
  await writeLedger(lease.pool, 'ledger_b', { upserts: [{ ...a, hash: 'h2', generation: 2, rowKey: 'a2' }], deletes: [keyOf(b)] });
  const { rows } = await env.sql<{ name: string; hash: string; generation: string; row_key: string; status: unknown; last_error: string | null; applied_at: Date }>(
    'SELECT name, hash, generation, row_key, status, last_error, applied_at FROM ledger_b ORDER BY name',
  );
  assert.deepEqual(
    rows.map((r) => [r.name, r.hash, r.generation, r.row_key, r.status, r.last_error]),
    [
      ['a', 'h2', '2', 'a2', { readyReplicas: 2, text: "it's \"fine\"" }, null],
      ['cluster-wide', 'h1', '1', 'cluster-wide', null, null],
    ],
  );
  assert.equal(rows[0]?.applied_at.toISOString(), appliedAt.toISOString());

  // Status given in an upsert replaces; lastError given is written.
  await writeLedger(lease.pool, 'ledger_b', { upserts: [{ ...a, status: { readyReplicas: 3 }, lastError: 'conflict' }], deletes: [] });
  // updateLedgerStatus: lastError undefined keeps, null clears; status null clears.
  await updateLedgerStatus(lease.pool, 'ledger_b', keyOf(a), { readyReplicas: 4 });
  let row = (await env.sql<{ status: unknown; last_error: string | null }>("SELECT status, last_error FROM ledger_b WHERE name = 'a'")).rows[0];
  assert.deepEqual(row, { status: { readyReplicas: 4 }, last_error: 'conflict' });
  await updateLedgerStatus(lease.pool, 'ledger_b', keyOf(a), null, null);
  row = (await env.sql<{ status: unknown; last_error: string | null }>("SELECT status, last_error FROM ledger_b WHERE name = 'a'")).rows[0];
  assert.deepEqual(row, { status: null, last_error: null });

  // Duplicates in one call: the last one wins (ON CONFLICT would otherwise refuse to touch a row twice).
  await writeLedger(lease.pool, 'ledger_b', { upserts: [{ ...a, hash: 'x1' }, { ...a, hash: 'x2' }], deletes: [keyOf(ns), keyOf(ns)] });
  const final = await env.sql<{ name: string; hash: string }>('SELECT name, hash FROM ledger_b ORDER BY name');
  assert.deepEqual(final.rows, [{ name: 'a', hash: 'x2' }]);

  // Nothing to do: no transaction at all; a bad entry is refused before any SQL.
  await writeLedger(lease.pool, 'ledger_b', { upserts: [], deletes: [] });
  for (const bad of [{ generation: 1.5 }, { generation: -1 }, { appliedAt: new Date(Number.NaN) }]) {
    const error = await rejection(writeLedger(lease.pool, 'ledger_b', { upserts: [entry({ name: 'bad', ...bad })], deletes: [keyOf(a)] }));
    assert.ok(error instanceof DbError && error.code === 'ROWCAST_INVALID_LEDGER_ENTRY', String(error));
  }
  assert.equal(await count('ledger_b'), 1);
});

test('one transaction: a failure in the last chunk leaves nothing changed', async () => {
  await ensureLedger(lease.pool, 'ledger_c');
  await env.sql(`ALTER TABLE ledger_c ADD CONSTRAINT no_poison CHECK (name <> 'poison')`);
  const existing = Array.from({ length: 100 }, (_, i) => entry({ name: `old-${i}` }));
  await writeLedger(lease.pool, 'ledger_c', { upserts: existing, deletes: [] });
  const before = await env.sql('SELECT * FROM ledger_c ORDER BY name');

  const upserts = Array.from({ length: ledgerChunkSize + 1000 }, (_, i) => entry({ name: `new-${i}` }));
  upserts.push(entry({ name: 'poison' })); // in the second chunk, after the deletes and the first chunk went through
  const error = await rejection(writeLedger(lease.pool, 'ledger_c', { upserts, deletes: existing.slice(0, 50).map(keyOf) }));
  assert.equal((error as { code?: string }).code, '23514');
  const afterFailure = await env.sql('SELECT * FROM ledger_c ORDER BY name');
  assert.deepEqual(afterFailure.rows, before.rows);
});

test('10,000 entries in one batch; a concurrent reader sees before or after, never half', async () => {
  await ensureLedger(lease.pool, 'rowcast_perf');
  const old = Array.from({ length: 5000 }, (_, i) => entry({ name: `old-${i}`, cluster: `c-${i % 3}` }));
  await writeLedger(lease.pool, 'rowcast_perf', { upserts: old, deletes: [] });

  const fresh = Array.from({ length: 10_000 }, (_, i) =>
    entry({ name: `obj-${i}`, cluster: `c-${i % 3}`, kind: i % 2 === 0 ? 'ConfigMap' : 'Secret', status: { i } }),
  );
  const seen = new Set<number>();
  const reading = { done: false, reads: 0 };
  const reader = (async () => {
    while (!reading.done) {
      seen.add(await count('rowcast_perf'));
      reading.reads += 1;
    }
  })();
  const started = performance.now();
  await writeLedger(lease.pool, 'rowcast_perf', { upserts: fresh, deletes: old.map(keyOf) });
  const insertMs = performance.now() - started;
  reading.done = true;
  await reader;
  assert.ok(reading.reads >= 3, `only ${reading.reads} reads overlapped the write`);
  seen.add(await count('rowcast_perf'));
  assert.deepEqual([...seen].filter((n) => n !== 5000 && n !== 10_000), [], `reader saw ${JSON.stringify([...seen])}`);
  assert.ok(seen.has(10_000));

  const again = performance.now();
  await writeLedger(lease.pool, 'rowcast_perf', { upserts: fresh.map((e) => ({ ...e, hash: 'h2', status: undefined })), deletes: [] });
  const updateMs = performance.now() - again;
  process.stdout.write(
    `# ledger: 10,000 inserts + 5,000 deletes in ${Math.round(insertMs)} ms (${reading.reads} concurrent reads); 10,000 updates (ON CONFLICT) in ${Math.round(updateMs)} ms\n`,
  );
  const { rows } = await env.sql<{ n: string }>("SELECT count(*) AS n FROM rowcast_perf WHERE hash = 'h2' AND status IS NOT NULL");
  assert.equal(rows[0]?.n, '10000');
});

/** The SQL blocks of docs/database.md that start with `-- fleet: <name>`. */
async function documentedQueries(): Promise<Map<string, string>> {
  const markdown = await readFile(new URL('../docs/database.md', import.meta.url), 'utf8');
  const queries = new Map<string, string>();
  for (const match of markdown.matchAll(/```sql\n(-- fleet: ([a-z-]+)\n[\s\S]*?)```/g)) {
    const [, sql, name] = match;
    if (sql !== undefined && name !== undefined) queries.set(name, sql);
  }
  return queries;
}

test('the fleet queries of docs/database.md answer correctly on a small fixture', async () => {
  const queries = await documentedQueries();
  assert.deepEqual([...queries.keys()].sort(), ['failures-by-cluster', 'objects-per-cluster-and-kind', 'rows-missing-on-cluster']);

  await ensureLedger(lease.pool, 'rowcast_ledger');
  await env.sql(`CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
    INSERT INTO users VALUES (1, 'ada'), (2, 'grace'), (3, 'linus'), (4, 'barbara')`);
  const objects = (id: number, cluster: string, lastError: string | null = null): LedgerEntry[] => [
    entry({ dqr: 'apps/users', cluster, rowKey: String(id), kind: 'ConfigMap', namespace: 'team-a', name: `user-${id}`, lastError }),
    entry({ dqr: 'apps/users', cluster, rowKey: String(id), kind: 'Secret', namespace: 'team-a', name: `user-${id}` }),
  ];
  await writeLedger(lease.pool, 'rowcast_ledger', {
    upserts: [
      // eu-1 has users 1 and 3 (3 with a failed ConfigMap); us-1 has all four, user 2's ConfigMap failed.
      ...objects(1, 'fleet/eu-1'),
      ...objects(3, 'fleet/eu-1', 'admission webhook denied the request'),
      ...objects(1, 'fleet/us-1'),
      ...objects(2, 'fleet/us-1', 'field is immutable'),
      ...objects(3, 'fleet/us-1'),
      ...objects(4, 'fleet/us-1'),
      // Another DQR's objects on eu-1 for user 2: not this DQR's, so user 2 is still missing there.
      entry({ dqr: 'apps/other', cluster: 'fleet/eu-1', rowKey: '2', kind: 'ConfigMap', name: 'other-2' }),
      entry({ dqr: 'apps/other', cluster: 'fleet/eu-1', rowKey: '9', kind: 'ConfigMap', name: 'other-9', lastError: 'quota exceeded' }),
    ],
    deletes: [],
  });

  const run = async (name: string): Promise<unknown[]> => (await env.sql(queries.get(name) ?? assert.fail(name))).rows;

  assert.deepEqual(await run('rows-missing-on-cluster'), [
    { id: '2', name: 'grace' },
    { id: '4', name: 'barbara' },
  ]);
  assert.deepEqual(await run('failures-by-cluster'), [
    {
      cluster: 'fleet/eu-1',
      failed: '2',
      objects: ['ConfigMap team-a/other-9: quota exceeded', 'ConfigMap team-a/user-3: admission webhook denied the request'],
    },
    { cluster: 'fleet/us-1', failed: '1', objects: ['ConfigMap team-a/user-2: field is immutable'] },
  ]);
  assert.deepEqual(await run('objects-per-cluster-and-kind'), [
    { cluster: 'fleet/eu-1', kind: 'ConfigMap', objects: '2' },
    { cluster: 'fleet/eu-1', kind: 'Secret', objects: '2' },
    { cluster: 'fleet/us-1', kind: 'ConfigMap', objects: '4' },
    { cluster: 'fleet/us-1', kind: 'Secret', objects: '4' },
  ]);
});
