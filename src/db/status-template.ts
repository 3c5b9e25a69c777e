import { splitStatements } from './split-statements.ts';
import { isIdentChar } from './sql-lexing.ts';
import { sqlRegions } from './sql-regions.ts';

/** `spec.statusUpdateQueryTemplate`, compiled: SQL text with `$n` placeholders and, for each, the path whose value binds to it. */
export interface CompiledStatement {
  text: string;
  /** Canonical dotted paths; `$1` binds `params[0]`. */
  params: readonly string[];
}

export interface StatementCompileError {
  /** 1-based, in the template as written. */
  line: number;
  /** 1-based, in characters (code points). */
  column: number;
  message: string;
}

export type StatementCompileResult = { ok: true; statement: CompiledStatement } | { ok: false; error: StatementCompileError };

export interface BindContext {
  resource: unknown;
  row: Record<string, unknown>;
  cluster: { name: string; labels: Record<string, string> };
}

const roots = ['resource', 'row', 'cluster'] as const;
type Root = (typeof roots)[number];

interface ParsedPath {
  root: Root;
  segments: string[];
  canonical: string;
}

/** Characters a dotted segment may hold; anything else goes in brackets: `labels["app.kubernetes.io/name"]`. */
const plainSegment = /^[A-Za-z0-9_-]+$/;

interface Tag {
  start: number;
  end: number;
  path: ParsedPath;
}

class CompileFailure extends Error {
  readonly index: number;

  constructor(index: number, message: string) {
    super(message);
    this.index = index;
  }
}

/**
 * Compiles a status write-back template. The only template syntax is
 * `{{param <path>}}`, which becomes a bind parameter (`$1`, the same path
 * always the same number); every other `{{` or `}}` is refused, because a
 * value spliced into SQL text is an injection whatever escaping is tried.
 * Everything outside tags is the user's SQL, kept byte for byte.
 *
 * Also refused, with the line and column: a tag inside a quoted string,
 * quoted identifier or comment (`'{{param x}}'` would be the text "$1", not a
 * parameter), a tag glued to a word (`x{{param a}}` would read as the
 * identifier `x$1`), a `$1` written by hand (it would collide with ours), and
 * a template holding no statement or more than one.
 */
export function compileStatusTemplate(template: string): StatementCompileResult {
  try {
    return { ok: true, statement: compile(template) };
  } catch (error) {
    if (!(error instanceof CompileFailure)) throw error;
    return { ok: false, error: { ...position(template, error.index), message: error.message } };
  }
}

function compile(template: string): CompiledStatement {
  const tags = findTags(template);

  // Same length as the template, tags replaced by a number: positions in the probe are positions in the template.
  let probe = '';
  let at = 0;
  for (const tag of tags) {
    probe += template.slice(at, tag.start) + '0'.padEnd(tag.end - tag.start, ' ');
    at = tag.end;
  }
  probe += template.slice(at);

  const regions = sqlRegions(probe);
  for (const tag of tags) {
    if (regions.quoted.some(([start, end]) => tag.start >= start && tag.start < end)) {
      throw new CompileFailure(
        tag.start,
        '{{param}} inside a quoted string, quoted identifier or comment would not be a parameter; use it in place of the whole literal, e.g. {{param row.id}} rather than \'{{param row.id}}\'',
      );
    }
    if (isIdentChar(template[tag.start - 1] ?? ' ')) throw new CompileFailure(tag.start, 'put a space or an operator before {{param}}: glued to a word it would become part of an identifier');
    if (isIdentChar(template[tag.end] ?? ' ')) throw new CompileFailure(tag.end, 'put a space or an operator after {{param …}}: glued to a word it would become part of an identifier');
  }
  const [handwritten] = regions.parameters;
  if (handwritten !== undefined) {
    throw new CompileFailure(handwritten, 'write {{param <path>}} instead of a positional parameter: Rowcast numbers the parameters itself');
  }

  const statements = splitStatements(probe);
  const [first, second] = statements;
  if (first === undefined) throw new CompileFailure(0, 'the template holds no SQL statement');
  if (second !== undefined) {
    const afterFirst = probe.indexOf(first) + first.length;
    throw new CompileFailure(probe.indexOf(second, afterFirst), 'the template holds more than one statement; write one (a CTE can chain several changes)');
  }

  const params: string[] = [];
  let text = '';
  at = 0;
  for (const tag of tags) {
    let index = params.indexOf(tag.path.canonical);
    if (index === -1) index = params.push(tag.path.canonical) - 1;
    text += `${template.slice(at, tag.start)}$${index + 1}`;
    at = tag.end;
  }
  text += template.slice(at);
  return { text, params };
}

/** Every `{{param path}}` tag; throws at the first `{{` or `}}` that is anything else. */
function findTags(template: string): Tag[] {
  const tags: Tag[] = [];
  let i = 0;
  for (;;) {
    const open = template.indexOf('{{', i);
    const close = template.indexOf('}}', i);
    if (close !== -1 && (open === -1 || close < open)) {
      throw new CompileFailure(close, '"}}" outside a {{param …}} tag; if it is part of the SQL, separate the braces ("} }")');
    }
    if (open === -1) return tags;
    const tag = parseTag(template, open);
    tags.push(tag);
    i = tag.end;
  }
}

const whitespace = /[ \t\r\n]/;

