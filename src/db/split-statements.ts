import { dollarQuoteEnd, isEscapeStringPrefix, isIdentChar, skipBlockComment, skipLineComment, skipQuoted } from './sql-lexing.ts';

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
      i = dollarQuoteEnd(sql, i) ?? i + 1;
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
