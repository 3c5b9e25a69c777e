import { Buffer } from 'node:buffer';
import Handlebars from 'handlebars';
import { dump } from 'js-yaml';
import { sha256Hex } from './canonical-json.ts';
import { HelperError, MissingFieldError, type TemplateLocation } from './errors.ts';
import { NOT_SINGLE_QUOTABLE, blockText, doubleQuotedContent, escapeForYaml, jsonQuote, plainScalar, singleQuotedContent } from './escape.ts';
import type { BlockContext, OutputContext } from './output-context.ts';
import { plainValue } from './plain-value.ts';

/** What Handlebars passes as a helper's last argument (the parts we read). */
interface HelperCallOptions {
  loc?: { start?: { line: number; column: number } };
  data?: { rowcastClock?: () => Date };
}

interface HelperSpec {
  usage: string;
  min: number;
  max: number;
  /**
   * a and b are the first two arguments (undefined when not given); args
   * holds them all, for variadic helpers only: building it costs on every call.
   */
  run: (a: unknown, b: unknown, options: HelperCallOptions, args: readonly unknown[]) => unknown;
}

function unary(usage: string, run: (value: unknown) => unknown): HelperSpec {
  return { usage, min: 1, max: 1, run };
}

/** A helper as Handlebars calls it: positional arguments, then the options hash. */
export type HandlebarsHelper = (...args: unknown[]) => unknown;

/**
 * Internal helper the compiler wraps around every `{{...}}` output so that what
 * reaches the manifest is text: objects and arrays would otherwise print as
 * "[object Object]" or "a,b" and undefined (a lenient lookup) as nothing.
 */
export const OUTPUT_HELPER = '__rowcastOutput';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const MAX_INDENT = 1000;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function locationOf(options: HelperCallOptions): TemplateLocation | undefined {
  const start = options.loc?.start;
  return start === undefined ? undefined : { line: start.line, column: start.column + 1 };
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

/**
 * What indent and nindent make of text that is not already YAML (a row
 * value): where it lands decides how it is written (see writeOutput).
 */
class IndentedText {
  readonly width: number;
  readonly newline: boolean;
  readonly text: string;

  constructor(width: number, newline: boolean, text: string) {
    this.width = width;
    this.newline = newline;
    this.text = text;
  }

  toString(): string {
    return (this.newline ? '\n' : '') + indentLines(this.width, this.text);
  }

  #prefix(): string {
    return (this.newline ? '\n' : '') + ' '.repeat(this.width);
  }

  /** Outside a block scalar the text is one scalar, quoted when it is not a word. */
  plain(): string {
    return this.#prefix() + plainScalar(this.text);
  }

  /** Lands inside the block scalar whose edge it starts at, or is one plain scalar. */
  atBlockEdge(edge: BlockContext): string {
    const column = this.newline ? this.width : edge.column + this.width;
    return column > edge.parent ? this.inBlock(edge) : this.plain();
  }

  inBlock(context: BlockContext): string {
    return blockText(this.text, {
      prefix: this.#prefix(),
      firstColumn: this.newline ? this.width : context.column + this.width,
      restColumn: this.width,
      parent: context.parent,
      contentIndent: context.contentIndent,
    });
  }
}

/** Scalars as text; null and undefined as ''; collections refused. */
export function text(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    case 'undefined':
      return '';
    default:
      break;
  }
  if (value === null) return '';
  if (value instanceof Handlebars.SafeString || value instanceof IndentedText) return value.toString();
  if (value instanceof Date) return isoDate(value);
  // bytea columns: base64 is the only text form that keeps every byte.
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  throw new Error(`expected text but got ${kindOf(value)} (render it with toJson or toYaml)`);
}

function isoDate(value: Date): string {
  if (Number.isNaN(value.getTime())) throw new Error('invalid date');
  return value.toISOString();
}

function truthy(value: unknown): boolean {
  return Array.isArray(value) ? value.length > 0 : Boolean(value);
}

function count(value: unknown): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_INDENT) {
    throw new Error(`the width must be an integer from 0 to ${MAX_INDENT}`);
  }
  return n;
}

function indentLines(width: number, value: string): string {
  const pad = ' '.repeat(width);
  // Blank lines stay blank: trailing spaces would only add noise, and inside a
  // block scalar a blank line means the same whatever its indentation.
  return value
    .split('\n')
    .map((line) => (line === '' || line === '\r' ? line : pad + line))
    .join('\n');
}

