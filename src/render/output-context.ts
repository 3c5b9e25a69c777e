import { TemplateError } from './errors.ts';

/**
 * Where one `{{...}}` writes, read from the template's own text around it,
 * so the output helper can escape its value for that place:
 * - raw: `{{{...}}}`, written as it is;
 * - dq / sq: inside a double- or single-quoted scalar (or a JSON string);
 * - plain: anywhere else in YAML or JSON flow (a value, a key, part of a plain scalar);
 * - block: inside a block scalar (`|`, `>`): `parent` is the column the block's
 *   content must go beyond, `contentIndent` its indentation when the template's
 *   text already fixed it, `column` where the output starts on its line,
 *   `lineIndent` that line's indentation and `fresh` that it follows the `|`
 *   header on the header's own line.
 */
export type OutputContext =
  | { readonly kind: 'raw' | 'dq' | 'sq' }
  /**
   * `blockEdge`: the output starts a line at or left of an open block
   * scalar's parent column, so plain text ends the block, but indent or
   * nindent may carry text into it (`{{indent 4 x}}` under `key: |`).
   */
  | { readonly kind: 'plain'; readonly blockEdge?: BlockContext }
  | BlockContext;

export interface BlockContext {
  readonly kind: 'block';
  readonly parent: number;
  readonly contentIndent: number | undefined;
  readonly column: number;
  readonly lineIndent: number;
  readonly fresh: boolean;
}

type Node = hbs.AST.Node;

interface Block {
  parent: number;
  contentIndent: number | undefined;
}

/** The scanner's position in the YAML/JSON the template writes. */
interface State {
  quote: 'none' | 'dq' | 'sq';
  escaped: boolean;
  /** The next non-blank character starts a node (a key, a value, an item). */
  nodeStart: boolean;
  flow: number;
  comment: boolean;
  /** Only spaces so far on this line. */
  lineStart: boolean;
  column: number;
  /** Column of the line's first node after any `- ` indicators: a block scalar's parent. */
  keyColumn: number;
  afterDash: boolean;
  /** A block scalar whose content lines come next or are being read. */
  block: Block | undefined;
  /** This line is a block scalar's content. */
  inBlockLine: boolean;
  /** A `|` or `>` header on this line: its block's parent column. */
  blockHeader: number | undefined;
}

function initial(): State {
  return {
    quote: 'none',
    escaped: false,
    nodeStart: true,
    flow: 0,
    comment: false,
    lineStart: true,
    column: 0,
    keyColumn: 0,
    afterDash: false,
    block: undefined,
    inBlockLine: false,
    blockHeader: undefined,
  };
}

function copyState(state: State): State {
  return { ...state, block: state.block === undefined ? undefined : { ...state.block } };
}

const isBlank = (c: string | undefined): boolean => c === ' ' || c === '\t';
const endsToken = (c: string | undefined): boolean => c === undefined || c === ' ' || c === '\t' || c === '\n' || c === '\r';

function feed(s: State, text: string): void {
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    const next = text[i + 1];
    if (c === '\n' || c === '\r') {
      newline(s);
      continue;
    }
    if (s.quote === 'none' && s.lineStart) {
      if (c === ' ') {
        s.column++;
        continue;
      }
      firstOnLine(s);
    }
    s.column++;
    if (s.inBlockLine || s.comment) continue;
    if (s.quote === 'dq') {
      if (s.escaped) s.escaped = false;
      else if (c === '\\') s.escaped = true;
      else if (c === '"') endQuote(s);
      continue;
    }
    if (s.quote === 'sq') {
      if (c === "'") {
        if (next === "'") {
          i++;
          s.column++;
        } else {
          endQuote(s);
        }
      }
      continue;
    }
    plain(s, c, next, text[i - 1]);
  }
}

function endQuote(s: State): void {
  s.quote = 'none';
  s.nodeStart = false;
}

function newline(s: State): void {
  s.column = 0;
  // Quoted scalars go on across lines; everything else starts afresh.
  s.lineStart = s.quote === 'none';
  if (!s.lineStart) return;
  s.comment = false;
  s.inBlockLine = false;
  s.afterDash = false;
  s.nodeStart = true;
  s.keyColumn = 0;
  if (s.blockHeader !== undefined) s.block = { parent: s.blockHeader, contentIndent: undefined };
  s.blockHeader = undefined;
}

/** The first non-space of a line (or an output at its start). */
function firstOnLine(s: State): void {
  s.lineStart = false;
  s.keyColumn = s.column;
  if (s.block === undefined) return;
  if (s.column > s.block.parent) {
    s.inBlockLine = true;
    s.block.contentIndent ??= s.column;
  } else {
    s.block = undefined;
  }
}

