// First sync of N rows onto 2 members, then a no-op resync: wall time,
// objects/s, requests sent (counted by the members' own apiservers), database
// queries (pg_stat_statements) and the controller's memory.
//   node --expose-gc bench/sync.ts [--rows 10000] [--qps 1000] [--burst 2000] [--concurrency 32] [--tracing]
// --tracing runs the OpenTelemetry SDK (pg and undici instrumentations, a batch
// processor) with an exporter that drops spans: the cost of tracing itself.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import { SecretScrubber, startTracing } from '../src/telemetry/index.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '10000' },
    qps: { type: 'string', default: '1000' },
    burst: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '32' },
    tracing: { type: 'boolean', default: false },
  },
});
let exported = 0;
const discard: SpanExporter = {
  export: (spans: ReadableSpan[], done: (result: { code: number }) => void) => {
    exported += spans.length;
    done({ code: 0 });
  },
  shutdown: () => Promise.resolve(),
};
const tracing = values.tracing ? await startTracing({ env: {}, scrubber: new SecretScrubber(), spanProcessors: [new BatchSpanProcessor({ exporter: discard })] }) : undefined;
// Imported after tracing started, as rowcast controller does: pg is patched as it loads.
const { default: pg } = await import('pg');
const { API_VERSION, DATABASE_QUERY_RESOURCE } = await import('../src/api/index.ts');
const { parseControllerOptions } = await import('../src/config/index.ts');
const { HubController } = await import('../src/hub/index.ts');
const { Metrics, createLogger } = await import('../src/telemetry/index.ts');
const { startControlPlane } = await import('../test/harness/control-plane.ts');
const { adminRequest } = await import('../test/harness/kube-apiserver.ts');
const { post, registerFleet } = await import('./fleet.ts');
type ClusterInfo = import('../test/harness/kube-apiserver.ts').ClusterInfo;
const rows = Number(values.rows);
const namespace = 'bench';
const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

async function requestCounts(cluster: ClusterInfo): Promise<Record<string, number>> {
  const metrics = await adminRequest(cluster, 'GET', '/metrics', undefined, 30_000);
  const counts: Record<string, number> = {};
  for (const line of metrics.body.split('\n')) {
    if (!line.startsWith('apiserver_request_total{') || !line.includes('resource="configmaps"')) continue;
    const verb = /verb="([A-Z]+)"/.exec(line)?.[1] ?? '?';
    counts[verb] = (counts[verb] ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return counts;
}

function sum(list: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const counts of list) for (const [verb, n] of Object.entries(counts)) out[verb] = (out[verb] ?? 0) + n;
  return out;
}

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [verb, n] of Object.entries(after)) if (n - (before[verb] ?? 0) > 0) out[verb] = n - (before[verb] ?? 0);
  return out;
}

