import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bindParams, compileStatusTemplate, type CompiledStatement, type StatementCompileError } from '../../src/db/index.ts';

function compiled(template: string): CompiledStatement {
  const result = compileStatusTemplate(template);
  if (!result.ok) assert.fail(`expected ${JSON.stringify(template)} to compile, got ${JSON.stringify(result.error)}`);
  return result.statement;
}

function refused(template: string): StatementCompileError {
  const result = compileStatusTemplate(template);
  if (result.ok) assert.fail(`expected ${JSON.stringify(template)} to be refused, got ${JSON.stringify(result.statement)}`);
  return result.error;
}

test('{{param}} tags become $n; the same path reuses its number; other text is kept verbatim', () => {
  const statement = compiled(
    'UPDATE apps SET ready = {{param resource.status.readyReplicas}},\n' +
      '  cluster = {{ param   cluster.name }}, seen = now()\n' +
      'WHERE id = {{param row.id}} AND ready IS DISTINCT FROM {{param resource.status.readyReplicas}}',
  );
  assert.equal(
    statement.text,
    'UPDATE apps SET ready = $1,\n  cluster = $2, seen = now()\nWHERE id = $3 AND ready IS DISTINCT FROM $1',
  );
  assert.deepEqual(statement.params, ['resource.status.readyReplicas', 'cluster.name', 'row.id']);
});

test('whitespace inside a tag may include newlines and tabs', () => {
  assert.equal(compiled('SELECT {{\tparam\n row.id \n}}').text, 'SELECT $1');
});

test('bracketed keys reach labels with dots and slashes; the plain form of a key is the same parameter', () => {
  const statement = compiled(
    'UPDATE t SET app = {{param resource.metadata.labels["app.kubernetes.io/name"]}}, a = {{param row["id"]}}, b = {{param row.id}}',
  );
  assert.equal(statement.text, 'UPDATE t SET app = $1, a = $2, b = $2');
  assert.deepEqual(statement.params, ['resource.metadata.labels["app.kubernetes.io/name"]', 'row.id']);
});

test('casts, semicolons at the end and comments without tags are fine', () => {
  const statement = compiled(
    "-- write the status back\nUPDATE t SET s = {{param resource.status}}::jsonb /* as jsonb */, note = 'a {b} c' WHERE id = {{param row.id}}::int;\n",
  );
  assert.deepEqual(statement.params, ['resource.status', 'row.id']);
  assert.ok(statement.text.includes("'a {b} c'"));
});

