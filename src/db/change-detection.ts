import type pg from 'pg';
import { parseQualifiedName } from './identifiers.ts';
import { readRows } from './read-rows.ts';

/**
 * `spec.changeDetection.mode: timestamp`: the largest value of the column, as
 * PostgreSQL prints it, or null for an empty table (or a column holding only
 * NULLs). The caller compares it with the last value it saw and skips the main
 * query when equal.
 *
 * Text, not Date: equality is all the caller needs and text keeps
 * microseconds (a Date would drop them, and two updates within one
 * millisecond would look like none). readRows pins DateStyle, so the form is
 * stable across the pool's connections.
 *
 * This sees inserts and updates that move the column, never deletes: the
 * caller keeps a periodic full sync for those (docs/database.md).
 *
 * Runs READ ONLY through readRows: a timestamp check can never write, whatever
 * the names hold; they are quoted, and anything that is not a plain or quoted
 * (schema-qualified) name is refused before a connection is taken.
 */
export async function maxTimestamp(pool: pg.Pool, table: string, column: string, signal?: AbortSignal): Promise<string | null> {
  const relation = parseQualifiedName(table, 'spec.changeDetection.tableName');
  const col = parseQualifiedName(column, 'spec.changeDetection.timestampColumn', { maxParts: 1 });
  let max: string | null = null;
  await readRows(
    pool,
    `SELECT max(${col.sql})::text AS max FROM ${relation.sql}`,
    (rows) => {
      const value = rows[0]?.['max'];
      max = typeof value === 'string' ? value : null;
    },
    signal === undefined ? {} : { signal },
  );
  return max;
}
