import type pg from 'pg';
import Cursor from 'pg-cursor';
import { cancelBackend } from './cancel.ts';
import { DbError } from './errors.ts';
import { ConnectionWatch, cleanupTimeoutMs, leavesSessionState, replyBoundMs } from './session-guard.ts';
import { splitStatements } from './split-statements.ts';
import { rowcastTypes } from './type-parsers.ts';

export interface QueryOptions {
  /** Rows per cursor fetch and per onBatch call; default 1000. */
  batchSize?: number;
  /** Aborting cancels the running statement on the server and rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface QueryResultSummary {
  columns: string[];
  rowCount: number;
}

export type Row = Record<string, unknown>;

export type BatchHandler = (rows: Row[], columns: string[]) => void | Promise<void>;

const defaultBatchSize = 1000;

/**
 * One round trip that opens the transaction and pins what the type parsers
 * rely on. The settings are LOCAL, so they end with the transaction. The
 * trailing SELECT takes the transaction's first snapshot: from then on
 * PostgreSQL refuses `SET TRANSACTION READ WRITE` (25001), so a setup
 * statement cannot lift READ ONLY.
 */
const beginSql = [
  'BEGIN TRANSACTION READ ONLY',
  "SET LOCAL DateStyle = 'ISO, YMD'",
  "SET LOCAL IntervalStyle = 'iso_8601'",
  "SET LOCAL bytea_output = 'hex'",
  'SELECT 1',
].join('; ');


/**
 * Runs `sql` in one READ ONLY transaction on one pooled connection: every
 * statement but the last as setup (e.g. `SET LOCAL statement_timeout = '5s'`),
 * then the last one's rows through a cursor, `batchSize` at a time, each batch
 * awaited in `onBatch` before the next is fetched, so memory follows the batch,
 * not the result.
 *
 * The pool's statement_timeout covers the whole read, including the time spent
 * in onBatch: the cursor's portal stays one statement until the last fetch.
 * Keep onBatch to in-memory work (rendering), not network calls.
 *
 * Any failure rolls back and the connection is destroyed rather than reused.
 */
export async function readRows(pool: pg.Pool, sql: string, onBatch: BatchHandler, options: QueryOptions = {}): Promise<QueryResultSummary> {
  const batchSize = options.batchSize ?? defaultBatchSize;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new DbError('ROWCAST_INVALID_OPTIONS', `batchSize must be a positive integer, got ${batchSize}`);
  const statements = splitStatements(sql);
  const last = statements.pop();
  if (last === undefined) throw new DbError('ROWCAST_EMPTY_QUERY', 'the query holds no statement');
  const { signal } = options;
  signal?.throwIfAborted();

  const client = await abortable(pool.connect(), signal, (late) => {
    late.release();
  });
  const connection = new ConnectionWatch(client, replyBoundMs(pool), 'the read');
  const cancel = (): void => {
    void cancelBackend(client, cleanupTimeoutMs);
  };
  signal?.addEventListener('abort', cancel, { once: true });

  let cursor: Cursor<Row> | undefined;
  // A cursor that has not failed may hold a suspended portal, which must be closed before anything else is sent.
  const cursorState = { failed: false };
  let keepConnection = true;
  try {
    await connection.reply(abortable(client.query(beginSql), signal), 'BEGIN');
    for (const [index, statement] of statements.entries()) {
      // Extended protocol: the server accepts exactly one statement, so a text this splitter misread cannot smuggle in a second.
      const config: pg.QueryConfig & { queryMode: 'extended' } = { text: statement, queryMode: 'extended' };
      await connection.reply(abortable(client.query(config), signal), `setup statement ${index + 1}`);
      if (client.getTransactionStatus() !== 'T') {
        throw new DbError('ROWCAST_TRANSACTION_ENDED', `setup statement ${index + 1} ended the read-only transaction: a query may not COMMIT or ROLLBACK`);
      }
      if (leavesSessionState(statement)) keepConnection = false;
    }
    if (leavesSessionState(last)) keepConnection = false;
    cursor = client.query(new Cursor<Row>(last, undefined, { types: rowcastTypes }));
    const summary = await readCursor(cursor, batchSize, onBatch, signal, cursorState, connection);
    await connection.reply(abortable(client.query('COMMIT'), signal), 'COMMIT');
    client.release(keepConnection ? undefined : true);
    return summary;
  } catch (error) {
    const failure = error instanceof Error ? error : new Error(String(error));
    if (connection.failure === undefined && signal?.aborted !== true) await rollback(client, cursorState.failed ? undefined : cursor);
    client.release(failure);
    throw failure;
  } finally {
    signal?.removeEventListener('abort', cancel);
    connection.dispose();
  }
}

/**
 * One statement Rowcast writes itself (a probe, never a user's query: it is
 * sent as a simple query, which would run a second statement hidden in the
 * text) in one round trip: `SET TRANSACTION READ ONLY; <statement>` as one
 * message. PostgreSQL runs a multi-statement message as one implicit
 * transaction, so the statement is READ ONLY exactly as under BEGIN READ
 * ONLY, and the transaction ends with the message, committed or rolled back:
 * no BEGIN, COMMIT or ROLLBACK round trips. statement_timeout is the pool's,
 * a session default sent at connect time.
 *
 * Nothing is pinned for the statement, unlike readRows: a probe's text is
 * compared only with an earlier probe's on the same pool, whose connections
 * share their defaults. So no bind parameters either: the names in the
 * statement are quoted by the caller.
 *
 * An SQL error keeps the connection (the server ended the transaction with
 * the message); a connection that failed, went silent or was cancelled by an
 * abort is destroyed.
 */
export async function readOneRow(pool: pg.Pool, statement: string, signal?: AbortSignal): Promise<Row | undefined> {
  if (leavesSessionState(statement)) throw new DbError('ROWCAST_INVALID_OPTIONS', 'a one-round-trip read must leave no session state');
  signal?.throwIfAborted();
  const client = await abortable(pool.connect(), signal, (late) => {
    late.release();
  });
  const connection = new ConnectionWatch(client, replyBoundMs(pool), 'the read');
  const cancel = (): void => {
    void cancelBackend(client, cleanupTimeoutMs);
  };
  signal?.addEventListener('abort', cancel, { once: true });
  try {
    const results = (await connection.reply(abortable(client.query(`SET TRANSACTION READ ONLY; ${statement}`), signal), 'the read')) as unknown as pg.QueryResult<Row>[];
    client.release();
    return results[1]?.rows[0];
  } catch (error) {
    const failure = error instanceof Error ? error : new Error(String(error));
    const clean = connection.failure === undefined && signal?.aborted !== true && client.getTransactionStatus() === 'I';
    client.release(clean ? undefined : failure);
    throw failure;
  } finally {
    signal?.removeEventListener('abort', cancel);
    connection.dispose();
  }
}

async function readCursor(
  cursor: Cursor<Row>,
  batchSize: number,
  onBatch: BatchHandler,
  signal: AbortSignal | undefined,
  state: { failed: boolean },
  connection: ConnectionWatch,
): Promise<QueryResultSummary> {
  let columns: string[] | undefined;
  let rowCount = 0;
  for (;;) {
    signal?.throwIfAborted();
    const batch = await connection.reply(abortable(readBatch(cursor, batchSize), signal), 'a cursor read').catch((error: unknown) => {
      state.failed = true;
      throw error;
    });
    columns ??= columnNames(batch.fields);
    if (batch.rows.length === 0) break;
    rowCount += batch.rows.length;
    await onBatch(batch.rows, columns);
    // A short batch means the server sent CommandComplete: the portal is closed already.
    if (batch.rows.length < batchSize) break;
  }
  await connection.reply(cursor.close(), 'closing the cursor');
  return { columns, rowCount };
}

function readBatch(cursor: Cursor<Row>, batchSize: number): Promise<{ rows: Row[]; fields: pg.FieldDef[] }> {
  return new Promise((resolve, reject) => {
    cursor.read(batchSize, (error, rows, result) => {
      // pg-cursor passes null, not undefined, when there is no error.
      if (error) reject(error);
      // A cursor read after its end answers without a result object.
      else resolve({ rows, fields: (result as pg.QueryResult | undefined)?.fields ?? [] });
    });
  });
}

/** Templates address columns by name: a result without names, or with one name twice, cannot be rendered faithfully. */
function columnNames(fields: pg.FieldDef[]): string[] {
  if (fields.length === 0) {
    throw new DbError(
      'ROWCAST_NO_RESULT_COLUMNS',
      'the last statement of the query returns no columns: it must be a SELECT, VALUES, TABLE or SHOW',
    );
  }
  const seen = new Set<string>();
  for (const { name } of fields) {
    if (name === '__proto__') throw new DbError('ROWCAST_RESERVED_COLUMN', 'a column may not be named "__proto__"; give it an alias');
    if (seen.has(name)) throw new DbError('ROWCAST_DUPLICATE_COLUMN', `the query returns two columns named "${name}"; give one of them an alias`);
    seen.add(name);
  }
  return [...seen];
}

/** Best effort and bounded: the connection is destroyed afterwards anyway, and the server rolls back on disconnect. */
async function rollback(client: pg.PoolClient, cursor: Cursor<Row> | undefined): Promise<void> {
  const attempt = async (): Promise<void> => {
    // A suspended portal (say onBatch threw mid-read) keeps the cursor as the client's active query; close it first or ROLLBACK waits behind it.
    // A failed cursor has already sent its Sync: closing it would put an unanswered Close on the wire.
    if (cursor !== undefined) await cursor.close().catch(() => undefined);
    if (client.getTransactionStatus() !== 'I') await client.query('ROLLBACK');
  };
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    attempt().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, cleanupTimeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/**
 * Settles with `promise`, or rejects with the signal's reason as soon as it
 * aborts. A promise that loses the race still has a handler, so its later
 * rejection is not an unhandled one; `onLateValue` disposes of a value that
 * arrives after the abort (a pool client that must go back).
 */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, onLateValue?: (value: T) => void): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason instanceof Error ? signal.reason : new DOMException('This operation was aborted', 'AbortError'));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) onLateValue?.(value);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
