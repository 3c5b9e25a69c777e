import type pg from 'pg';
import { parseQualifiedName } from './identifiers.ts';
import { readOneRow } from './read-rows.ts';

/**
 * `spec.changeDetection.mode: timestamp`: the largest value of the column, as
 * PostgreSQL prints it, or null for an empty table (or a column holding only
 * NULLs). The caller compares it with the last value it saw and skips the main
 * query when equal.
 *
 * Text, not Date: equality is all the caller needs and text keeps
 * microseconds (a Date would drop them, and two updates within one
 * millisecond would look like none). The form follows the session's DateStyle,
 * which every connection of a pool takes from the same server defaults.
 *
 * This sees inserts and updates that move the column, never deletes: the
 * caller keeps a periodic full sync for those (docs/database.md).
 *
 * One round trip, READ ONLY (readOneRow): a timestamp check can never write,
 * whatever the names hold; they are quoted, and anything that is not a plain
 * or quoted (schema-qualified) name is refused before a connection is taken.
 */
export async function maxTimestamp(pool: pg.Pool, table: string, column: string, signal?: AbortSignal): Promise<string | null> {
  return (await readMaxTimestamp(pool, table, column, signal)).max;
}

export interface MaxTimestamp {
  /** max(column) as PostgreSQL prints it; null for an empty table. */
  max: string | null;
  /**
   * The same value as milliseconds since the epoch when the column is a
   * timestamp (with or without time zone) or a date: when the latest change
   * happened, by the writer's clock. A `timestamp without time zone` is read
   * in the session's TimeZone, as the writer's now() stored it. Undefined for
   * any other type (a version counter says nothing about time).
   */
  at: number | undefined;
}

/** maxTimestamp with the value's instant, in the same one statement. */
export async function readMaxTimestamp(pool: pg.Pool, table: string, column: string, signal?: AbortSignal): Promise<MaxTimestamp> {
  const relation = parseQualifiedName(table, 'spec.changeDetection.tableName');
  const col = parseQualifiedName(column, 'spec.changeDetection.timestampColumn', { maxParts: 1 });
  // Through text, so the cast is checked only on the branch taken: an integer column never meets it.
  // JSON's text of a date or time is ISO 8601 with a numeric offset whatever the session's DateStyle, so it reads back exactly.
  const instant = `CASE WHEN pg_typeof(m) IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN extract(epoch FROM (to_json(m) #>> '{}')::timestamptz)::float8 END`;
  const row = await readOneRow(pool, `SELECT m::text AS max, ${instant} AS at FROM (SELECT max(${col.sql}) AS m FROM ${relation.sql}) AS latest`, signal);
  const value = row?.['max'];
  const at = row?.['at'];
  return { max: typeof value === 'string' ? value : null, at: typeof at === 'number' && Number.isFinite(at) ? at * 1000 : undefined };
}
