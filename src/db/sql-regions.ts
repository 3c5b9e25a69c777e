/**
 * Where a statement's text is code and where it is quoted: the spans of
 * strings, quoted identifiers, dollar-quoted bodies and comments, and the
 * positional parameters (`$1`) in code. The write-back compiler needs this to
 * refuse a `{{param}}` that would land inside a literal (`'$1'` is the text
 * "$1", not a parameter) and a `$n` the user wrote that would collide with
 * ours.
 *
 * The lexical rules are PostgreSQL's, as split-statements.ts reads them
 * (standard_conforming_strings on); that file only needs statement ends, this
 * one needs positions, hence a separate pass.
 */
export interface SqlRegions {
  /** [start, end) of every quoted or commented span. */
  readonly quoted: readonly (readonly [number, number])[];
  /** Index of each `$<digits>` parameter in code. */
  readonly parameters: readonly number[];
}

export function sqlRegions(sql: string): SqlRegions {
  const quoted: [number, number][] = [];
  const parameters: number[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql[i] ?? '';
    const start = i;
    if (c === "'") {
      i = skipQuoted(sql, i + 1, "'", isEscapeStringPrefix(sql, i));
      quoted.push([start, i]);
    } else if (c === '"') {
      i = skipQuoted(sql, i + 1, '"', false);
      quoted.push([start, i]);
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i + 2);
      i = end === -1 ? n : end + 1;
      quoted.push([start, i]);
    } else if (c === '/' && sql[i + 1] === '*') {
      i = skipBlockComment(sql, i + 2);
      quoted.push([start, i]);
    } else if (c === '$') {
      const next = sql[i + 1] ?? '';
      if (/[0-9]/.test(next)) {
        parameters.push(i);
        i += 2;
        while (i < n && /[0-9]/.test(sql[i] ?? '')) i += 1;
      } else {
        const end = dollarQuoteEnd(sql, i);
        if (end === undefined) i += 1;
        else {
          i = end;
          quoted.push([start, i]);
        }
      }
    } else if (isIdentChar(c)) {
      // A whole word, so `a$1` and `a$b$` stay identifiers, as in PostgreSQL's scanner.
      i += 1;
      while (i < n && isIdentChar(sql[i] ?? '')) i += 1;
    } else {
      i += 1;
    }
  }
  return { quoted, parameters };
}

export function isIdentChar(c: string): boolean {
  return /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) >= 0x80;
}

function isEscapeStringPrefix(sql: string, quote: number): boolean {
  const prefix = sql[quote - 1];
  if (prefix !== 'E' && prefix !== 'e') return false;
  const before = sql[quote - 2];
  return before === undefined || !isIdentChar(before);
}

function skipQuoted(sql: string, from: number, quote: string, backslashEscapes: boolean): number {
  let i = from;
  while (i < sql.length) {
    const c = sql[i];
    if (backslashEscapes && c === '\\') i += 2;
    else if (c === quote) {
      if (sql[i + 1] === quote) i += 2;
      else return i + 1;
    } else i += 1;
  }
  return sql.length;
}

function skipBlockComment(sql: string, from: number): number {
  let depth = 1;
  let i = from;
  while (i < sql.length) {
    if (sql[i] === '/' && sql[i + 1] === '*') {
      depth += 1;
      i += 2;
    } else if (sql[i] === '*' && sql[i + 1] === '/') {
      depth -= 1;
      i += 2;
      if (depth === 0) return i;
    } else i += 1;
  }
  return sql.length;
}

/** End of a `$$…$$` or `$tag$…$tag$` body starting at `at`, or undefined when `$` opens none. */
function dollarQuoteEnd(sql: string, at: number): number | undefined {
  let j = at + 1;
  if (sql[j] !== '$') {
    if (!/[A-Za-z_]/.test(sql[j] ?? '') && (sql.charCodeAt(j) || 0) < 0x80) return undefined;
    while (j < sql.length && isIdentChar(sql[j] ?? '') && sql[j] !== '$') j += 1;
    if (sql[j] !== '$') return undefined;
  }
  const tag = sql.slice(at, j + 1);
  const end = sql.indexOf(tag, j + 1);
  return end === -1 ? sql.length : end + tag.length;
}