test('a bare {{row.id}} is refused with its line and column, and a hint', () => {
  const error = refused('UPDATE t\nSET a = 1\nWHERE id = {{row.id}}');
  assert.equal(error.line, 3);
  assert.equal(error.column, 12);
  assert.match(error.message, /splice/);
  assert.match(error.message, /\{\{param row/);
});

test('triple-stash, helpers, blocks, comments, partials, whitespace control are refused', () => {
  const cases: [string, number, number, RegExp][] = [
    ['SELECT {{{row.id}}}', 1, 8, /triple-stash/],
    ['SELECT {{quote row.id}}', 1, 8, /splice/],
    ['SELECT {{#if row.id}}1{{/if}}', 1, 8, /helpers/],
    ['SELECT {{! note }} 1', 1, 8, /comments/],
    ['SELECT {{> partial}}', 1, 8, /partials/],
    ['SELECT {{~param row.id~}}', 1, 8, /whitespace control/],
    ['SELECT {{param row.id~}}', 1, 22, /whitespace control/],
    ['SELECT {{else}}', 1, 8, /helpers/],
    ['SELECT 1 }}', 1, 10, /outside a \{\{param/],
    ["SELECT '{\"a\":{\"b\":1}}'", 1, 20, /outside a \{\{param/],
    ['SELECT {{param row.id}} }}', 1, 25, /outside/],
    ['SELECT {{param row.id', 1, 22, /expected "}}"/],
    ['SELECT {{param}}', 1, 8, /splice/],
    ['SELECT {{param secret.password}}', 1, 16, /starts with resource\., row\. or cluster\./],
    ['SELECT {{param row.a b}}', 1, 22, /expected "}}"/],
    ['SELECT {{param row.a..b}}', 1, 22, /segment/],
    ['SELECT {{param row["a\\"b"]}}', 1, 19, /bracketed key/],
    ['SELECT {{param row.a (x)}}', 1, 22, /expected/],
    ['SELECT 1 {{', 1, 10, /without a closing/],
    ['SELECT 1 {{  ', 1, 10, /without a closing/],
  ];
  for (const [template, line, column, message] of cases) {
    const error = refused(template);
    assert.deepEqual([error.line, error.column], [line, column], `${template}: ${error.message}`);
    assert.match(error.message, message, template);
  }
});

test('columns count characters, not UTF-16 units', () => {
  const error = refused("SELECT 'ü😀', {{x}}");
  assert.deepEqual([error.line, error.column], [1, 14]);
});

test('a tag inside a string, quoted identifier, dollar body or comment is refused', () => {
  for (const template of [
    "UPDATE t SET a = '{{param row.id}}'",
    "UPDATE t SET a = E'x\\' {{param row.id}}'",
    'UPDATE t SET "{{param row.id}}" = 1',
    'UPDATE t SET a = $$ {{param row.id}} $$',
    'UPDATE t SET a = $q$ {{param row.id}} $q$',
    'UPDATE t SET a = 1 -- {{param row.id}}',
    'UPDATE t SET a = 1 /* {{param row.id}} */',
  ]) {
    const error = refused(template);
    assert.match(error.message, /quoted string, quoted identifier or comment/, template);
  }
});

test('a tag glued to a word, and a hand-written $1, are refused', () => {
  assert.match(refused('UPDATE t SET a = x{{param row.id}}').message, /before \{\{param\}\}/);
  assert.match(refused('UPDATE t SET a = {{param row.id}}x').message, /after \{\{param/);
  const error = refused('UPDATE t SET a = {{param row.a}}, b = $1');
  assert.deepEqual([error.line, error.column], [1, 39]);
  assert.match(error.message, /positional parameter/);
  // Not parameters: inside identifiers and literals.
  compiled("UPDATE t SET a$1 = '$1', b = {{param row.a}}");
});

test('exactly one statement', () => {
  assert.match(refused('').message, /no SQL statement/);
  assert.match(refused('  -- only a comment\n').message, /no SQL statement/);
  const error = refused('UPDATE t SET a = {{param row.a}};\nDROP TABLE t');
  assert.deepEqual([error.line, error.column], [2, 1]);
  assert.match(error.message, /more than one statement/);
  // A semicolon inside a string is not a statement end.
  compiled("UPDATE t SET a = 'x;y' WHERE id = {{param row.id}}");
});

test('bindParams: values in $n order, missing paths are null, objects are JSON text, strings untouched', () => {
  const statement = compiled(
    'SELECT {{param resource.status.readyReplicas}}, {{param resource.status.conditions}}, {{param row.name}}, ' +
      '{{param cluster.labels["topology.kubernetes.io/region"]}}, {{param resource.spec.replicas}}, ' +
      '{{param resource.status.conditions.0.type}}, {{param resource.status.conditions.7.type}}, {{param row.big}}, {{param resource.metadata.labels}}',
  );
  const hostile = "'; DROP TABLE x; --\\ \"ü\"";
  const values = bindParams(statement, {
    resource: { spec: { replicas: 3 }, status: { conditions: [{ type: 'Available', status: 'True' }] }, metadata: {} },
    row: { name: hostile, big: 12n },
    cluster: { name: 'eu-1', labels: { 'topology.kubernetes.io/region': 'eu' } },
  });
  assert.deepEqual(values, [null, '[{"type":"Available","status":"True"}]', hostile, 'eu', 3, 'Available', null, '12', null]);
});

test('bindParams never walks the prototype chain', () => {
  const statement = compiled('SELECT {{param row.constructor}}, {{param row.__proto__}}, {{param resource.toString}}, {{param row.x.length}}');
  assert.deepEqual(bindParams(statement, { resource: {}, row: { x: 'abc' }, cluster: { name: 'c', labels: {} } }), [null, null, null, null]);
});

test('bindParams: the whole root binds as JSON', () => {
  const statement = compiled('SELECT {{param cluster}}');
  assert.deepEqual(bindParams(statement, { resource: {}, row: {}, cluster: { name: 'c', labels: { a: 'b' } } }), ['{"name":"c","labels":{"a":"b"}}']);
});
