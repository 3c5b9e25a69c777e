import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import pg from 'pg';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { condition, configMaps, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('change-detection');
const [east, west] = env.members as [TestCluster, TestCluster];
let running: RunningController | undefined;
let baseline: LeakCount | undefined;
let superuser: pg.Client | undefined;

async function calls(pattern: string): Promise<number> {
  const result = await superuser?.query<{ calls: string }>('SELECT coalesce(sum(calls), 0) AS calls FROM pg_stat_statements WHERE query LIKE $1 AND dbid = (SELECT oid FROM pg_database WHERE datname = $2)', [pattern, env.db.database]);
  return Number(result?.rows[0]?.calls ?? 0);
}

const names = async (cluster: TestCluster, prefix: string): Promise<string> =>
  [...(await configMaps(cluster, env.namespace)).keys()]
    .filter((n) => n.startsWith(prefix))
    .sort()
    .join(',');

before(async () => {
  superuser = new pg.Client({ host: env.state.postgres.host, port: env.state.postgres.port, user: env.state.postgres.user, password: env.state.postgres.password, database: env.db.database });
  await superuser.connect();
  await superuser.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  await env.sql(`CREATE TABLE stamped (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT now());
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
    CREATE TRIGGER stamped_touch BEFORE UPDATE ON stamped FOR EACH ROW EXECUTE FUNCTION touch();
    INSERT INTO stamped (id, v) VALUES (1, 'a'), (2, 'b');
    CREATE TABLE notified (id int PRIMARY KEY, v text);
    CREATE FUNCTION notify_rowcast() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('rowcast_notified', ''); RETURN NULL; END $$;
    CREATE TRIGGER notified_changed AFTER INSERT OR UPDATE OR DELETE ON notified FOR EACH STATEMENT EXECUTE FUNCTION notify_rowcast();
    INSERT INTO notified VALUES (1, 'a');`);
  await registerMembers(env);
  await putDatabaseSecret(env);
  baseline = await env.leaks();
  running = await startController(env, ['--full-sync-interval', '10s']);
});

env.defer(async () => {
  await running?.stop();
  await superuser?.end();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

const template = (prefix: string): string => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${prefix}-{{row.id}}\ndata:\n  v: {{quote row.v}}\n`;

test('timestamp mode runs one light query per poll and the main query only when max() moved; deletes wait for the full sync', async () => {
  await putDqr(env, 'stamped', {
    query: 'SELECT id, v FROM stamped ORDER BY id',
    template: template('stamped'),
    pollInterval: '1s',
    changeDetection: { mode: 'timestamp', tableName: 'stamped', timestampColumn: 'updated_at' },
  });
  await eventually('first sync', async () => ((await names(east, 'stamped-')) === 'stamped-1,stamped-2' ? true : undefined));
  const mainBefore = await calls('%FROM stamped ORDER BY id%');
  const probesBefore = await calls('%max(%updated_at%');
  await new Promise((resolve) => setTimeout(resolve, 3500));
  assert.equal(await calls('%FROM stamped ORDER BY id%'), mainBefore, 'no main query while nothing changed');
  assert.ok((await calls('%max(%updated_at%')) >= probesBefore + 2, 'one max() probe per poll');

  await env.sql("UPDATE stamped SET v = 'changed' WHERE id = 1");
  await eventually('the update applied', async () => ((await configMaps(west, env.namespace)).get('stamped-1')?.['v'] === 'changed' ? true : undefined), 5000);
  // The status is patched after the applies: wait for it rather than race it.
  await eventually('the trigger named in Synced', async () => (/fired by: (timestamp|full)/.test(condition(await dqrStatus(env, 'stamped'), 'Synced')?.message ?? '') ? true : undefined), 5000);

  await env.sql('DELETE FROM stamped WHERE id = 2');
  await eventually('the delete pruned by the full sync', async () => ((await names(east, 'stamped-')) === 'stamped-1' ? true : undefined), 25_000);
  assert.ok(running !== undefined);
  const metrics = await running.metrics.registry.metrics();
  assert.match(metrics, /rowcast_sync_triggers_total\{trigger="skipped"\} [1-9]/);
  assert.match(metrics, /rowcast_sync_triggers_total\{trigger="full"\} [1-9]/);
});

test('notify mode applies a change on both members well inside the poll interval, survives a killed listener, and folds a burst', async () => {
  await putDqr(env, 'notified', {
    query: 'SELECT id, v FROM notified ORDER BY id',
    template: template('notified'),
    pollInterval: '10m',
    changeDetection: { mode: 'notify', channel: 'rowcast_notified' },
  });
  await eventually('first sync', async () => ((await names(west, 'notified-')) === 'notified-1' ? true : undefined));
  await eventually('listening', async () => {
    const r = await superuser?.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'", [env.db.database]);
    return Number(r?.rows[0]?.n ?? 0) > 0 ? true : undefined;
  });
  let started = Date.now();
  await env.sql("INSERT INTO notified VALUES (2, 'b')");
  for (const cluster of [east, west]) await eventually('row 2 via NOTIFY', async () => ((await names(cluster, 'notified-')) === 'notified-1,notified-2' ? true : undefined), 5000);
  assert.ok(Date.now() - started < 5000);
  await eventually('notify named in Synced', async () => (/fired by: notify/.test(condition(await dqrStatus(env, 'notified'), 'Synced')?.message ?? '') ? true : undefined), 5000);

  await superuser?.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'", [env.db.database]);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  started = Date.now();
  await env.sql("INSERT INTO notified VALUES (3, 'c')");
  await eventually('row 3 after the listener was killed', async () => ((await names(east, 'notified-')) === 'notified-1,notified-2,notified-3' ? true : undefined), 10_000);

  const before = await calls('%FROM notified ORDER BY id%');
  for (let i = 0; i < 1000; i++) await env.sql("UPDATE notified SET v = 'burst' || $1 WHERE id = 1", [String(i)]);
  await eventually('the burst applied', async () => ((await configMaps(west, env.namespace)).get('notified-1')?.['v'] === 'burst999' ? true : undefined), 10_000);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const runs = (await calls('%FROM notified ORDER BY id%')) - before;
  assert.ok(runs >= 1 && runs <= 20, `1,000 notifications ran the query ${runs} times`);
});

test('the ledger records each object per cluster, follows updates and prunes, and answers "which rows have not reached a cluster"', async () => {
  await env.sql("CREATE TABLE ledgered (id int PRIMARY KEY, v text); INSERT INTO ledgered VALUES (1, 'a'), (2, 'b'), (3, 'bad')");
  await putDqr(env, 'ledgered', {
    query: 'SELECT id, v FROM ledgered ORDER BY id',
    template: `${template('ledgered')}{{#if (eq row.v "bad")}}  broken: {{row.nope}}\n{{/if}}`,
    pollInterval: '1s',
    ledger: { table: 'fleet.ledger' },
  });
  await env.sql('CREATE SCHEMA IF NOT EXISTS fleet');
  const dqr = `${env.namespace}/ledgered`;
  const ledger = async (): Promise<string[]> =>
    (await env.sql<{ entry: string }>("SELECT cluster || ':' || row_key || ':' || name || ':' || generation AS entry FROM fleet.ledger WHERE dqr = $1 ORDER BY 1", [dqr])).rows.map((r) => r.entry);
  await eventually('ledger rows', async () => (JSON.stringify(await ledger()) === JSON.stringify([`${env.namespace}/member-1:1:ledgered-1:1`, `${env.namespace}/member-1:2:ledgered-2:1`, `${env.namespace}/member-2:1:ledgered-1:1`, `${env.namespace}/member-2:2:ledgered-2:1`]) ? true : undefined));
  const hash = async (): Promise<string | undefined> => (await env.sql<{ hash: string }>("SELECT hash FROM fleet.ledger WHERE dqr = $1 AND cluster = $2 AND row_key = '1'", [dqr, `${env.namespace}/member-2`])).rows[0]?.hash;
  const before = await hash();
  await env.sql("UPDATE ledgered SET v = 'changed' WHERE id = 1");
  await eventually('hash follows the update', async () => ((await hash()) !== before ? true : undefined));
  await env.sql('DELETE FROM ledgered WHERE id = 2');
  await eventually('pruned objects leave the ledger', async () => ((await ledger()).some((e) => e.includes(':2:')) ? undefined : true));

  // docs/database.md: which rows of the business table have not reached member-2?
  const missing = await env.sql<{ id: number }>(
    `SELECT t.id FROM ledgered t
       LEFT JOIN fleet.ledger l ON l.dqr = $1 AND l.cluster = $2 AND l.row_key = t.id::text
      WHERE l.name IS NULL ORDER BY t.id`,
    [dqr, `${env.namespace}/member-2`],
  );
  assert.deepEqual(
    missing.rows.map((r) => r.id),
    [3],
    'the row whose template fails never reached the cluster',
  );
});
