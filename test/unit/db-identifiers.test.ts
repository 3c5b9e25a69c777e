import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DbError, parseQualifiedName, quoteIdentifier } from '../../src/db/index.ts';

test('plain names fold to lower case and are quoted; quoted parts are kept as written', () => {
  const cases: [string, string | undefined, string, string][] = [
    ['users', undefined, 'users', '"users"'],
    ['Users', undefined, 'users', '"users"'],
    ['public.users', 'public', 'users', '"public"."users"'],
    ['  app.Users_2$  ', 'app', 'users_2$', '"app"."users_2$"'],
    ['"My Table"', undefined, 'My Table', '"My Table"'],
    ['"we""ird"."a.b"', 'we"ird', 'a.b', '"we""ird"."a.b"'],
    ['"ünïcode"', undefined, 'ünïcode', '"ünïcode"'],
    ['"x; DROP TABLE y; --"', undefined, 'x; DROP TABLE y; --', '"x; DROP TABLE y; --"'],
  ];
  for (const [text, schema, name, sql] of cases) {
    assert.deepEqual(parseQualifiedName(text, 'spec.t'), { schema, name, sql }, text);
  }
});

test('anything else is refused, naming the field', () => {
  const hostile = [
    '',
    ' ',
    'users; DROP TABLE users',
    'users--',
    'users /* x */',
    'a b',
    'a.b.c',
    'a.',
    '.a',
    'a..b',
    '"unterminated',
    '"a"b',
    '""',
    'pg_catalog.pg_class(x)',
    '1abc',
    'ünïcode',
    'a\0b',
    '"a\0b"',
    `"${'x'.repeat(64)}"`,
    'x'.repeat(64),
    "users'",
    'users)',
  ];
  for (const text of hostile) {
    assert.throws(
      () => parseQualifiedName(text, 'spec.changeDetection.tableName'),
      (error: unknown) => error instanceof DbError && error.code === 'ROWCAST_INVALID_IDENTIFIER' && error.message.startsWith('spec.changeDetection.tableName: '),
      JSON.stringify(text),
    );
  }
  assert.equal(parseQualifiedName('x'.repeat(63), 'f').name.length, 63);
});

test('a column name has one part', () => {
  assert.equal(parseQualifiedName('updated_at', 'spec.changeDetection.timestampColumn', { maxParts: 1 }).sql, '"updated_at"');
  assert.throws(() => parseQualifiedName('t.updated_at', 'spec.changeDetection.timestampColumn', { maxParts: 1 }), /timestampColumn: .*not a column name/);
});

test('quoteIdentifier doubles embedded quotes', () => {
  assert.equal(quoteIdentifier('a"b'), '"a""b"');
});
