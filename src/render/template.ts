import Handlebars from 'handlebars';
import { HelperError, MissingFieldError, TemplateError, type TemplateLocation } from './errors.ts';
import { HELPER_NAMES, OUTPUT_HELPER, helperTable } from './helpers.ts';
import { literalKinds } from './literal-kinds.ts';
import { outputContexts, type OutputContext } from './output-context.ts';

type Env = ReturnType<typeof Handlebars.create>;
type Node = hbs.AST.Node;
type Program = hbs.AST.Program;
type Path = hbs.AST.PathExpression & { strict?: boolean };
type Call = hbs.AST.MustacheStatement | hbs.AST.BlockStatement | hbs.AST.SubExpression;
type Render = (context: unknown, options: { data: Record<string, unknown> }) => string;

const COMPILE_OPTIONS = {
  // The output is YAML or JSON, never HTML: OUTPUT_HELPER escapes every
  // `{{...}}` for where it lands in them, and Handlebars' HTML escape must
  // not touch the result.
  noEscape: true,
  strict: true,
  // A misspelt helper is a compile error, not a lookup of a missing field.
  knownHelpersOnly: true,
  knownHelpers: {
    ...Object.fromEntries([...HELPER_NAMES, OUTPUT_HELPER].map((name) => [name, true])),
    // log writes to the console: a pure module has no business doing I/O.
    log: false,
  },
} as const;

/**
 * A Handlebars environment for one template, never the global instance (so
 * nobody else's helpers or partials leak in), holding only the helpers the
 * template calls besides Handlebars' own (which call each other): Handlebars
 * re-wraps every registered helper on every render, a cost paid per row.
 */
function templateEnv(used: ReadonlySet<string>, contexts: readonly OutputContext[]): Env {
  const created = Handlebars.create();
  // log writes to the console: a pure module has no business doing I/O.
  created.unregisterHelper('log');
  created.registerHelper(helperTable(used, contexts));
  return created;
}

/** A template compiled once, rendered for many rows. Build with compileTemplate. */
export class CompiledTemplate {
  readonly source: string;
  /** What the template names literally (literalKinds): the default of spec.allowedKinds. */
  readonly literalKinds: ReadonlySet<string>;
  /** It calls `now`: the same row renders differently from one sync to the next. */
  readonly readsClock: boolean;
  /** Template path of every lookup, by its start `line:column`, to name a missing field. */
  readonly #paths: ReadonlyMap<string, string>;
  readonly #render: Render;

  constructor(source: string, render: Render, paths: ReadonlyMap<string, string>, helpers: ReadonlySet<string> = new Set()) {
    this.source = source;
    this.literalKinds = literalKinds(source);
    this.readsClock = helpers.has('now');
    this.#render = render;
    this.#paths = paths;
  }

  /** Runs the template; throws MissingFieldError or HelperError for row-level problems. */
  execute(context: unknown, data: Record<string, unknown>): string {
    try {
      return this.#render(context, { data });
    } catch (error) {
      throw this.#classify(error);
    }
  }

