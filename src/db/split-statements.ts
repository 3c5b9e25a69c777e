/**
 * Splits a query into statements the way PostgreSQL's lexer sees them, so a
 * semicolon inside a string, a quoted identifier, a dollar-quoted body or a
 * comment never ends a statement.
 *
 * Assumes standard_conforming_strings = on (the default since PostgreSQL 9.1):
 * a backslash escapes a quote only inside E'...'. Anything unterminated runs to
 * the end of the text and is left for the server to reject, so the server, not
 * this scanner, reports the syntax error.
 */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (c === ';') {
      push(statements, sql.slice(start, i));
      i += 1;
      start = i;
    } else if (c === "'") {
      i = skipQuoted(sql, i + 1, "'", isEscapeStringPrefix(sql, i));
    } else if (c === '"') {
      i = skipQuoted(sql, i + 1, '"', false);
    } else if (c === '-' && sql[i + 1] === '-') {
      i = skipLineComment(sql, i + 2);
    } else if (c === '/' && sql[i + 1] === '*') {
      i = skipBlockComment(sql, i + 2);
    } else if (c === '$') {
      i = skipDollar(sql, i);
    } else if (c !== undefined && isIdentChar(c)) {
      // Consume a whole word so a `$` inside an identifier (a$b$) is not read as a dollar quote.
      i += 1;
      while (i < n && isIdentChar(sql[i] ?? '')) i += 1;
    } else {
      i += 1;
    }
  }
  push(statements, sql.slice(start));
  return statements;
}

/** Removes leading whitespace and comments: what the server would see first. */
export function stripLeadingComments(statement: string): string {
  let i = 0;
  for (;;) {
    while (i < statement.length && /\s/.test(statement[i] ?? '')) i += 1;
    if (statement.startsWith('--', i)) i = skipLineComment(statement, i + 2);
    else if (statement.startsWith('/*', i)) i = skipBlockComment(statement, i + 2);
    else return statement.slice(i);
  }
}

function push(statements: string[], raw: string): void {
  const text = raw.trim();
  // A piece holding only comments is empty too: sending it would be a no-op at best.
  if (stripLeadingComments(text) !== '') statements.push(text);
}

function isIdentChar(c: string): boolean {
  // Letters, digits, underscore, `$` after the first character, and any non-ASCII character, as in scan.l.
  return /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) >= 0x80;
}

function isIdentStart(c: string): boolean {
  return /[A-Za-z_]/.test(c) || c.charCodeAt(0) >= 0x80;
}

/** E'...' (or e'...') is an escape string when the E is a word of its own, not the end of an identifier. */
function isEscapeStringPrefix(sql: string, quote: number): boolean {
  const prefix = sql[quote - 1];
  if (prefix !== 'E' && prefix !== 'e') return false;
  const before = sql[quote - 2];
  return before === undefined || !isIdentChar(before);
}

/** Returns the index after the closing quote; a doubled quote is an escaped quote. */
function skipQuoted(sql: string, from: number, quote: string, backslashEscapes: boolean): number {
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

function skipLineComment(sql: string, from: number): number {
  const end = sql.indexOf('\n', from);
  return end === -1 ? sql.length : end + 1;
}

/** Block comments nest in PostgreSQL (unlike the SQL standard's reading in most databases). */
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
    } else {
      i += 1;
    }
  }
  return sql.length;
}

/** `$$` or `$tag$` opens a dollar quote; `$1` is a parameter; anything else is an ordinary character. */
function skipDollar(sql: string, at: number): number {
  let j = at + 1;
  if (sql[j] !== '$') {
    if (!isIdentStart(sql[j] ?? '')) return at + 1;
    while (j < sql.length && isIdentChar(sql[j] ?? '') && sql[j] !== '$') j += 1;
    if (sql[j] !== '$') return j;
  }
  const tag = sql.slice(at, j + 1);
  const end = sql.indexOf(tag, j + 1);
  return end === -1 ? sql.length : end + tag.length;
}
