import { canonicalJson } from './canonical-json.ts';
import { plainValue } from './plain-value.ts';

/** A row whose key cannot be read; `column` names the culprit. */
export class RowKeyError extends Error {
  readonly column: string;

  constructor(column: string, message: string) {
    super(message);
    this.name = 'RowKeyError';
    this.column = column;
  }
}

/**
 * The row's key. One column: its value as text (dates as ISO 8601, JSON
 * values as canonical JSON). Several: a JSON array of the values, types kept,
 * e.g. `["eu",42]`, so no separator inside a value can make two keys collide.
 * Throws RowKeyError for a missing or NULL key column.
 */
export function rowKeyOf(row: Record<string, unknown>, columns: readonly string[]): string {
  if (columns.length === 0) throw new RowKeyError('', 'no row key column was given');
  const values = columns.map((column) => {
    const value = Object.hasOwn(row, column) ? row[column] : undefined;
    if (value === undefined) {
      throw new RowKeyError(column, `the row has no column "${column}", which is part of the row key`);
    }
    if (value === null) throw new RowKeyError(column, `the row key column "${column}" is NULL`);
    return plainValue(value);
  });
  if (values.length === 1) {
    const only = values[0];
    if (typeof only === 'string') return only;
    if (typeof only === 'number' || typeof only === 'boolean') return String(only);
    return canonicalJson(only);
  }
  return canonicalJson(values);
}
