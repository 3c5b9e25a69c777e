import { hash } from 'node:crypto';

/** Deeper than any manifest; also how a circular value is caught. */
const MAX_DEPTH = 1000;

export interface SortOptions {
  /** Refuse NaN and ±Infinity instead of writing null (they come from YAML's .nan and .inf). */
  strictNumbers?: boolean;
  /** Values (nodes) the copy may hold at most; YAML aliases can make a few bytes expand enormously. */
  budget?: { nodes: number };
}

/**
 * Canonical JSON: object keys sorted, so two values that differ only in key
 * order give the same text. Otherwise JSON.stringify's rules: toJSON is
 * honoured, undefined/functions/symbols are dropped from objects and become
 * null in arrays, non-finite numbers become null. Throws TypeError for a
 * bigint and for a circular (or absurdly deep) value.
 *
 * Keys sort by UTF-16 code units, except that integer-like keys ("7", "10")
 * come first in numeric order, as JavaScript objects keep them; both orders
 * depend only on the set of keys, which is what stability needs.
 */
export function canonicalJson(value: unknown): string {
  // JSON.stringify(undefined) is undefined; a hash input must be text.
  const text: unknown = JSON.stringify(sortedCopy(value));
  return typeof text === 'string' ? text : 'null';
}

/** sha256 of the canonical JSON, as 32 hex characters (128 bits). */
export function contentHash(value: unknown): string {
  return hashText(canonicalJson(value));
}

/** The first 32 hex characters of the text's sha256. */
export function hashText(text: string): string {
  return sha256Hex(text).slice(0, 32);
}

export function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

/**
 * A fresh copy with every object's keys inserted in sorted order, so that
 * JSON.stringify of it is canonical. Shared (aliased) subtrees come out as
 * separate copies. Building the copy and letting the engine's JSON.stringify
 * write it is faster than writing canonical text by hand.
 */
export function sortedCopy(value: unknown, options: SortOptions = {}): unknown {
  return copy(value, 0, options.strictNumbers === true, options.budget);
}

/**
 * sortedCopy of `record` with `extra` entries merged in (replacing keys of
 * the same name), for stamping a copy without building an unsorted one first.
 * Values given in `extra` are taken as they are, not copied.
 */
export function sortedCopyWith(
  record: Record<string, unknown> | undefined,
  extra: Readonly<Record<string, unknown>>,
  options: SortOptions = {},
): Record<string, unknown> {
  const strictNumbers = options.strictNumbers === true;
  const keys = record === undefined ? [] : Object.keys(record);
  for (const key of Object.keys(extra)) if (record === undefined || !Object.hasOwn(record, key)) keys.push(key);
  keys.sort();
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const item = Object.hasOwn(extra, key) ? extra[key] : copy(record?.[key], 1, strictNumbers, options.budget);
    if (key === '__proto__') Object.defineProperty(out, key, { value: item, enumerable: true, writable: true, configurable: true });
    else out[key] = item;
  }
  return out;
}

function copy(value: unknown, depth: number, strictNumbers: boolean, budget: { nodes: number } | undefined): unknown {
  if (budget !== undefined && --budget.nodes < 0) throw new RangeError('the value expands to too many nodes (YAML aliases?)');
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'number' && strictNumbers && !Number.isFinite(value)) {
      throw new TypeError('a number JSON cannot carry (.inf or .nan)');
    }
    if (typeof value === 'bigint') throw new TypeError('a bigint has no JSON form');
    return value;
  }
  if (depth > MAX_DEPTH) throw new TypeError('the value is circular or nested too deeply');
  if (Array.isArray(value)) {
    const out: unknown[] = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = copy(value[i], depth + 1, strictNumbers, budget);
    return out;
  }
  const toJSON: unknown = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return copy(toJSON.call(value), depth + 1, strictNumbers, budget);
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length > 1) keys.sort();
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const item = copy(record[key], depth + 1, strictNumbers, budget);
    // Assigning "__proto__" would set the copy's prototype instead of a key.
    if (key === '__proto__') Object.defineProperty(out, key, { value: item, enumerable: true, writable: true, configurable: true });
    else out[key] = item;
  }
  return out;
}
