// Commit → applied on every member in notify mode: N single-row updates of a
// 1,000-row DQR synced to 2 members, one at a time; p50 and p99. Then the
// queries timestamp mode sends at rest.
//   node bench/freshness.ts [--rows 1000] [--updates 200] [--rest 30s]
import { parseArgs } from 'node:util';
import pg from 'pg';
import { API_VERSION, DATABASE_QUERY_RESOURCE, parseGoDuration } from '../src/api/index.ts';
import type { HubController } from '../src/hub/index.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { post, registerFleet, startBenchController, watchConfigMaps, type ConfigMapWatch } from './fleet.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000' }, updates: { type: 'string', default: '200' }, rest: { type: 'string', default: '30s' } } });
const namespace = 'bench';

const plane = await startControlPlane({ members: 2, log: (l) => process.stderr.write(`${l}\n`) });
const { hub, members, postgres } = plane.state;
const admin = new pg.Client({ host: postgres.host, port: postgres.port, user: postgres.user, password: postgres.password, database: 'postgres' });
let controller: HubController | undefined;
let watch: ConfigMapWatch | undefined;
try {
  await admin.connect();
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  await admin.query(`CREATE TABLE items AS SELECT g AS id, 'v0' AS v, now() AS updated_at FROM generate_series(1, ${Number(values.rows)}) g`);
  await admin.query(`ALTER TABLE items ADD PRIMARY KEY (id);
    CREATE FUNCTION items_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('items', ''); RETURN NULL; END $$;
    CREATE TRIGGER items_changed AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH STATEMENT EXECUTE FUNCTION items_notify();`);
  await registerFleet(plane.state, namespace, { qps: 1000, burst: 2000, concurrency: 32 });
  controller = await startBenchController(hub, namespace, ['--full-sync-interval', '1h']);
  const dqr = (name: string, changeDetection: Record<string, unknown>): Record<string, unknown> => ({
    apiVersion: API_VERSION,
    kind: DATABASE_QUERY_RESOURCE.kind,
    metadata: { name },
    spec: {
      database: { connectionSecretRef: { name: 'db' } },
      query: `SELECT id, v FROM items ORDER BY id /* ${name} */`,
      pollInterval: name === 'notified' ? '10m' : '5s',
      changeDetection,
      targets: { clusterSelector: {} },
      template: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}-{{row.id}}\ndata:\n  v: {{quote row.v}}\n`,
    },
  });
  await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, dqr('notified', { mode: 'notify', channel: 'items' }));

  // Each member's ConfigMaps, watched: the moment a value arrives is the moment it is applied there.
  watch = await watchConfigMaps(members, namespace);
  const { seen, until } = watch;
  await until(() => seen.every((m) => m.get(`notified-${values.rows}`) === 'v0'));

  const latencies: number[] = [];
  for (let n = 1; n <= Number(values.updates); n++) {
    const id = 1 + (n * 7919) % Number(values.rows);
    const value = `v${n}`;
    const started = performance.now();
    await admin.query('UPDATE items SET v = $1, updated_at = now() WHERE id = $2', [value, id]);
    await until(() => seen.every((m) => m.get(`notified-${id}`) === value));
    latencies.push(performance.now() - started);
  }
  latencies.sort((a, b) => a - b);
  const q = (p: number): string => (latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0).toFixed(0);
  process.stdout.write(`notify: ${values.updates} single-row updates of a ${values.rows}-row DQR on ${members.length} members, commit → applied on every member: p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms\n`);

  await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, dqr('stamped', { mode: 'timestamp', tableName: 'items', timestampColumn: 'updated_at' }));
  await until(() => seen.every((m) => m.has(`stamped-${values.rows}`)));
  await new Promise((resolve) => setTimeout(resolve, 2000));
  await admin.query('SELECT pg_stat_statements_reset()');
  const restMs = parseGoDuration(values.rest);
  await new Promise((resolve) => setTimeout(resolve, restMs));
  const stats = await admin.query<{ calls: string; query: string }>("SELECT calls, query FROM pg_stat_statements WHERE query LIKE '%items%' AND query NOT LIKE '%pg_stat_statements%'");
  const calls = (pattern: RegExp): number => stats.rows.filter((r) => pattern.test(r.query)).reduce((n, r) => n + Number(r.calls), 0);
  const perHour = (n: number): number => Math.round((n * 3_600_000) / restMs);
  process.stdout.write(
    `timestamp mode at rest (poll 5s) over ${values.rest}: ${calls(/max\(/)} max() probes (${perHour(calls(/max\(/))}/hour), ${calls(/stamped \*\//)} main queries (${perHour(calls(/stamped \*\//))}/hour)\n`,
  );
} finally {
  watch?.stop();
  await controller?.stop();
  await admin.end().catch(() => undefined);
  await plane.stop();
}
