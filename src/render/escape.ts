// How `{{...}}` writes text into YAML or JSON so that it stays one value.
// See "Escaping" in scripts/generate-api-docs.ts (docs/api.md).

// Characters JSON leaves raw that a YAML stream may not contain (js-yaml's
// PATTERN_NON_PRINTABLE, go-yaml's is_printable) or that YAML 1.1 readers
// take for line breaks.
const YAML_UNSAFE_IN_JSON = /[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g;
// Inside "…" these are plain text, but were the quotes misread they could
// end a plain scalar or a flow item: written as \uXXXX they cannot.
const STRUCTURAL = /[,[\]{}]|(?<= )#|:(?= )/g;
// Every character of a value that needs no escape of any kind.
const INERT = /^[^\u0000-\u001f"\\,[\]{}#:\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]*$/;
/**
 * A value written unquoted as it is: it cannot start or end a node, a
 * comment, an anchor, a tag, a flow item or a document, so YAML reads it as
 * one scalar of its own type (3 a number, true a boolean, web-1 a string).
 * A colon may stand inside (nginx:1.25, 2024-05-01T12:00:00Z), never before
 * a space or at the end, where it would make a key.
 */
const WORD = /^(?!-[-\s]|-$|\.\.\.)[\p{L}\p{N}\p{M}_./+=~-](?:(?:[\p{L}\p{N}\p{M}_./+=~@ -]|:(?! ))*[\p{L}\p{N}\p{M}_./+=~@-])?$/u;
/** What a YAML single-quoted scalar cannot carry verbatim: line breaks fold, non-printables are refused. */
export const NOT_SINGLE_QUOTABLE =
  /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** What a block scalar cannot carry: \r is a line break to YAML, the rest is refused. */
const NOT_IN_BLOCK =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** \uXXXX for what a YAML reader refuses or reads as a line break: apply bodies and JSON in YAML. */
export function escapeForYaml(json: string): string {
  return json.replace(YAML_UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** The text between the quotes of a JSON string, which is also a YAML double-quoted scalar. */
export function doubleQuotedContent(value: string): string {
  if (INERT.test(value)) return value;
  return escapeForYaml(JSON.stringify(value).slice(1, -1)).replace(STRUCTURAL, unicodeEscape);
}

/** JSON string literal that is also a valid YAML double-quoted scalar. */
export function jsonQuote(value: string): string {
  return `"${INERT.test(value) ? value : escapeForYaml(JSON.stringify(value).slice(1, -1))}"`;
}

/** The text between the quotes of a YAML single-quoted scalar; throws when it cannot hold the value. */
export function singleQuotedContent(value: string): string {
  if (NOT_SINGLE_QUOTABLE.test(value)) {
    throw new Error('the value holds a line break or a control character, which a single-quoted scalar cannot hold: write "{{…}}" instead');
  }
  return value.replaceAll("'", "''");
}

/** A word as it is, anything else (but empty) as a double-quoted scalar. */
export function plainScalar(value: string): string {
  return value === '' || WORD.test(value) ? value : `"${doubleQuotedContent(value)}"`;
}

/** Where a text's lines go in a block scalar: the first line's column and every other line's. */
export interface BlockPlacement {
  /** Written before the text: a line break and padding (nindent) or padding (indent). */
  prefix: string;
  firstColumn: number;
  restColumn: number;
  /** The block's content must be indented beyond this column. */
  parent: number;
  /** The block's indentation, when the template's text already fixed it. */
  contentIndent: number | undefined;
}

const leadingSpaces = (line: string): number => line.length - line.replace(/^ +/, '').length;

/**
 * Lays a text out inside a block scalar, each line indented so that none can
 * end the block; throws when the text cannot stay in it (a width at or below
 * the block's parent, a first line whose own indentation YAML would take for
 * the block's, a \r or a control character).
 */
export function blockText(value: string, at: BlockPlacement): string {
  const refused = NOT_IN_BLOCK.exec(value);
  if (refused !== null) {
    throw new Error(
      `the value holds ${refused[0] === '\r' ? 'a carriage return' : `U+${(refused[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`}, which a block scalar cannot hold: write "{{…}}" instead`,
    );
  }
  const lines = value.split('\n');
  let indent = at.contentIndent;
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '') continue;
    const column = (i === 0 ? at.firstColumn : at.restColumn) + leadingSpaces(line);
    if (indent === undefined && leadingSpaces(line) > 0) {
      throw new Error(`line ${i + 1} of the value starts with spaces, which YAML would take for the block scalar's indentation and drop: write "{{…}}" instead`);
    }
    indent ??= column;
    if (indent <= at.parent || column < indent) {
      throw new Error(
        `line ${i + 1} of the value would leave its block scalar (indented to column ${column}, the block needs more than ${at.parent}${indent > at.parent ? ` and at least ${indent}` : ''}): indent it more, and start it on a line without leading spaces`,
      );
    }
  }
  const pad = ' '.repeat(at.restColumn);
  return at.prefix + lines.map((line, i) => (i === 0 || line === '' ? line : pad + line)).join('\n');
}
