import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { condition, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('sync-failure-log');
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

before(async () => {
  await registerMembers(env);
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE rows_to_sync (id int PRIMARY KEY)');
  await env.sql('INSERT INTO rows_to_sync VALUES (1)');
  await env.sql('CREATE TABLE not_a_ledger (dqr text, cluster text, name text)');
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('a sync failure that reaches status (a ledger table of the wrong shape) is logged, once however often it recurs', async () => {
  assert.ok(running !== undefined);
  await putDqr(env, 'ledgered', {
    query: 'SELECT id FROM rows_to_sync',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: led-{{row.id}}\n',
    ledger: { table: 'not_a_ledger' },
  });
  const status = await eventually('Synced False naming the ledger', async () => {
    const s = await dqrStatus(env, 'ledgered');
    return condition(s, 'Synced')?.status === 'False' && (condition(s, 'Synced')?.message ?? '').includes('not a Rowcast ledger') ? s : undefined;
  });
  const message = condition(status, 'Synced')?.message ?? '';
  assert.match(message, /^spec\.ledger\.table: the existing table \S+ is not a Rowcast ledger/, 'the field is named once');
  // Several more 1 s polls fail the same way.
  const reconciles = (): number => running?.logs.filter((l) => l.includes('"dqr"') && l.includes('ledgered') && l.includes('reconciling')).length ?? 0;
  const seen = reconciles();
  await eventually('three more syncs', () => Promise.resolve(reconciles() >= seen + 3 ? true : undefined));
  const logged = running.logs.filter((l) => l.includes('not a Rowcast ledger'));
  assert.equal(logged.length, 1, `logged once:\n${logged.join('\n')}`);
  const line = JSON.parse(logged[0] ?? '{}') as Record<string, unknown>;
  assert.equal(line['level'], 'warn');
  assert.match(String(line['dqr']), /\/ledgered$/);
  assert.equal(line['msg'], 'sync failing');
  assert.equal(line['message'], message);
});
