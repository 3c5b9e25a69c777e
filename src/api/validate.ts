import type { ArraySchema, MapSchema, ObjectSchema, Rule, Schema } from './schema.ts';

/** A path in the apiserver's notation (`spec.targets.clusters[1]`) and why it is wrong. */
export interface FieldError {
  readonly path: string;
  readonly message: string;
}

export type ParseResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly errors: readonly FieldError[] };

// The apiserver runs x-kubernetes-validations only when no error of these
// kinds was found (a missing required field, a wrong type, a value outside an
// enum): CEL over such an object would only add noise. Our rules are deferred
// and skipped the same way.
type ErrorKind = 'required' | 'type' | 'unsupported' | 'other';

class Collector {
  readonly errors: FieldError[] = [];
  readonly rules: (() => void)[] = [];
  blocked = false;

  add(path: string, message: string, kind: ErrorKind = 'other'): void {
    this.errors.push({ path, message });
    if (kind !== 'other') this.blocked = true;
  }

  defer<T>(rules: readonly Rule<T>[] | undefined, self: T, path: string): void {
    for (const rule of rules ?? []) {
      this.rules.push(() => {
        if (!rule.holds(self)) this.add(path + (rule.fieldPath ?? ''), rule.message);
      });
    }
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function childPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

const compiled = new Map<string, RegExp>();
function regex(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (re === undefined) {
    re = new RegExp(pattern, 'u');
    compiled.set(pattern, re);
  }
  return re;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function quoteAll(values: readonly string[]): string {
  return values.map((v) => JSON.stringify(v)).join(', ');
}

function walk(schema: Schema, value: unknown, path: string, c: Collector): unknown {
  switch (schema.type) {
    case 'string': {
      if (typeof value !== 'string') {
        c.add(path, `must be of type string, not ${typeName(value)}`, 'type');
        return value;
      }
      if (schema.enum !== undefined && !schema.enum.includes(value)) {
        c.add(path, `Unsupported value: ${JSON.stringify(value)}: supported values: ${quoteAll(schema.enum)}`, 'unsupported');
      }
      // The apiserver counts runes (code points), not UTF-16 units.
      const length = Array.from(value).length;
      if (schema.minLength !== undefined && length < schema.minLength) {
        c.add(path, `should be at least ${schema.minLength} chars long`);
      }
      if (schema.maxLength !== undefined && length > schema.maxLength) {
        // Already invalid; skipping the regexes keeps a huge value from
        // costing quadratic backtracking time.
        c.add(path, `may not be more than ${schema.maxLength} characters`);
        return value;
      }
      if (schema.pattern !== undefined && !regex(schema.pattern).test(value)) {
        c.add(path, `should match '${schema.pattern}'`);
      }
      c.defer(schema.rules, value, path);
      return value;
    }
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        c.add(path, `must be of type integer, not ${typeName(value)}`, 'type');
        return value;
      }
      if (schema.minimum !== undefined && value < schema.minimum) {
        c.add(path, `should be greater than or equal to ${schema.minimum}`);
      }
      if (schema.maximum !== undefined && value > schema.maximum) {
        c.add(path, `should be less than or equal to ${schema.maximum}`);
      }
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') c.add(path, `must be of type boolean, not ${typeName(value)}`, 'type');
      return value;
    case 'int-or-string':
      if (typeof value === 'string' || (typeof value === 'number' && Number.isInteger(value))) {
        c.defer(schema.rules, value, path);
      } else {
        c.add(path, `must be an integer or a string, not ${typeName(value)}`, 'type');
      }
      return value;
    case 'object':
      return walkObject(schema, value, path, c);
    case 'map':
      return walkMap(schema, value, path, c);
    case 'array':
      return walkArray(schema, value, path, c);
  }
}

// The apiserver prunes nulls before defaulting, so null and absent are one case.
function walkObject(schema: ObjectSchema, value: unknown, path: string, c: Collector): unknown {
  if (!isRecord(value)) {
    c.add(path, `must be of type object, not ${typeName(value)}`, 'type');
    return value;
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    // The apiserver drops unknown fields (with a warning); a typo deserves an
    // error here, as `kubectl apply`'s strict field validation gives one.
    if (!Object.hasOwn(schema.properties, key)) c.add(childPath(path, key), 'unknown field');
  }
  for (const [key, property] of Object.entries(schema.properties)) {
    const raw = value[key];
    const at = childPath(path, key);
    const fallback = 'default' in property ? property.default : undefined;
    if (raw !== undefined && raw !== null) {
      out[key] = walk(property, raw, at, c);
    } else if (fallback !== undefined) {
      out[key] = walk(property, structuredClone(fallback), at, c);
    } else if (schema.required?.includes(key) === true) {
      c.add(at, 'Required value', 'required');
    }
  }
  c.defer(schema.rules, out, path);
  return out;
}

function walkMap(schema: MapSchema, value: unknown, path: string, c: Collector): unknown {
  if (!isRecord(value)) {
    c.add(path, `must be of type object, not ${typeName(value)}`, 'type');
    return value;
  }
  const entries = Object.entries(value);
  if (schema.maxProperties !== undefined && entries.length > schema.maxProperties) {
    c.add(path, `should have at most ${schema.maxProperties} properties`);
  }
  return Object.fromEntries(entries.map(([key, v]) => [key, walk(schema.values, v, childPath(path, key), c)]));
}

function walkArray(schema: ArraySchema, value: unknown, path: string, c: Collector): unknown {
  if (!Array.isArray(value)) {
    c.add(path, `must be of type array, not ${typeName(value)}`, 'type');
    return value;
  }
  const items: readonly unknown[] = value;
  if (schema.minItems !== undefined && items.length < schema.minItems) {
    c.add(path, `should have at least ${schema.minItems} items`);
  }
  if (schema.maxItems !== undefined && items.length > schema.maxItems) {
    c.add(path, `must have at most ${schema.maxItems} items`);
  }
  const out = items.map((item, i) => walk(schema.items, item, `${path}[${i}]`, c));
  if (schema.listType === 'set' || schema.listType === 'map') {
    const seen = new Set<string>();
    out.forEach((item, i) => {
      const identity = listIdentity(schema, item);
      if (seen.has(identity)) c.add(`${path}[${i}]`, `Duplicate value: ${identity}`);
      seen.add(identity);
    });
  }
  c.defer(schema.rules, out, path);
  return out;
}

function listIdentity(schema: ArraySchema, item: unknown): string {
  if (schema.listType !== 'map' || !isRecord(item)) return JSON.stringify(item);
  return JSON.stringify((schema.listMapKeys ?? []).map((key) => item[key]));
}

/**
 * Checks `value` against `schema` the way the apiserver would for a create:
 * defaults applied first (nested ones too), then schema checks, then the
 * rules, unless a type or enum error makes them meaningless. Returns the
 * defaulted copy and every error found.
 */
export function validate(
  schema: Schema,
  value: unknown,
  path: string,
): { readonly value: unknown; readonly errors: readonly FieldError[] } {
  const c = new Collector();
  const out = value === undefined || value === null ? value : walk(schema, value, path, c);
  if (value === undefined || value === null) c.add(path, 'Required value', 'required');
  if (!c.blocked) for (const run of c.rules) run();
  return { value: out, errors: c.errors };
}