/** YAML from a structure helper stays YAML, indented; any other text stays a value. */
function indented(width: number, newline: boolean, value: unknown): Handlebars.SafeString | IndentedText {
  if (value instanceof Handlebars.SafeString) return new Handlebars.SafeString((newline ? '\n' : '') + indentLines(width, value.toString()));
  return new IndentedText(width, newline, text(value));
}

// YYYY-MM-DD, optionally with a time and a UTC offset; no offset means UTC.
const ISO_LIKE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;

export function parseDate(value: unknown): Date {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new Error('invalid date');
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('invalid date');
    return new Date(value);
  }
  if (typeof value !== 'string') throw new Error(`expected a date but got ${kindOf(value)}`);
  const m = ISO_LIKE.exec(value.trim());
  if (m === null) throw new Error('expected an ISO 8601 date such as 2024-05-01 or 2024-05-01T12:00:00Z');
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((part) =>
    part === undefined ? 0 : Number(part),
  ) as [number, number, number, number, number, number];
  const millis = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  let time = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  const check = new Date(time);
  // Date.UTC rolls 2024-02-30 over into March; a calendar date must not move.
  if (
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day ||
    check.getUTCHours() !== hour ||
    check.getUTCMinutes() !== minute
  ) {
    throw new Error('expected a real calendar date and time');
  }
  if (m[9] !== undefined) {
    const offset = (Number(m[10]) * 60 + Number(m[11] ?? 0)) * 60_000;
    time += m[9] === '+' ? -offset : offset;
  }
  return new Date(time);
}

const DATE_TOKENS = /\[([^\]]*)\]|YYYY|SSS|MM|DD|HH|mm|ss|X/g;
type DatePart = string | ((date: Date) => string);
const two = (n: number): string => String(n).padStart(2, '0');
const TOKEN_FORMATTERS: Record<string, (date: Date) => string> = {
  YYYY: (d) => String(d.getUTCFullYear()).padStart(4, '0'),
  MM: (d) => two(d.getUTCMonth() + 1),
  DD: (d) => two(d.getUTCDate()),
  HH: (d) => two(d.getUTCHours()),
  mm: (d) => two(d.getUTCMinutes()),
  ss: (d) => two(d.getUTCSeconds()),
  SSS: (d) => String(d.getUTCMilliseconds()).padStart(3, '0'),
  X: (d) => String(Math.floor(d.getTime() / 1000)),
};
// A template uses a handful of formats, each on every row: parse each once.
const parsedFormats = new Map<string, DatePart[]>();
const MAX_PARSED_FORMATS = 256;

function parseFormat(format: string): DatePart[] {
  let parts = parsedFormats.get(format);
  if (parts !== undefined) return parts;
  parts = [];
  let last = 0;
  for (const match of format.matchAll(DATE_TOKENS)) {
    if (match.index > last) parts.push(format.slice(last, match.index));
    const literal = match[1];
    parts.push(literal ?? (TOKEN_FORMATTERS[match[0]] as (date: Date) => string));
    last = match.index + match[0].length;
  }
  if (last < format.length) parts.push(format.slice(last));
  if (parsedFormats.size >= MAX_PARSED_FORMATS) parsedFormats.clear();
  parsedFormats.set(format, parts);
  return parts;
}

/**
 * Formats in UTC (the output must not depend on the process's time zone).
 * 'iso' (the default) is toISOString. Otherwise tokens: YYYY year, MM month,
 * DD day, HH hour (00-23), mm minute, ss second, SSS millisecond, X Unix
 * seconds; text in [brackets] is literal; any other character is copied.
 */
export function formatDate(date: Date, format: string): string {
  if (format === 'iso') return date.toISOString();
  let out = '';
  for (const part of parseFormat(format)) out += typeof part === 'string' ? part : part(date);
  return out;
}

function clock(options: HelperCallOptions): Date {
  const now = options.data?.rowcastClock;
  return now === undefined ? new Date() : now();
}