function parseTag(template: string, open: number): Tag {
  let i = open + 2;
  const next = template[i];
  if (next === '{') throw new CompileFailure(open, 'a triple-stash {{{…}}} would splice a raw value into the SQL; values reach SQL only as {{param <path>}}');
  if (next === '~') throw new CompileFailure(open, 'whitespace control ({{~ … ~}}) is not supported here; write {{param <path>}}');
  while (whitespace.test(template[i] ?? '')) i += 1;
  const head = template[i] ?? '';
  if (head === '') throw new CompileFailure(open, '"{{" without a closing "}}"; values reach SQL only as {{param <path>}}');
  if (head === '!') throw new CompileFailure(open, 'template comments are not supported here; use an SQL comment (-- or /* */)');
  if ('#/>^&'.includes(head) || template.startsWith('else', i)) {
    throw new CompileFailure(open, 'blocks, partials and helpers are not available in a write-back statement; values reach SQL only as {{param <path>}}');
  }
  const word = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(template.slice(i, i + 64))?.[0] ?? '';
  if (word !== 'param' || !whitespace.test(template[i + word.length] ?? '')) {
    const shown = template.slice(open, Math.min(template.length, open + 40)).split('}}')[0] ?? '';
    const hint = roots.some((root) => word === root) ? `; write {{param ${word}…}} to bind it as a parameter` : '; values reach SQL only as {{param <path>}}';
    throw new CompileFailure(open, `${JSON.stringify(`${shown}}}`)} would splice a value into the SQL text${hint}`);
  }
  i += word.length;
  while (whitespace.test(template[i] ?? '')) i += 1;
  const pathStart = i;
  const parsed = parsePathAt(template, pathStart);
  if (!parsed.ok) throw new CompileFailure(parsed.index, parsed.message);
  i = parsed.end;
  while (whitespace.test(template[i] ?? '')) i += 1;
  if (!template.startsWith('}}', i)) {
    throw new CompileFailure(i, template.startsWith('~}}', i) ? 'whitespace control ({{~ … ~}}) is not supported here' : 'expected "}}" after the path: {{param <path>}} takes one path and nothing else');
  }
  return { start: open, end: i + 2, path: parsed.path };
}

type PathParse = { ok: true; path: ParsedPath; end: number } | { ok: false; index: number; message: string };

/**
 * `root(.segment | ["key"])*` with root resource, row or cluster. Segments
 * are [A-Za-z0-9_-]; brackets take any other key but a quote, backslash,
 * brace or control character (label keys such as app.kubernetes.io/name).
 */
function parsePathAt(text: string, start: number): PathParse {
  const rootWord = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(start, start + 32))?.[0] ?? '';
  const root = roots.find((candidate) => candidate === rootWord);
  if (root === undefined) {
    return { ok: false, index: start, message: 'a parameter path starts with resource., row. or cluster. (e.g. {{param resource.status.readyReplicas}})' };
  }
  const segments: string[] = [];
  let i = start + rootWord.length;
  for (;;) {
    if (text[i] === '.') {
      const segment = /^[A-Za-z0-9_-]+/.exec(text.slice(i + 1, i + 1 + 512))?.[0];
      if (segment === undefined) return { ok: false, index: i + 1, message: 'a path segment holds letters, digits, _ and -; write other keys in brackets: labels["app.kubernetes.io/name"]' };
      segments.push(segment);
      i += 1 + segment.length;
    } else if (text.startsWith('["', i)) {
      const close = text.indexOf('"]', i + 2);
      const key = close === -1 ? undefined : text.slice(i + 2, close);
      if (key === undefined || /["\\{}\u0000-\u001f]/.test(key)) {
        return { ok: false, index: i, message: 'a bracketed key is ["…"] without quotes, backslashes, braces or control characters inside' };
      }
      segments.push(key);
      i = close + 2;
    } else {
      break;
    }
  }
  const canonical = root + segments.map((segment) => (plainSegment.test(segment) ? `.${segment}` : `[${JSON.stringify(segment)}]`)).join('');
  return { ok: true, path: { root, segments, canonical }, end: i };
}

function position(text: string, index: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, index));
  const lineStart = before.lastIndexOf('\n') + 1;
  return { line: before.split('\n').length, column: Array.from(before.slice(lineStart)).length + 1 };
}

/** The row columns a compiled statement binds (`row.team` → `team`): what write-back must remember of each row. */
export function rowColumnsOf(statement: CompiledStatement): string[] {
  const columns = new Set<string>();
  for (const param of statement.params) {
    const parsed = parsePathAt(param, 0);
    const column = parsed.ok && parsed.path.root === 'row' ? parsed.path.segments[0] : undefined;
    if (column !== undefined) columns.add(column);
  }
  return [...columns];
}

/**
 * The values for a compiled statement, in `$n` order. A path that does not
 * exist binds NULL (a Deployment omits status.readyReplicas while it is 0);
 * objects and arrays bind as JSON text; strings bind as they are: pg sends
 * them as parameters, so no quoting or escaping is ever applied, or needed.
 */
export function bindParams(statement: CompiledStatement, context: BindContext): unknown[] {
  return statement.params.map((param) => {
    const parsed = parsePathAt(param, 0);
    if (!parsed.ok || parsed.end !== param.length) throw new TypeError(`not a compiled parameter path: ${JSON.stringify(param)}`);
    const { root, segments } = parsed.path;
    let value: unknown = root === 'resource' ? context.resource : root === 'row' ? context.row : context.cluster;
    for (const segment of segments) value = child(value, segment);
    return bindable(value);
  });
}

/** Own properties only: `__proto__` or `constructor` in a path must not reach the prototype chain. */
function child(value: unknown, segment: string): unknown {
  if (Array.isArray(value)) return /^(0|[1-9][0-9]*)$/.test(segment) ? (value[Number(segment)] as unknown) : undefined;
  if (typeof value === 'object' && value !== null && Object.hasOwn(value, segment)) return (value as Record<string, unknown>)[segment];
  return undefined;
}

function bindable(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') return JSON.stringify(value, (_key, inner: unknown) => (typeof inner === 'bigint' ? inner.toString() : inner));
  return null;
}
