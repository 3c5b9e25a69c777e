import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RowKeyError, rowKeyOf } from '../../src/render/index.ts';

test('one column: the value as text', () => {
  assert.equal(rowKeyOf({ id: 42, name: 'x' }, ['id']), '42');
  assert.equal(rowKeyOf({ id: 'abc' }, ['id']), 'abc');
  assert.equal(rowKeyOf({ id: '' }, ['id']), '');
  assert.equal(rowKeyOf({ id: true }, ['id']), 'true');
  assert.equal(rowKeyOf({ id: 12345678901234567890n }, ['id']), '12345678901234567890');
});

test('one column of a date or JSON type: ISO 8601 and canonical JSON, never local-time text', () => {
  assert.equal(rowKeyOf({ at: new Date('2024-01-02T03:04:05Z') }, ['at']), '2024-01-02T03:04:05.000Z');
  assert.equal(rowKeyOf({ doc: { b: 1, a: [2] } }, ['doc']), '{"a":[2],"b":1}');
});

test('several columns: a JSON array of the values, types kept', () => {
  assert.equal(rowKeyOf({ region: 'eu', id: 42, x: 'ignored' }, ['region', 'id']), '["eu",42]');
  assert.equal(rowKeyOf({ a: '1', b: 1 }, ['a', 'b']), '["1",1]');
});

test('several columns: separators inside values cannot make two keys collide', () => {
  const one = rowKeyOf({ a: 'x,y', b: 'z' }, ['a', 'b']);
  const two = rowKeyOf({ a: 'x', b: 'y,z' }, ['a', 'b']);
  assert.notEqual(one, two);
  assert.equal(one, '["x,y","z"]');
});

test('a missing key column throws, naming it', () => {
  assert.throws(
    () => rowKeyOf({ id: 1 }, ['region', 'id']),
    (error: unknown) => error instanceof RowKeyError && error.column === 'region' && /no column "region"/.test(error.message),
  );
});

test('a NULL key column throws, naming it', () => {
  assert.throws(
    () => rowKeyOf({ id: null }, ['id']),
    (error: unknown) => error instanceof RowKeyError && error.column === 'id' && /"id" is NULL/.test(error.message),
  );
});

test('no key columns at all throws', () => {
  assert.throws(() => rowKeyOf({ id: 1 }, []), RowKeyError);
});

test('an inherited property is not a column', () => {
  assert.throws(() => rowKeyOf({}, ['toString']), /no column "toString"/);
});