const impls: Record<string, HelperSpec> = {
  lower: unary('lower value', (value) => text(value).toLowerCase()),
  upper: unary('upper value', (value) => text(value).toUpperCase()),
  trim: unary('trim value', (value) => text(value).trim()),
  // Empty means null, undefined or ''; 0 and false are values (unlike Sprig).
  default: {
    usage: 'default value fallback',
    min: 2,
    max: 2,
    run: (value, fallback) => (value === null || value === undefined || value === '' ? fallback : value),
  },
  quote: unary('quote value', (value) => new Handlebars.SafeString(jsonQuote(text(value)))),
  squote: unary('squote value', (value) => {
    const string = text(value);
    // A single-quoted scalar would fold the line break into a space: the
    // double-quoted form keeps the value exact.
    if (NOT_SINGLE_QUOTABLE.test(string)) return new Handlebars.SafeString(jsonQuote(string));
    return new Handlebars.SafeString(`'${string.replaceAll("'", "''")}'`);
  }),
  toJson: unary('toJson value', (value) => {
    const json = JSON.stringify(plainValue(value)) as string | undefined;
    return new Handlebars.SafeString(json === undefined ? 'null' : escapeForYaml(json));
  }),
  toYaml: unary('toYaml value', (value) => {
    const plain = plainValue(value);
    // The default dump schema quotes every string another YAML reader could
    // take for something else (yes, 2024-01-01, 0o7...), so the text reads
    // back as the same value under any schema.
    return new Handlebars.SafeString(dump(plain === undefined ? null : plain, { noRefs: true, lineWidth: -1 }).replace(/\n$/, ''));
  }),
  b64enc: unary('b64enc value', (value) => Buffer.from(text(value), 'utf8').toString('base64')),
  b64dec: unary('b64dec value', (value) => {
    const string = text(value).trim();
    if (!BASE64.test(string) && !(BASE64URL.test(string) && string.length % 4 !== 1)) {
      throw new Error('the value is not base64');
    }
    try {
      return utf8.decode(Buffer.from(string, 'base64'));
    } catch {
      throw new Error('the decoded bytes are not UTF-8 text');
    }
  }),
  sha256: unary('sha256 value', (value) => sha256Hex(text(value))),
  now: { usage: 'now', min: 0, max: 0, run: (_a, _b, options) => clock(options).toISOString() },
  date: {
    usage: 'date value [format]',
    min: 1,
    max: 2,
    run: (value, format = 'iso') => {
      if (typeof format !== 'string') throw new Error('the format must be a string');
      return formatDate(parseDate(value), format);
    },
  },
  indent: { usage: 'indent width value', min: 2, max: 2, run: (width, value) => indented(count(width), false, value) },
  nindent: { usage: 'nindent width value', min: 2, max: 2, run: (width, value) => indented(count(width), true, value) },
  join: {
    usage: 'join list [separator]',
    min: 1,
    max: 2,
    run: (list, separator = ',') => {
      if (!Array.isArray(list)) throw new Error(`expected a list but got ${kindOf(list)}`);
      return list.map(text).join(text(separator));
    },
  },
  // An empty string is an empty list, so `#each (split col)` over an empty
  // column renders nothing rather than one empty item.
  split: {
    usage: 'split value [separator]',
    min: 1,
    max: 2,
    run: (value, separator = ',') => {
      const string = text(value);
      return string === '' ? [] : string.split(text(separator));
    },
  },
  eq: { usage: 'eq a b', min: 2, max: 2, run: (a, b) => a === b },
  ne: { usage: 'ne a b', min: 2, max: 2, run: (a, b) => a !== b },
  // and/or return one of their arguments, as in JavaScript and Sprig, so
  // `or row.nickname row.name` picks the first non-empty one.
  and: {
    usage: 'and a b ...',
    min: 1,
    max: Infinity,
    run: (_a, _b, _options, args) => {
      for (const arg of args) if (!truthy(arg)) return arg;
      return args[args.length - 1];
    },
  },
  or: {
    usage: 'or a b ...',
    min: 1,
    max: Infinity,
    run: (_a, _b, _options, args) => {
      for (const arg of args) if (truthy(arg)) return arg;
      return args[args.length - 1];
    },
  },
  not: unary('not value', (value) => !truthy(value)),
};

const PLAIN: OutputContext = { kind: 'plain' };

/**
 * The helper the compiler wraps around every `{{...}}`, called with exactly
 * (value, source text, index of its OutputContext, options): it writes the
 * value escaped for where it lands. SafeStrings (the structure helpers'
 * results) are YAML already and go out as they are, except inside quotes,
 * where everything is text.
 */
