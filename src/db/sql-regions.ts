import { dollarQuoteEnd, isEscapeStringPrefix, isIdentChar, skipBlockComment, skipQuoted } from './sql-lexing.ts';

/**
 * Where a statement's text is code and where it is quoted: the spans of
 * strings, quoted identifiers, dollar-quoted bodies and comments, and the
 * positional parameters (`$1`) in code. The write-back compiler needs this to
 * refuse a `{{param}}` that would land inside a literal (`'$1'` is the text
 * "$1", not a parameter) and a `$n` the user wrote that would collide with
 * ours.
 *
 * The lexical rules are sql-lexing.ts's, shared with split-statements.ts;
 * that file only needs statement ends, this one needs positions, hence a
 * separate pass.
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