const plane = await startControlPlane({ members: 2, log });
const { hub, members, postgres } = plane.state;
try {
  const admin = new pg.Client({ host: postgres.host, port: postgres.port, user: postgres.user, password: postgres.password, database: 'postgres' });
  await admin.connect();
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  await admin.query(`CREATE TABLE users AS SELECT g AS id, 'user' || g || '@example.com' AS email, (g % 3)::text AS plan FROM generate_series(1, ${rows}) g`);
  await admin.query('ALTER TABLE users ADD PRIMARY KEY (id)');

  await registerFleet(plane.state, namespace, { qps: Number(values.qps), burst: Number(values.burst), concurrency: Number(values.concurrency) });

  const syncs: { at: number; line: Record<string, unknown> }[] = [];
  const scrubber = new SecretScrubber();
  const logger = createLogger({
    level: 'info',
    scrubber,
    write: (line) => {
      if (line.includes('"msg":"synced"')) syncs.push({ at: performance.now(), line: JSON.parse(line) as Record<string, unknown> });
    },
  });
  const parsed = parseControllerOptions(['--namespace', namespace], {});
  if (!parsed.ok) throw new Error('options');
  const metrics = new Metrics();
  const controller = new HubController({ options: parsed.options, logger, scrubber, metrics, hubKubeconfig: hub.kubeconfig });
  await controller.start();

  const before = await Promise.all(members.map(requestCounts));
  await admin.query('SELECT pg_stat_statements_reset()');
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  // How long the event loop was held: Lease renewals, probes and watches all wait on it.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, {
    apiVersion: API_VERSION,
    kind: DATABASE_QUERY_RESOURCE.kind,
    metadata: { name: 'users' },
    spec: {
      database: { connectionSecretRef: { name: 'db' } },
      query: 'SELECT id, email, plan FROM users ORDER BY id',
      pollInterval: '10s',
      targets: { clusterSelector: {} },
      template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: user-{{row.id}}\n  labels:\n    plan: "{{row.plan}}"\ndata:\n  email: {{quote row.email}}\n  cluster: {{cluster.name}}\n',
    },
  });
  while (syncs.length < 1) await new Promise((resolve) => setTimeout(resolve, 50));
  const firstSync = ((syncs[0]?.at ?? 0) - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  loopDelay.disable();
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const firstRequests = delta(sum(await Promise.all(members.map(requestCounts))), sum(before));
  const rssAfterFirst = process.memoryUsage().rss;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const heapRetained = process.memoryUsage().heapUsed;

  // The no-op resync: the poll (10s) runs it again with nothing changed.
  const beforeResync = await Promise.all(members.map(requestCounts));
  while (syncs.length < 2) await new Promise((resolve) => setTimeout(resolve, 50));
  const resyncLine = syncs[1]?.line;
  await new Promise((resolve) => setTimeout(resolve, 200));
  const resyncRequests = delta(sum(await Promise.all(members.map(requestCounts))), sum(beforeResync));
  // By now the watch cache has caught up with every event of the first sync.
  gc?.();
  const heapAtRest = process.memoryUsage().heapUsed;
  const queries = await admin.query<{ calls: string; query: string }>("SELECT calls, query FROM pg_stat_statements WHERE query LIKE '%FROM users%' AND query NOT LIKE '%pg_stat_statements%'");
  const cacheObjects = (await metrics.registry.getSingleMetric('rowcast_member_cache_objects')?.get())?.values.reduce((n, v) => n + v.value, 0) ?? 0;
  await controller.stop();
  gc?.();
  // What the stopped controller let go of: its state at rest, which is mostly the watch cache.
  const heapStopped = process.memoryUsage().heapUsed;
  await admin.end();
  const objects = rows * members.length;
  process.stdout.write(
    [
      `rows: ${rows} x ${members.length} members = ${objects} ConfigMaps (member rate limit ${values.qps} qps, burst ${values.burst}, concurrency ${values.concurrency})`,
      `first sync: ${firstSync.toFixed(1)} s, ${(objects / firstSync).toFixed(0)} objects/s, controller CPU ${cpuSeconds.toFixed(2)} s; configmap requests on the members: ${JSON.stringify(firstRequests)}`,
      `event-loop delay during the first sync: p50 ${(loopDelay.percentile(50) / 1e6).toFixed(0)} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(0)} ms, max ${(loopDelay.max / 1e6).toFixed(0)} ms`,
      `no-op resync: ${String(resyncLine?.['durationMs'])} ms, ${JSON.stringify(resyncLine?.['clusters'])}; configmap requests on the members: ${JSON.stringify(resyncRequests)} (writes: ${(resyncRequests['APPLY'] ?? 0) + (resyncRequests['PATCH'] ?? 0) + (resyncRequests['DELETE'] ?? 0)}; but for the watch cache's watches: ${Object.entries(resyncRequests).reduce((n, [verb, count]) => (verb === 'WATCH' ? n : n + count), 0)})`,
      `database: ${queries.rows.map((q) => `${q.calls} x ${q.query.replace(/\s+/g, ' ').slice(0, 60)}`).join('; ')}`,
      `tracing: ${tracing === undefined ? 'off' : `on, ${exported} spans exported`}`,
      `controller process RSS after the first sync: ${(rssAfterFirst / 2 ** 20).toFixed(0)} MiB; now ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB; heap retained after the first sync ${gc === undefined ? '(run with --expose-gc)' : `${(heapRetained / 2 ** 20).toFixed(0)} MiB, after the resync ${(heapAtRest / 2 ** 20).toFixed(0)} MiB, after the controller stopped ${(heapStopped / 2 ** 20).toFixed(0)} MiB (watch cache: ${cacheObjects} objects; state at rest per object ${((heapAtRest - heapStopped) / Math.max(cacheObjects, 1)).toFixed(0)} bytes)`}`,
      '',
    ].join('\n'),
  );
} finally {
  await plane.stop();
  await tracing?.shutdown();
}