  #classify(error: unknown): unknown {
    if (error instanceof HelperError || error instanceof MissingFieldError) return error;
    if (!(error instanceof Error)) return error;
    // Handlebars' strict lookup: `"nmae" not defined in [object Object] - 3:10`.
    const strict = /^"(.*)" not defined in (.*) - \d+:\d+$/s.exec(error.message);
    const { lineNumber, column } = error as { lineNumber?: unknown; column?: unknown };
    if (strict !== null && typeof lineNumber === 'number' && typeof column === 'number') {
      const location: TemplateLocation = { line: lineNumber, column: column + 1 };
      const name = strict[1] ?? '';
      const path = this.#paths.get(`${lineNumber}:${column}`) ?? name;
      const parent = strict[2];
      const cut = path.lastIndexOf('.');
      const message =
        (parent === 'undefined' || parent === 'null') && cut > 0
          ? `"${path}" is not defined: "${path.slice(0, cut)}" is ${parent}`
          : `"${path}" is not defined`;
      return new MissingFieldError(path, message, location);
    }
    // Strict lookup below a string or number (`row.name.first`) fails inside
    // Handlebars with a bare TypeError, without location: find the path by
    // its last part. The message names the value, so it is not passed on.
    const below = /^Cannot use 'in' operator to search for '(.*)' in /s.exec(error.message);
    if (error instanceof TypeError && below !== null) {
      const name = below[1] ?? '';
      const matches = [...this.#paths].filter(([, path]) => path === name || path.endsWith(`.${name}`));
      const candidates = new Set(matches.map(([, path]) => path));
      const [only] = candidates;
      const path = candidates.size === 1 && only !== undefined ? only : name;
      let location: TemplateLocation | undefined;
      if (matches.length === 1 && matches[0] !== undefined) {
        const [line, column] = matches[0][0].split(':').map(Number) as [number, number];
        location = { line, column: column + 1 };
      }
      return new MissingFieldError(path, `"${path}" is not defined: its parent is not an object`, location);
    }
    return error;
  }
}

/** Compiles a template; throws TemplateError with the 1-based line and column when it can. */
export function compileTemplate(source: string): CompiledTemplate {
  let ast: Program;
  try {
    // Whitespace control (standalone block lines) runs once, inside compile.
    ast = Handlebars.parseWithoutProcessing(source);
  } catch (error) {
    throw templateError(error);
  }
  const paths = new Map<string, string>();
  const helpers = new Set<string>();
  const contexts: OutputContext[] = [];
  try {
    // Whitespace control applied, as the template is written out.
    const located = outputContexts(Handlebars.parse(source));
    prepare(ast, paths, helpers, (mustache) => {
      contexts.push(located.get(`${mustache.loc.start.line}:${mustache.loc.start.column}`) ?? { kind: mustache.escaped ? 'plain' : 'raw' });
      return contexts.length - 1;
    });
    const hb = templateEnv(helpers, contexts);
    const render = hb.compile(ast, COMPILE_OPTIONS) as unknown as Render & { _setup(options: object): void };
    // Handlebars compiles lazily on the first render; force it here so every
    // template error surfaces now, once per template, not once per row.
    render._setup({});
    return new CompiledTemplate(source, render, paths, helpers);
  } catch (error) {
    throw templateError(error);
  }
}