function plain(s: State, c: string, next: string | undefined, previous: string | undefined): void {
  if (isBlank(c)) return;
  if (c === '#' && (previous === undefined || isBlank(previous))) {
    s.comment = true;
    return;
  }
  if (s.afterDash) {
    s.afterDash = false;
    s.keyColumn = s.column - 1;
  }
  if (s.nodeStart) {
    if (c === '"' || c === "'") {
      s.quote = c === '"' ? 'dq' : 'sq';
      s.nodeStart = false;
      return;
    }
    if ((c === '-' || c === '?' || c === ':') && endsToken(next)) {
      if (c === '-') s.afterDash = true;
      return;
    }
    if ((c === '|' || c === '>') && s.flow === 0) {
      s.blockHeader = s.keyColumn;
      // The rest of the header line is indicators or a comment.
      s.comment = true;
      return;
    }
  }
  if (c === '[' || c === '{') {
    if (s.nodeStart || s.flow > 0) {
      s.flow++;
      s.nodeStart = true;
      return;
    }
  } else if (s.flow > 0 && (c === ']' || c === '}')) {
    s.flow--;
    s.nodeStart = false;
    return;
  } else if (s.flow > 0 && (c === ',' || c === ':')) {
    s.nodeStart = true;
    return;
  } else if (c === ':' && endsToken(next)) {
    s.nodeStart = true;
    return;
  }
  s.nodeStart = false;
}

/** The context of an output at the scanner's position; moves past it. */
function output(s: State, mustache: hbs.AST.MustacheStatement): OutputContext {
  const context = contextAt(s, mustache.escaped);
  if (s.lineStart) {
    s.lineStart = false;
    if (!s.inBlockLine) s.keyColumn = s.column;
  }
  if (s.quote === 'none' && !s.inBlockLine) {
    s.nodeStart = false;
    s.afterDash = false;
  }
  s.column++;
  return context;
}

function contextAt(s: State, escaped: boolean): OutputContext {
  if (!escaped) return { kind: 'raw' };
  if (s.quote === 'dq' || s.quote === 'sq') return { kind: s.quote };
  if (s.blockHeader !== undefined) return { kind: 'block', parent: s.blockHeader, contentIndent: undefined, column: 0, lineIndent: 0, fresh: true };
  if (s.lineStart && s.block !== undefined) {
    if (s.column > s.block.parent) {
      s.inBlockLine = true;
      return { kind: 'block', parent: s.block.parent, contentIndent: s.block.contentIndent, column: s.column, lineIndent: s.column, fresh: false };
    }
    const blockEdge: BlockContext = { kind: 'block', parent: s.block.parent, contentIndent: s.block.contentIndent, column: s.column, lineIndent: s.column, fresh: false };
    s.block = undefined;
    return { kind: 'plain', blockEdge };
  }
  if (s.inBlockLine && s.block !== undefined) {
    return { kind: 'block', parent: s.block.parent, contentIndent: s.block.contentIndent, column: s.column, lineIndent: s.keyColumn, fresh: false };
  }
  return { kind: 'plain' };
}

function located(node: Node): string {
  return `${node.loc.start.line}:${node.loc.start.column}`;
}

/**
 * The output context of every `{{...}}`, by its start `line:column`. Reads
 * the template after Handlebars' whitespace control, as it is written out.
 * Both branches of a block start where the block does; a block that ends
 * inside other quotes than it began in is refused: the escaping of what
 * follows would depend on the row.
 */
export function outputContexts(program: hbs.AST.Program): Map<string, OutputContext> {
  const contexts = new Map<string, OutputContext>();
  const visit = (body: readonly hbs.AST.Statement[], start: State): State => {
    let s = start;
    for (const statement of body) {
      switch (statement.type) {
        case 'ContentStatement':
          feed(s, (statement as hbs.AST.ContentStatement).value);
          break;
        case 'MustacheStatement':
          contexts.set(located(statement), output(s, statement as hbs.AST.MustacheStatement));
          break;
        case 'BlockStatement': {
          const block = statement as hbs.AST.BlockStatement;
          const before = copyState(s);
          const afterProgram = visit(block.program.body, copyState(s));
          // Absent without {{else}}, whatever the typings say.
          const inverse = block.inverse as hbs.AST.Program | undefined;
          const afterInverse = inverse === undefined ? before : visit(inverse.body, copyState(s));
          if (afterProgram.quote !== before.quote || afterInverse.quote !== before.quote) {
            const { line, column } = block.loc.start;
            throw new TemplateError(
              `line ${line}, column ${column + 1}: this block opens or closes a quote that it does not close or open again, so how its values are escaped would depend on the row`,
              { line, column: column + 1 },
            );
          }
          s = afterProgram;
          break;
        }
        default:
          break;
      }
    }
    return s;
  };
  visit(program.body, initial());
  return contexts;
}
