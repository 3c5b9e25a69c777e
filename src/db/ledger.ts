import { createHash } from 'node:crypto';
import type pg from 'pg';
import { DbError } from './errors.ts';
import { parseQualifiedName, quoteIdentifier, type QualifiedName } from './identifiers.ts';

/** One managed object on one member cluster. */
export interface LedgerKey {
  /** The DatabaseQueryResource, `namespace/name`. */
  dqr: string;
  cluster: string;
  kind: string;
  /** '' for cluster-scoped objects. */
  namespace: string;
  name: string;
}

export interface LedgerEntry extends LedgerKey {
  rowKey: string;
  apiVersion: string;
  hash: string;
  generation: number;
  appliedAt: Date;
  /** Written as given; undefined or null clears it (an upsert records an apply, which starts clean unless it says otherwise). */
  lastError?: string | null;
  /** Written when given (not undefined or null); otherwise the stored status is kept. updateLedgerStatus(…, null) clears it. */
  status?: unknown;
}

export interface LedgerChange {
  upserts: readonly LedgerEntry[];
  deletes: readonly LedgerKey[];
}

/** Every column writeLedger and updateLedgerStatus use; an existing table must have them all. */
const columns = ['dqr', 'cluster', 'row_key', 'api_version', 'kind', 'namespace', 'name', 'hash', 'generation', 'applied_at', 'status', 'last_error'] as const;

/** Rows per statement: bounds the size of one message (a few MB) while keeping round trips few. */
export const ledgerChunkSize = 5000;

/** Classid of Rowcast's advisory locks (ASCII "rowc"), so they cannot meet a user's own lock keys by accident. */
const advisoryClass = 0x726f_7763;

const field = 'spec.ledger.table';

function ledgerTable(table: string): QualifiedName {
  return parseQualifiedName(table, field);
}

/**
 * The index name: `<table>_dqr_row_key_idx` when that fits in 63 bytes,
 * otherwise the table name shortened with a hash, since PostgreSQL would
 * truncate a longer one and two ledgers could end up sharing a name.
 */
function indexName(relation: QualifiedName): string {
  const suffix = '_dqr_row_key_idx';
  const plain = `${relation.name}${suffix}`;
  if (Buffer.byteLength(plain) <= 63) return plain;
  const hash = createHash('sha256').update(relation.sql).digest('hex').slice(0, 8);
  let base = relation.name;
  while (Buffer.byteLength(`${base}_${hash}${suffix}`) > 63) base = Array.from(base).slice(0, -1).join('');
  return `${base}_${hash}${suffix}`;
}

/**
 * Creates the ledger table and its (dqr, row_key) index if the table does not
 * exist, then checks that the table has every column Rowcast writes. Idempotent and
 * safe when controllers race: the DDL runs under a transaction-scoped
 * advisory lock on the table's name, and 23505 (unique_violation on pg_type,
 * which two concurrent CREATE TABLE IF NOT EXISTS can raise) or 42P07 from a
 * creator that does not take the lock is answered by trying once more, which
 * then finds the table.
 */
export async function ensureLedger(pool: pg.Pool, table: string): Promise<void> {
  const relation = ledgerTable(table);
  // A ledger that exists is left as it is: CREATE … IF NOT EXISTS still needs CREATE on the schema, which a
  // role writing to a table a DBA prepared need not have.
  const existing = await pool.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [relation.sql]);
  if (existing.rows[0]?.found !== true) await createLedger(pool, relation);
  const { rows } = await pool.query<{ attname: string }>(
    'SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped',
    [relation.sql],
  );
  const present = new Set(rows.map((row) => row.attname));
  const missing = columns.filter((column) => !present.has(column));
  if (missing.length > 0) {
    throw new DbError('ROWCAST_LEDGER_SHAPE', `${field}: the existing table ${relation.sql} is not a Rowcast ledger: it lacks column(s) ${missing.join(', ')}`);
  }
}

async function createLedger(pool: pg.Pool, relation: QualifiedName): Promise<void> {
  const ddl = [
    `CREATE TABLE IF NOT EXISTS ${relation.sql} (
      dqr text NOT NULL,
      cluster text NOT NULL,
      row_key text NOT NULL,
      api_version text NOT NULL,
      kind text NOT NULL,
      namespace text NOT NULL,
      name text NOT NULL,
      hash text NOT NULL,
      generation bigint NOT NULL,
      applied_at timestamptz NOT NULL,
      status jsonb,
      last_error text,
      PRIMARY KEY (dqr, cluster, kind, namespace, name)
    )`,
    `CREATE INDEX IF NOT EXISTS ${quoteIdentifier(indexName(relation))} ON ${relation.sql} (dqr, row_key)`,
  ];
  for (let attempt = 1; ; attempt++) {
    try {
      await inTransaction(pool, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock($1::int4, hashtext($2))', [advisoryClass, relation.sql]);
        for (const statement of ddl) await client.query(statement);
      });
      return;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (attempt >= 3 || (code !== '23505' && code !== '42P07')) throw error;
    }
  }
}

/**
 * Records one sync's changes to the ledger in ONE transaction, so a reader
 * sees the whole sync or none of it. Deletes run first, then upserts, each as
 * a few statements over unnest() of array parameters (ledgerChunkSize rows per
 * statement), not one statement per row. Within one call, the last entry for
 * a key wins.
 */