function templateError(error: unknown): TemplateError {
  if (error instanceof TemplateError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const { lineNumber, column } = error as { lineNumber?: unknown; column?: unknown };
  if (typeof lineNumber === 'number') {
    const col = typeof column === 'number' ? column + 1 : undefined;
    const bare = message
      .replace(/ - \d+:\d+$/, '')
      .replace(/^You specified knownHelpersOnly, but used the unknown helper (.*)$/s, 'unknown helper "$1"');
    return new TemplateError(`line ${lineNumber}${col === undefined ? '' : `, column ${col}`}: ${bare}`, { line: lineNumber, column: col }, { cause: error });
  }
  // The parser reports "Parse error on line N:" followed by a caret drawing.
  const line = /on line (\d+)/.exec(message)?.[1];
  return new TemplateError(message, { line: line === undefined ? undefined : Number(line), column: undefined }, { cause: error });
}

function unsupported(node: Node, what: string): TemplateError {
  const start = node.loc.start;
  return new TemplateError(`line ${start.line}, column ${start.column + 1}: ${what} are not supported`, {
    line: start.line,
    column: start.column + 1,
  });
}

function isPath(node: Node): node is Path {
  return node.type === 'PathExpression';
}

function label(node: Node): string {
  if (isPath(node)) return node.original;
  if (node.type === 'SubExpression') return `(${label((node as hbs.AST.SubExpression).path)} ...)`;
  const original = (node as { original?: unknown }).original;
  return typeof original === 'string' || typeof original === 'number' || typeof original === 'boolean'
    ? String(original)
    : node.type;
}

/**
 * Adjusts the parsed template before compiling:
 * - every path argument becomes a strict lookup, as Handlebars already does for
 *   `{{a.b}}` alone, so `{{lower row.nmae}}` or `{{#if row.nmae}}` fails too;
 * - every `{{...}}` output goes through OUTPUT_HELPER, told where it lands;
 * - partials and decorators are refused (none exist here);
 * and records each path's location so a strict failure can name the full path.
 */
function prepare(
  program: Program,
  paths: Map<string, string>,
  helpers: Set<string>,
  contextIndex: (mustache: hbs.AST.MustacheStatement) => number,
): void {
  const visitArgs = (call: Call): void => {
    if (isPath(call.path) && call.path.parts.length === 1 && !call.path.data) helpers.add(call.path.original);
    const hash = call.hash as hbs.AST.Hash | undefined;
    const args: Node[] = [...call.params, ...(hash === undefined ? [] : hash.pairs.map((pair) => pair.value))];
    for (const arg of args) {
      if (isPath(arg)) {
        if (arg.parts.length > 0) arg.strict = true;
        const start = arg.loc.start;
        paths.set(`${start.line}:${start.column}`, arg.original);
      } else if (arg.type === 'SubExpression') {
        visitArgs(arg as hbs.AST.SubExpression);
      }
    }
  };
  const visitProgram = (node: Program | undefined): void => {
    if (node === undefined) return;
    for (const statement of node.body) {
      switch (statement.type) {
        case 'MustacheStatement': {
          const mustache = statement as hbs.AST.MustacheStatement;
          visitArgs(mustache);
          wrapOutput(mustache, contextIndex(mustache));
          // The inner call, if any, was visited above as the mustache itself.
          const value = mustache.params[0];
          if (value !== undefined && isPath(value)) {
            if (value.parts.length > 0) value.strict = true;
            const start = value.loc.start;
            paths.set(`${start.line}:${start.column}`, value.original);
          }
          break;
        }
        case 'BlockStatement': {
          const block = statement as hbs.AST.BlockStatement;
          visitArgs(block);
          visitProgram(block.program);
          // Absent without {{else}}, whatever the typings say.
          visitProgram(block.inverse);
          break;
        }
        case 'PartialStatement':
        case 'PartialBlockStatement':
          throw unsupported(statement, 'partials');
        case 'Decorator':
        case 'DecoratorBlock':
          throw unsupported(statement, 'decorators and inline partials');
        default:
          break;
      }
    }
  };
  visitProgram(program);
}

/** `{{x}}` → `{{__rowcastOutput x "x" N}}`, `{{f a}}` → `{{__rowcastOutput (f a) "(f ...)" N}}`, N its OutputContext's index. */
function wrapOutput(mustache: hbs.AST.MustacheStatement, contextIndex: number): void {
  const { path, params, loc } = mustache;
  const hash = mustache.hash as hbs.AST.Hash | undefined;
  const isHelperCall = params.length > 0 || (hash !== undefined && hash.pairs.length > 0) || (isPath(path) && isHelperName(path));
  const inner: Node = isHelperCall
    ? ({ type: 'SubExpression', path, params, hash, loc } as hbs.AST.SubExpression)
    : path;
  const source: hbs.AST.StringLiteral = { type: 'StringLiteral', value: label(inner), original: label(inner), loc };
  const index: hbs.AST.NumberLiteral = { type: 'NumberLiteral', value: contextIndex, original: contextIndex, loc };
  const wrapper: Path = { type: 'PathExpression', data: false, depth: 0, parts: [OUTPUT_HELPER], original: OUTPUT_HELPER, loc };
  // The hash (if any) moved into the inner call; Handlebars reads a missing one as empty.
  Object.assign(mustache, { path: wrapper, params: [inner, source, index], hash: undefined });
}

function isHelperName(path: Path): boolean {
  return !path.data && path.depth === 0 && path.parts.length === 1 && HELPER_NAMES.includes(path.original);
}