function outputHelper(contexts: readonly OutputContext[]): HandlebarsHelper {
  return (value: unknown, source: unknown, index: unknown, options: unknown): string => {
    const context = (typeof index === 'number' ? contexts[index] : undefined) ?? PLAIN;
    const what = typeof source === 'string' ? source : 'value';
    const callOptions = options as HelperCallOptions;
    try {
      return writeOutput(value, context, what, callOptions);
    } catch (error) {
      if (error instanceof HelperError || error instanceof MissingFieldError) throw error;
      const message = error instanceof Error ? error.message : String(error);
      throw new HelperError(what, `"${what}": ${message}`, locationOf(callOptions));
    }
  };
}

function writeOutput(value: unknown, context: OutputContext, what: string, options: HelperCallOptions): string {
  if (value instanceof Handlebars.SafeString || value instanceof IndentedText) {
    if (context.kind === 'dq') return doubleQuotedContent(value.toString());
    if (context.kind === 'sq') return singleQuotedContent(value.toString());
    if (value instanceof Handlebars.SafeString) return value.toString();
    switch (context.kind) {
      case 'raw':
        return value.toString();
      case 'block':
        return value.inBlock(context);
      case 'plain':
        return context.blockEdge === undefined ? value.plain() : value.atBlockEdge(context.blockEdge);
    }
  }
  const string = outputText(value, what, options);
  switch (context.kind) {
    case 'raw':
      return string;
    case 'dq':
      return doubleQuotedContent(string);
    case 'sq':
      return singleQuotedContent(string);
    case 'plain':
      return plainScalar(string);
    case 'block':
      return blockText(string, {
        prefix: '',
        firstColumn: context.column,
        restColumn: context.lineIndent,
        parent: context.parent,
        contentIndent: context.contentIndent,
      });
  }
}

function outputText(value: unknown, what: string, options: HelperCallOptions): string {
  if (typeof value === 'string') return value;
  if (value === undefined) {
    throw new MissingFieldError(what, `"${what}" is not defined`, locationOf(options));
  }
  if (
    Array.isArray(value) ||
    (typeof value === 'object' && value !== null && !(value instanceof Date) && !(value instanceof Uint8Array))
  ) {
    throw new HelperError(
      what,
      `"${what}" is ${kindOf(value)}; render it with toJson, toYaml or join`,
      locationOf(options),
    );
  }
  if (typeof value === 'function' || typeof value === 'symbol') {
    throw new HelperError(what, `"${what}" is ${kindOf(value)} and has no text`, locationOf(options));
  }
  return text(value);
}

const NO_ARGS: readonly unknown[] = [];

function wrap(name: string, spec: HelperSpec): HandlebarsHelper {
  const { min, max, usage, run } = spec;
  const variadic = max === Infinity;
  // `arguments`, not a rest parameter: no array per call for the fixed-arity
  // helpers, which is nearly all calls of nearly all templates.
  return function helper(): unknown {
    // eslint-disable-next-line prefer-rest-params -- see above
    const args = arguments as unknown as readonly unknown[];
    const given = args.length - 1;
    const options = (args[given] ?? {}) as HelperCallOptions;
    try {
      if (given < min || given > max) throw new Error(`usage: ${usage}`);
      return run(
        given > 0 ? args[0] : undefined,
        given > 1 ? args[1] : undefined,
        options,
        variadic ? Array.prototype.slice.call(args, 0, given) : NO_ARGS,
      );
    } catch (error) {
      if (error instanceof HelperError || error instanceof MissingFieldError) throw error;
      const message = error instanceof Error ? error.message : String(error);
      throw new HelperError(name, `${name}: ${message}`, locationOf(options));
    }
  };
}

/** The named helpers (those of HELPER_NAMES; others are ignored) and the output helper for these output contexts. */
export function helperTable(names: Iterable<string>, contexts: readonly OutputContext[]): Record<string, HandlebarsHelper> {
  const table: Record<string, HandlebarsHelper> = { [OUTPUT_HELPER]: outputHelper(contexts) };
  for (const name of names) {
    const spec = Object.hasOwn(impls, name) ? impls[name] : undefined;
    if (spec !== undefined) table[name] = wrap(name, spec);
  }
  return table;
}

export const HELPER_NAMES: readonly string[] = Object.keys(impls);
