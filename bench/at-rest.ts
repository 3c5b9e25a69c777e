// What Rowcast asks of the database at rest in timestamp mode: one DQR
// (100 rows, one member, poll 10s), nothing changing, for --rest. Statements
// are counted by the server (pg_stat_statements), round trips by a TCP proxy
// in front of it (frontend messages the server answers: Query, Sync, Flush).
//   node bench/at-rest.ts [--rest 60s] [--poll 10s]
import { parseArgs } from 'node:util';
import pg from 'pg';
import { API_VERSION, DATABASE_QUERY_RESOURCE, parseGoDuration } from '../src/api/index.ts';
import { parseControllerOptions } from '../src/config/index.ts';
import { HubController } from '../src/hub/index.ts';
import { Metrics, SecretScrubber, createLogger } from '../src/telemetry/index.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { adminRequest } from '../test/harness/kube-apiserver.ts';
import { startPgHoldProxy } from '../test/helpers/pg-hold-proxy.ts';
import { post, registerFleet } from './fleet.ts';

const { values } = parseArgs({ options: { rest: { type: 'string', default: '60s' }, poll: { type: 'string', default: '10s' } } });
const namespace = 'bench';
const restMs = parseGoDuration(values.rest);

const plane = await startControlPlane({ members: 1, log: (l) => process.stderr.write(`${l}\n`) });
const { hub, members, postgres } = plane.state;
const admin = new pg.Client({ host: postgres.host, port: postgres.port, user: postgres.user, password: postgres.password, database: 'postgres' });
const answered = new Set(['Q', 'S', 'H']);
let roundTrips = 0;
const proxy = await startPgHoldProxy(postgres.port, (type) => {
  if (answered.has(type)) roundTrips += 1;
  return false;
}, postgres.host);
let controller: HubController | undefined;
try {
  await admin.connect();
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  await admin.query(`CREATE TABLE items AS SELECT g AS id, 'v0' AS v, now() AS updated_at FROM generate_series(1, 100) g`);
  await registerFleet(plane.state, namespace, { qps: 1000, burst: 2000, concurrency: 32 });
  await post(hub, `/api/v1/namespaces/${namespace}/secrets`, {
    metadata: { name: 'db-counted', labels: { 'rowcast.dev/watch': 'true' } },
    stringData: { host: '127.0.0.1', port: String(proxy.port), username: postgres.user, password: postgres.password, dbname: 'postgres', sslmode: 'disable' },
  });
  const parsed = parseControllerOptions(['--namespace', namespace], {});
  if (!parsed.ok) throw new Error('options');
  const scrubber = new SecretScrubber();
  controller = new HubController({ options: parsed.options, logger: createLogger({ level: 'error', scrubber }), scrubber, metrics: new Metrics(['databasequeryresource', 'clustertarget']), hubKubeconfig: hub.kubeconfig });
  await controller.start();
  await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, {
    apiVersion: API_VERSION,
    kind: DATABASE_QUERY_RESOURCE.kind,
    metadata: { name: 'stamped' },
    spec: {
      database: { connectionSecretRef: { name: 'db-counted' } },
      query: 'SELECT id, v FROM items ORDER BY id /* stamped */',
      pollInterval: values.poll,
      changeDetection: { mode: 'timestamp', tableName: 'items', timestampColumn: 'updated_at' },
      targets: { clusterSelector: {} },
      template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stamped-{{row.id}}\ndata:\n  v: {{quote row.v}}\n',
    },
  });
  const member = members[0];
  if (member === undefined) throw new Error('no member');
  for (;;) {
    const found = await adminRequest(member, 'GET', `/api/v1/namespaces/${namespace}/configmaps/stamped-100`);
    if (found.status === 200) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  // Past the first sync's write-backs and status updates: only the polls remain.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  await admin.query('SELECT pg_stat_statements_reset()');
  roundTrips = 0;
  await new Promise((resolve) => setTimeout(resolve, restMs));
  const trips = roundTrips;
  const stats = await admin.query<{ calls: string; query: string }>(
    "SELECT calls, query FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC",
  );
  const total = stats.rows.reduce((n, r) => n + Number(r.calls), 0);
  const probes = stats.rows.filter((r) => r.query.includes('max(')).reduce((n, r) => n + Number(r.calls), 0);
  const per10s = (n: number): string => ((n * 10_000) / restMs).toFixed(1);
  process.stdout.write(
    [
      `timestamp mode at rest, poll ${values.poll}, over ${values.rest}: ${probes} max() probes`,
      `statements (pg_stat_statements): ${total} = ${per10s(total)} per 10 s, ${probes === 0 ? '-' : (total / probes).toFixed(1)} per probe`,
      `round trips (Query/Sync/Flush messages through the proxy): ${trips} = ${per10s(trips)} per 10 s, ${probes === 0 ? '-' : (trips / probes).toFixed(1)} per probe`,
      ...stats.rows.map((r) => `  ${r.calls} x ${r.query.replace(/\s+/g, ' ').slice(0, 100)}`),
      '',
    ].join('\n'),
  );
} finally {
  await controller?.stop();
  await admin.end().catch(() => undefined);
  await proxy.close();
  await plane.stop();
}
