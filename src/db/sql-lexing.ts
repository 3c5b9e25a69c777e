// PostgreSQL's lexical rules (standard_conforming_strings on) that both the
// statement splitter and the write-back compiler's region scanner follow.

export function isIdentChar(c: string): boolean {
  // Letters, digits, underscore, `$` after the first character, and any non-ASCII character, as in scan.l.
  return /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) >= 0x80;
}

function isIdentStart(c: string): boolean {
  return /[A-Za-z_]/.test(c) || c.charCodeAt(0) >= 0x80;
}

/** E'...' (or e'...') is an escape string when the E is a word of its own, not the end of an identifier. */
export function isEscapeStringPrefix(sql: string, quote: number): boolean {
  const prefix = sql[quote - 1];
  if (prefix !== 'E' && prefix !== 'e') return false;
  const before = sql[quote - 2];
  return before === undefined || !isIdentChar(before);
}

/** Returns the index after the closing quote; a doubled quote is an escaped quote. */
export function skipQuoted(sql: string, from: number, quote: string, backslashEscapes: boolean): number {
  let i = from;
  while (i < sql.length) {
    const c = sql[i];
    if (backslashEscapes && c === '\\') {
      i += 2;
    } else if (c === quote) {
      if (sql[i + 1] === quote) i += 2;
      else return i + 1;
    } else {
      i += 1;
    }
  }
  return sql.length;
}

export function skipLineComment(sql: string, from: number): number {
  const end = sql.indexOf('\n', from);
  return end === -1 ? sql.length : end + 1;
}

/** Block comments nest in PostgreSQL (unlike the SQL standard's reading in most databases). */
export function skipBlockComment(sql: string, from: number): number {
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
    } else {
      i += 1;
    }
  }
  return sql.length;
}

/** End of a `$$…$$` or `$tag$…$tag$` body starting at `at`, or undefined when this `$` opens none (`$1` is a parameter). */
export function dollarQuoteEnd(sql: string, at: number): number | undefined {
  let j = at + 1;
  if (sql[j] !== '$') {
    if (!isIdentStart(sql[j] ?? '')) return undefined;
    while (j < sql.length && isIdentChar(sql[j] ?? '') && sql[j] !== '$') j += 1;
    if (sql[j] !== '$') return undefined;
  }
  const tag = sql.slice(at, j + 1);
  const end = sql.indexOf(tag, j + 1);
  return end === -1 ? sql.length : end + tag.length;
}
