import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { condition, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

// Conditions say what happened: whether the database answered, whether
// anything reached a cluster, and nothing false on the way down.
const env = await openTestEnv('dqr-conditions');
let running: RunningController | undefined;
let baseline: LeakCount | undefined;
let superuser: pg.Client | undefined;
const lockedRole = `locked_${randomBytes(3).toString('hex')}`;
const lockedPassword = randomBytes(12).toString('hex');

const template = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cond-{{row.id}}\ndata:\n  id: "{{row.id}}"\n';

before(async () => {
  await env.sql('CREATE TABLE items (id int PRIMARY KEY)');
  await env.sql('INSERT INTO items VALUES (1), (2)');
  await env.sql('CREATE TABLE pace (slow boolean NOT NULL)');
  await env.sql('INSERT INTO pace VALUES (false)');
  superuser = new pg.Client({ host: env.state.postgres.host, port: env.state.postgres.port, user: env.state.postgres.user, password: env.state.postgres.password, database: 'postgres' });
  await superuser.connect();
  await superuser.query(`CREATE ROLE ${lockedRole} LOGIN PASSWORD '${lockedPassword}'`);
  await superuser.query(`ALTER ROLE ${lockedRole} NOLOGIN`);
  await registerMembers(env);
  await putDatabaseSecret(env);
  await putDatabaseSecret(env, 'db-wrong-password', { password: 'not-the-password' });
  await putDatabaseSecret(env, 'db-locked', { username: lockedRole, password: lockedPassword });
  baseline = await env.leaks();
  running = await startController(env, ['--shutdown-grace', '1s']);
});

after(async () => {
  await superuser?.query(`DROP ROLE IF EXISTS ${lockedRole}`);
  await superuser?.end();
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

async function conditionsOf(name: string, settled: (s: Awaited<ReturnType<typeof dqrStatus>>) => boolean): Promise<Awaited<ReturnType<typeof dqrStatus>>> {
  return eventually(`${name} conditions`, async () => {
    const status = await dqrStatus(env, name);
    return settled(status) ? status : undefined;
  });
}

for (const [secret, what] of [
  ['db-wrong-password', 'a wrong password'],
  ['db-locked', 'a role that may not log in'],
] as const) {
  test(`${what} is DatabaseConnected=False, reason AuthenticationFailed`, async () => {
    const name = `auth-${secret}`;
    await putDqr(env, name, { query: 'SELECT id FROM items', template, database: { connectionSecretRef: { name: secret } } });
    const status = await conditionsOf(name, (s) => condition(s, 'DatabaseConnected') !== undefined);
    const connected = condition(status, 'DatabaseConnected');
    assert.equal(connected?.status, 'False');
    assert.equal(connected.reason, 'AuthenticationFailed');
    assert.ok(!connected.message.includes(lockedPassword));
    assert.equal(condition(status, 'Ready')?.status, 'False');
  });
}

test('a statement timeout is a query failure: DatabaseConnected=True, Synced=False QueryFailed', async () => {
  await putDqr(env, 'timeout', {
    query: 'SELECT id FROM items, pg_sleep(2)',
    template,
    database: { connectionSecretRef: { name: 'db' }, pool: { statementTimeout: '200ms' } },
  });
  const status = await conditionsOf('timeout', (s) => condition(s, 'Synced')?.status === 'False');
  assert.equal(condition(status, 'DatabaseConnected')?.status, 'True');
  assert.equal(condition(status, 'Synced')?.reason, 'QueryFailed');
  assert.match(condition(status, 'Synced')?.message ?? '', /statement timeout/);
});

test('a SQL error is a query failure: DatabaseConnected=True, Synced=False QueryFailed', async () => {
  await putDqr(env, 'sql-error', { query: 'SELECT id FROM no_such_table', template });
  const status = await conditionsOf('sql-error', (s) => condition(s, 'Synced')?.status === 'False');
  assert.equal(condition(status, 'DatabaseConnected')?.status, 'True');
  assert.equal(condition(status, 'Synced')?.reason, 'QueryFailed');
});

test('a DQR whose every row is refused by every cluster is Ready=False SyncFailed, not PartiallySynced', async () => {
  const refused = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: refused-{{row.id}}\n  namespace: no-such-namespace-anywhere\n';
  await putDqr(env, 'refused', { query: 'SELECT id FROM items', template: refused });
  const status = await conditionsOf('refused', (s) => condition(s, 'Ready')?.status === 'False');
  assert.equal(condition(status, 'Ready')?.reason, 'SyncFailed');
  assert.equal(condition(status, 'Synced')?.reason, 'SyncFailed');
});

test('a DQR every selected cluster refuses (tenancy) is Ready=False SyncFailed', async () => {
  await putDqr(env, 'no-tenancy', { query: 'SELECT id FROM items', template, targets: { clusters: ['other-namespace/member-1'] } });
  const status = await conditionsOf('no-tenancy', (s) => condition(s, 'Ready')?.status === 'False');
  assert.equal(condition(status, 'Ready')?.reason, 'SyncFailed');
});

test('a controller stopped in the middle of a query writes no false ConnectionFailed', async () => {
  await putDqr(env, 'stopping', { query: 'SELECT id FROM items, pace, pg_sleep(CASE WHEN pace.slow THEN 30 ELSE 0 END)', template });
  await conditionsOf('stopping', (s) => condition(s, 'Ready')?.status === 'True');
  await env.sql('UPDATE pace SET slow = true');
  await eventually('the slow query running', async () => {
    const r = await superuser?.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND query LIKE '%pg_sleep(CASE%' AND state = 'active'", [env.db.database]);
    return Number(r?.rows[0]?.n ?? 0) > 0 ? true : undefined;
  });
  await running?.stop();
  running = undefined;
  const status = await dqrStatus(env, 'stopping');
  assert.equal(condition(status, 'DatabaseConnected')?.status, 'True', JSON.stringify(status.conditions));
  assert.notEqual(condition(status, 'Synced')?.reason, 'ConnectionFailed');
  await env.sql('UPDATE pace SET slow = false');
});
