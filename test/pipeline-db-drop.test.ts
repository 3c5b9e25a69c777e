import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { configMaps, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';
import { startPgHoldProxy, type PgHoldProxy } from './helpers/pg-hold-proxy.ts';

const env = await openTestEnv('db-drop');
let running: RunningController | undefined;
let baseline: LeakCount | undefined;
let proxy: PgHoldProxy | undefined;
let held = false;

before(async () => {
  await registerMembers(env);
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE things (id int PRIMARY KEY)');
  await env.sql('INSERT INTO things VALUES (1), (2), (3)');
  // Holds the Close of the first read of the DQR's query that goes through it, once.
  let cursorParsed = false;
  proxy = await startPgHoldProxy(env.db.port, (type, body) => {
    if (held) return false;
    if (type === 'P' && body.includes('db-drop-marker')) cursorParsed = true;
    if (cursorParsed && type === 'C') held = true;
    return held;
  });
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  await proxy?.close();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('a read whose backend is terminated in its last round trip fails the sync without pruning, and the next sync goes on', async () => {
  assert.ok(proxy !== undefined);
  const member = env.members[0];
  assert.ok(member !== undefined);
  await putDqr(env, 'things', {
    query: "SELECT id, 'db-drop-marker' AS marker FROM things ORDER BY id",
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: thing-{{row.id}}\n',
    pruneLimit: '100%',
    // Syncs only on changes: the DELETE below is read by the sync the Secret change starts, through the proxy.
    pollInterval: '1h',
  });
  await eventually('three things on the member', async () => ((await configMaps(member, env.namespace)).has('thing-3') ? true : undefined));

  await env.sql('DELETE FROM things WHERE id = 3');
  // From now on the DQR reads through the proxy, which holds the last round trip of its first read.
  await putDatabaseSecret(env, 'db', { port: String(proxy.port) });
  await proxy.holding;
  const killed = await env.sql("SELECT pg_terminate_backend(pid, 5000) AS done FROM pg_stat_activity WHERE query LIKE '%db-drop-marker%' AND pid <> pg_backend_pid() AND state <> 'idle'");
  assert.equal(killed.rowCount, 1, 'the reading backend was found');
  await eventually('the sync reports the lost connection', async () => (JSON.stringify(await dqrStatus(env, 'things')).includes('the database connection') ? true : undefined));
  assert.ok((await configMaps(member, env.namespace)).has('thing-3'), 'a failed read pruned');
  // The key is free again: the next sync reads 1 and 2 and prunes thing-3.
  await eventually('thing-3 pruned by the next sync', async () => ((await configMaps(member, env.namespace)).has('thing-3') ? undefined : true), 30_000);
});