export async function writeLedger(pool: pg.Pool, table: string, change: LedgerChange): Promise<void> {
  const relation = ledgerTable(table);
  const upserts = lastPerKey(change.upserts);
  const deletes = lastPerKey(change.deletes);
  for (const entry of upserts) validateEntry(entry);
  if (upserts.length === 0 && deletes.length === 0) return;

  const deleteSql = `DELETE FROM ${relation.sql} AS l
    USING unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS d(dqr, cluster, kind, namespace, name)
    WHERE l.dqr = d.dqr AND l.cluster = d.cluster AND l.kind = d.kind AND l.namespace = d.namespace AND l.name = d.name`;
  const upsertSql = `INSERT INTO ${relation.sql} AS l (${columns.join(', ')})
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::int8[], $10::timestamptz[], $11::jsonb[], $12::text[])
    ON CONFLICT (dqr, cluster, kind, namespace, name) DO UPDATE SET
      row_key = excluded.row_key, api_version = excluded.api_version, hash = excluded.hash,
      generation = excluded.generation, applied_at = excluded.applied_at,
      status = coalesce(excluded.status, l.status), last_error = excluded.last_error`;

  await inTransaction(pool, async (client) => {
    for (const chunk of chunks(deletes)) {
      await client.query(deleteSql, [
        chunk.map((k) => k.dqr),
        chunk.map((k) => k.cluster),
        chunk.map((k) => k.kind),
        chunk.map((k) => k.namespace),
        chunk.map((k) => k.name),
      ]);
    }
    for (const chunk of chunks(upserts)) {
      await client.query(upsertSql, [
        chunk.map((e) => e.dqr),
        chunk.map((e) => e.cluster),
        chunk.map((e) => e.rowKey),
        chunk.map((e) => e.apiVersion),
        chunk.map((e) => e.kind),
        chunk.map((e) => e.namespace),
        chunk.map((e) => e.name),
        chunk.map((e) => e.hash),
        chunk.map((e) => e.generation),
        chunk.map((e) => e.appliedAt.toISOString()),
        chunk.map((e) => jsonOrNull(e.status)),
        chunk.map((e) => e.lastError ?? null),
      ]);
    }
  });
}

/**
 * Records a managed object's status as seen on its member (null clears it)
 * and, when given, its last error (null clears it; undefined keeps it). An
 * object the ledger does not hold is left alone: the next sync's upsert
 * creates it, and a status write must not resurrect a pruned object.
 */
/** What one DQR's ledger rows say it wrote: each cluster, with the kinds there. */
export async function ledgerFootprint(pool: pg.Pool, table: string, dqr: string): Promise<{ cluster: string; apiVersion: string; kind: string }[]> {
  const relation = ledgerTable(table);
  const { rows } = await pool.query<{ cluster: string; api_version: string; kind: string }>(
    `SELECT DISTINCT cluster, api_version, kind FROM ${relation.sql} WHERE dqr = $1`,
    [dqr],
  );
  return rows.map((r) => ({ cluster: r.cluster, apiVersion: r.api_version, kind: r.kind }));
}

export async function updateLedgerStatus(pool: pg.Pool, table: string, key: LedgerKey, status: unknown, lastError?: string | null): Promise<void> {
  const relation = ledgerTable(table);
  await pool.query(
    `UPDATE ${relation.sql} SET status = $6::jsonb, last_error = CASE WHEN $8::bool THEN $7::text ELSE last_error END
      WHERE dqr = $1 AND cluster = $2 AND kind = $3 AND namespace = $4 AND name = $5`,
    [key.dqr, key.cluster, key.kind, key.namespace, key.name, jsonOrNull(status), lastError ?? null, lastError !== undefined],
  );
}

function keyOf(key: LedgerKey): string {
  return JSON.stringify([key.dqr, key.cluster, key.kind, key.namespace, key.name]);
}

/** ON CONFLICT DO UPDATE refuses to touch one row twice in a statement (21000): keep the last of each key. */
function lastPerKey<T extends LedgerKey>(items: readonly T[]): T[] {
  const byKey = new Map<string, T>();
  for (const item of items) {
    const key = keyOf(item);
    byKey.delete(key);
    byKey.set(key, item);
  }
  return [...byKey.values()];
}

/** Checked before the transaction starts, so a bad entry costs no round trip and names itself. */
function validateEntry(entry: LedgerEntry): void {
  const fail = (why: string): never => {
    throw new DbError('ROWCAST_INVALID_LEDGER_ENTRY', `ledger entry ${entry.kind} ${entry.namespace}/${entry.name} on ${entry.cluster}: ${why}`);
  };
  if (!Number.isSafeInteger(entry.generation) || entry.generation < 0) fail(`generation must be a non-negative integer, got ${entry.generation}`);
  if (!(entry.appliedAt instanceof Date) || Number.isNaN(entry.appliedAt.getTime())) fail('appliedAt is not a valid date');
}

function jsonOrNull(value: unknown): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value);
}

function* chunks<T>(items: readonly T[]): Generator<readonly T[]> {
  for (let i = 0; i < items.length; i += ledgerChunkSize) yield items.slice(i, i + ledgerChunkSize);
}

/**
 * BEGIN … COMMIT on one pooled client. On failure: ROLLBACK, and the client
 * is released with the error so pg destroys it rather than reuse a
 * connection in an unknown state.
 */
async function inTransaction(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await pool.connect();
  // A connection that dies while checked out emits 'error' on the client; without a listener that crashes Node.
  const onError = (): void => undefined;
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    await work(client);
    await client.query('COMMIT');
    client.release();
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release(error instanceof Error ? error : true);
    throw error;
  } finally {
    client.removeListener('error', onError);
  }
}
