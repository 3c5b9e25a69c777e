import assert from 'node:assert/strict';
import { test } from 'node:test';
import { leavesSessionState } from '../../src/db/index.ts';

const stays: readonly string[] = [
  'SELECT id FROM t',
  '  -- a comment\n  SELECT 1',
  'WITH x AS (SELECT 1) UPDATE t SET a = 1',
  'UPDATE apps SET ready = $1 WHERE id = $2',
  'INSERT INTO t VALUES ($1)',
  'DELETE FROM t WHERE id = $1',
  "SET LOCAL statement_timeout = '5s'",
  'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ',
  'SHOW search_path',
  'SELECT pg_advisory_xact_lock(1)',
  "SELECT id FROM t WHERE note = 'set_config is only text here'",
];

const leaves: readonly string[] = [
  "SET statement_timeout = '0'",
  'SET ROLE admin',
  'set search_path = evil',
  'RESET ALL',
  "SELECT set_config('statement_timeout', '0', false)",
  'WITH x AS (SELECT set_config($1, $2, false)) UPDATE t SET a = 1',
  'SELECT pg_advisory_lock(1)',
  'PREPARE p AS SELECT 1',
  'LISTEN ch',
  'DISCARD ALL',
  'CALL do_things()',
];

for (const statement of stays) {
  test(`leavesSessionState: ${JSON.stringify(statement)} goes back to the pool`, () => {
    assert.equal(leavesSessionState(statement), false);
  });
}

for (const statement of leaves) {
  test(`leavesSessionState: ${JSON.stringify(statement)} closes its connection`, () => {
    assert.equal(leavesSessionState(statement), true);
  });
}
