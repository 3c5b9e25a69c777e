// Scrape cost of /metrics with many members' series: time to render the
// registry with N clusters and M DQRs initialised and observed.
//   node bench/metrics-scrape.ts [--clusters 100] [--dqrs 200] [--scrapes 50]
import { parseArgs } from 'node:util';
import { APPLY_RESULTS, Metrics } from '../src/telemetry/index.ts';

const { values } = parseArgs({ options: { clusters: { type: 'string', default: '100' }, dqrs: { type: 'string', default: '200' }, scrapes: { type: 'string', default: '50' } } });
const metrics = new Metrics();
const clusters = Array.from({ length: Number(values.clusters) }, (_, i) => `cluster-${i}`);
for (const cluster of clusters) {
  metrics.initialiseCluster(cluster);
  metrics.memberReachable.labels(cluster).set(1);
  for (const result of APPLY_RESULTS) metrics.applies.labels(cluster, result).inc(100);
  for (let i = 0; i < 20; i++) {
    metrics.memberQueueWait.labels(cluster).observe(Math.random() / 10);
    metrics.syncFreshness.labels(cluster).observe(Math.random());
  }
  metrics.restClientRequests.labels(`${cluster}.example:6443`, 'PATCH', '200').inc(1000);
}
for (let i = 0; i < Number(values.dqrs); i++) {
  metrics.dqrRows.labels('team', `dqr-${i}`).set(1000);
  metrics.dqrReady.labels('team', `dqr-${i}`).set(1);
  metrics.dbQueryDuration.labels('team', `dqr-${i}`).observe(0.05);
}
const times: number[] = [];
let bytes = 0;
for (let i = 0; i < Number(values.scrapes); i++) {
  const started = performance.now();
  const text = await metrics.registry.metrics();
  times.push(performance.now() - started);
  bytes = text.length;
}
times.sort((a, b) => a - b);
const at = (q: number): string => (times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? 0).toFixed(1);
process.stdout.write(`${values.clusters} clusters, ${values.dqrs} DQRs: ${bytes} bytes, ${bytes === 0 ? 0 : (await metrics.registry.metrics()).split('\n').filter((l) => l !== '' && !l.startsWith('#')).length} series lines; scrape p50 ${at(0.5)} ms, p99 ${at(0.99)} ms over ${values.scrapes} scrapes\n`);
