import assert from 'node:assert/strict';
import { test } from 'node:test';
import { splitStatements } from '../../src/db/index.ts';

// [name, input, expected statements]
const cases: readonly (readonly [string, string, readonly string[]])[] = [
  ['one statement, no semicolon', 'SELECT 1', ['SELECT 1']],
  ['one statement, trailing semicolon', 'SELECT 1;', ['SELECT 1']],
  ['two statements', 'SELECT 1; SELECT 2', ['SELECT 1', 'SELECT 2']],
  ['surrounding whitespace is trimmed, inner text kept', "  SET LOCAL statement_timeout = '5s' ;\n\n  SELECT a,\n  b FROM t  ", ["SET LOCAL statement_timeout = '5s'", 'SELECT a,\n  b FROM t']],
  ['empty statements are dropped', ';;SELECT 1;; ;\n;SELECT 2;;', ['SELECT 1', 'SELECT 2']],
  ['empty input', '', []],
  ['only whitespace and semicolons', ' ;\n\t; ', []],
  ['only comments', '-- nothing here\n/* nor here */', []],
  ['comment-only piece between statements is dropped', 'SELECT 1; -- done\n; /* also done */ ; SELECT 2', ['SELECT 1', 'SELECT 2']],
  ['semicolon in a string', "SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", 'SELECT 2']],
  ['doubled quote escapes a quote', "SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine'", 'SELECT 2']],
  ['string that is only an escaped quote', "SELECT ''''; SELECT 2", ["SELECT ''''", 'SELECT 2']],
  ['empty string', "SELECT ''; SELECT 2", ["SELECT ''", 'SELECT 2']],
  ['backslash is literal in a standard string', "SELECT 'C:\\'; SELECT 2", ["SELECT 'C:\\'", 'SELECT 2']],
  ['E string: backslash escapes a quote', "SELECT E'it\\'s; still'; SELECT 2", ["SELECT E'it\\'s; still'", 'SELECT 2']],
  ['lower-case e string', "SELECT e'\\';'; SELECT 2", ["SELECT e'\\';'", 'SELECT 2']],
  ['E string: escaped backslash before the closing quote', "SELECT E'\\\\'; SELECT 2", ["SELECT E'\\\\'", 'SELECT 2']],
  ['E string: doubled quote works too', "SELECT E'a''b;c'; SELECT 2", ["SELECT E'a''b;c'", 'SELECT 2']],
  ['E string after an operator, no space', "SELECT 'x'||E'\\';'; SELECT 2", ["SELECT 'x'||E'\\';'", 'SELECT 2']],
  ['identifier ending in E before a quote', "SELECT typE'\\'; SELECT 2", ["SELECT typE'\\'", 'SELECT 2']],
  ['U& string', "SELECT U&'d\\0061t;a'; SELECT 2", ["SELECT U&'d\\0061t;a'", 'SELECT 2']],
  ['bit and hex strings', "SELECT B'1;0', X'1;F'; SELECT 2", ["SELECT B'1;0', X'1;F'", 'SELECT 2']],
  ['quoted identifier with a semicolon', 'SELECT 1 AS "a;b"; SELECT 2', ['SELECT 1 AS "a;b"', 'SELECT 2']],
  ['quoted identifier with a doubled quote', 'SELECT 1 AS "a"";b"; SELECT 2', ['SELECT 1 AS "a"";b"', 'SELECT 2']],
  ['quote characters inside a quoted identifier', `SELECT 1 AS "it's;$$"; SELECT 2`, [`SELECT 1 AS "it's;$$"`, 'SELECT 2']],
  ['dollar quote', 'SELECT $$a;b$$; SELECT 2', ['SELECT $$a;b$$', 'SELECT 2']],
  ['empty dollar quote', 'SELECT $$$$; SELECT 2', ['SELECT $$$$', 'SELECT 2']],
  ['tagged dollar quote', 'SELECT $fn$a;b$fn$; SELECT 2', ['SELECT $fn$a;b$fn$', 'SELECT 2']],
  ['tagged dollar quote containing $$', 'SELECT $x$ $$;$$ $x$; SELECT 2', ['SELECT $x$ $$;$$ $x$', 'SELECT 2']],
  ['dollar quote ends only at the same tag', 'SELECT $a$ $b$; $a$; SELECT 2', ['SELECT $a$ $b$; $a$', 'SELECT 2']],
  ['dollar tags are case-sensitive', 'SELECT $a$ ;$A$; $a$; SELECT 2', ['SELECT $a$ ;$A$; $a$', 'SELECT 2']],
  ['quotes and comments inside a dollar quote do not count', "SELECT $$ ' \" -- /* ; $$; SELECT 2", ["SELECT $$ ' \" -- /* ; $$", 'SELECT 2']],
  [
    'DO block with semicolons inside',
    "DO $body$\nBEGIN\n  RAISE NOTICE 'x;y';\n  PERFORM 1;\nEND\n$body$;\nSELECT 2",
    ["DO $body$\nBEGIN\n  RAISE NOTICE 'x;y';\n  PERFORM 1;\nEND\n$body$", 'SELECT 2'],
  ],
  ['positional parameter is not a dollar quote', 'SELECT $1; SELECT $2', ['SELECT $1', 'SELECT $2']],
  ['$1 then text that looks like a tag', 'SELECT $1, $a; SELECT 2', ['SELECT $1, $a', 'SELECT 2']],
  ['dollar inside an identifier is not a dollar quote', 'SELECT a$b$c; SELECT 2', ['SELECT a$b$c', 'SELECT 2']],
  ['identifier with a dollar then a dollar-quoted string', 'SELECT x$ $q$;$q$; SELECT 2', ['SELECT x$ $q$;$q$', 'SELECT 2']],
  ['line comment with a semicolon', 'SELECT 1 -- no; split\n, 2; SELECT 3', ['SELECT 1 -- no; split\n, 2', 'SELECT 3']],
  ['line comment with a quote', "SELECT 1 -- it's\n; SELECT 2", ["SELECT 1 -- it's", 'SELECT 2']],
  ['line comment at the end without a newline', 'SELECT 1; SELECT 2 -- the end; really', ['SELECT 1', 'SELECT 2 -- the end; really']],
  ['line comment ends at CRLF', 'SELECT 1 -- a;\r\n; SELECT 2', ['SELECT 1 -- a;', 'SELECT 2']],
  ['a single dash is an operator', 'SELECT 3 - 1; SELECT -2', ['SELECT 3 - 1', 'SELECT -2']],
  ['block comment with a semicolon', 'SELECT /* ; */ 1; SELECT 2', ['SELECT /* ; */ 1', 'SELECT 2']],
  ['nested block comments', 'SELECT /* a /* b; */ c; */ 1; SELECT 2', ['SELECT /* a /* b; */ c; */ 1', 'SELECT 2']],
  ['deeply nested block comments', 'SELECT /*/**/;/* /* */ ; */;*/ 1; SELECT 2', ['SELECT /*/**/;/* /* */ ; */;*/ 1', 'SELECT 2']],
  ['quotes inside a block comment do not count', "SELECT /* it's \"x $$ */ 1; SELECT 2", ["SELECT /* it's \"x $$ */ 1", 'SELECT 2']],
  ['line comment marker inside a block comment', 'SELECT /* -- */ 1; SELECT 2', ['SELECT /* -- */ 1', 'SELECT 2']],
  ['block comment marker inside a line comment', 'SELECT 1 -- /*\n; SELECT 2 -- */', ['SELECT 1 -- /*', 'SELECT 2 -- */']],
  ['division and multiplication are not comments', 'SELECT 4/2*3; SELECT 2', ['SELECT 4/2*3', 'SELECT 2']],
  ['leading comment stays with its statement', '-- setup\nSET LOCAL a.b = 1;\n/* the query */ SELECT 2', ['-- setup\nSET LOCAL a.b = 1', '/* the query */ SELECT 2']],
  ['unterminated string runs to the end', "SELECT 'abc; SELECT 2", ["SELECT 'abc; SELECT 2"]],
  ['unterminated quoted identifier runs to the end', 'SELECT "abc; SELECT 2', ['SELECT "abc; SELECT 2']],
  ['unterminated dollar quote runs to the end', 'SELECT $$abc; SELECT 2', ['SELECT $$abc; SELECT 2']],
  ['unterminated block comment runs to the end', 'SELECT 1 /* abc; SELECT 2', ['SELECT 1 /* abc; SELECT 2']],
  ['non-ASCII identifiers and strings', "SELECT 'ü;é' AS größe; SELECT $é$;$é$", ["SELECT 'ü;é' AS größe", 'SELECT $é$;$é$']],
  ['casts and array slices', "SELECT '1'::int, (ARRAY[1,2])[1:1]; SELECT 2", ["SELECT '1'::int, (ARRAY[1,2])[1:1]", 'SELECT 2']],
  ['JSON operators with quotes', `SELECT data->>'a;b', data #> '{x,y}' FROM t; SELECT 2`, [`SELECT data->>'a;b', data #> '{x,y}' FROM t`, 'SELECT 2']],
];

for (const [name, input, expected] of cases) {
  test(`splitStatements: ${name}`, () => {
    assert.deepEqual(splitStatements(input), expected);
  });
}

test('splitStatements: every statement is a verbatim slice of the input', () => {
  for (const [, input] of cases) {
    for (const statement of splitStatements(input)) assert.ok(input.includes(statement), `${JSON.stringify(statement)} is not in ${JSON.stringify(input)}`);
  }
});

test('splitStatements: many statements, each with every kind of quote and comment', () => {
  const statement = (i: number): string => `SELECT '${i};' AS "c;${i}", E'\\';', $t$;$t$ /* ${i}; /* ; */ */ -- ${i};`;
  const input = Array.from({ length: 2000 }, (_, i) => statement(i)).join('\n;');
  const out = splitStatements(input);
  assert.equal(out.length, 2000);
  assert.equal(out[1234], statement(1234));
});
