import { Buffer } from 'node:buffer';

const MAX_DEPTH = 100;

/**
 * The value as JSON can carry it: Date → ISO 8601 (UTC), bigint → decimal
 * string, bytes → base64, toJSON honoured, undefined/functions dropped from
 * objects. Returns the same reference when nothing had to change, so rows of
 * plain columns cost one pass and no copy.
 *
 * Handlebars would otherwise print a Date with Date#toString, whose text
 * depends on the process's time zone.
 */
export function plainValue(value: unknown, depth = 0): unknown {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
      return value;
    case 'bigint':
      return value.toString();
    case 'object':
      break;
    default:
      return undefined;
  }
  if (value === null) return null;
  if (depth > MAX_DEPTH) throw new RangeError(`value is nested deeper than ${MAX_DEPTH} levels`);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const plain = plainValue(item, depth + 1);
      if (plain !== item && copy === undefined) copy = value.slice(0, i);
      copy?.push(plain === undefined ? null : plain);
    }
    return copy ?? value;
  }
  const toJSON: unknown = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return plainValue(toJSON.call(value), depth + 1);
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  const keys = Object.keys(record);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    const item = record[key];
    const plain = plainValue(item, depth + 1);
    if (plain !== item && copy === undefined) {
      copy = {};
      for (let j = 0; j < i; j++) {
        const earlier = keys[j] as string;
        copy[earlier] = record[earlier];
      }
    }
    if (copy !== undefined && plain !== undefined) copy[key] = plain;
  }
  return copy ?? record;
}
