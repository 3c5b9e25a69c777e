// Edit → healed: N `kubectl edit`-style updates of a rendered field, each on
// another object of a 1,000-row DQR (driftPolicy Heal, the default), each
// timed from the edit being sent to the moment the member's watch shows the
// rendered value back; p50 and p99.
//   node bench/drift.ts [--rows 1000] [--edits 100]
import { parseArgs } from 'node:util';
import pg from 'pg';
import { API_VERSION, DATABASE_QUERY_RESOURCE } from '../src/api/index.ts';
import type { HubController } from '../src/hub/index.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { adminRequest } from '../test/harness/kube-apiserver.ts';
import { post, registerFleet, startBenchController, watchConfigMaps, type ConfigMapWatch } from './fleet.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000' }, edits: { type: 'string', default: '100' } } });
const rows = Number(values.rows);
const namespace = 'bench';

const plane = await startControlPlane({ members: 1, log: (l) => process.stderr.write(`${l}\n`) });
const { hub, members, postgres } = plane.state;
const [member] = members;
if (member === undefined) throw new Error('no member');
const admin = new pg.Client({ host: postgres.host, port: postgres.port, user: postgres.user, password: postgres.password, database: 'postgres' });
let controller: HubController | undefined;
let watch: ConfigMapWatch | undefined;
try {
  await admin.connect();
  await admin.query(`CREATE TABLE items AS SELECT g AS id, 'rendered' AS v FROM generate_series(1, ${rows}) g`);
  await registerFleet(plane.state, namespace, { qps: 1000, burst: 2000, concurrency: 32 });
  controller = await startBenchController(hub, namespace);
  await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, {
    apiVersion: API_VERSION,
    kind: DATABASE_QUERY_RESOURCE.kind,
    metadata: { name: 'healed' },
    spec: {
      database: { connectionSecretRef: { name: 'db' } },
      query: 'SELECT id, v FROM items ORDER BY id',
      pollInterval: '10m',
      targets: { clusterSelector: {} },
      template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: item-{{row.id}}\ndata:\n  v: {{quote row.v}}\n',
    },
  });

  watch = await watchConfigMaps([member], namespace);
  const seen = watch.seen[0] ?? new Map<string, string>();
  const until = watch.until;
  await until(() => seen.get(`item-${rows}`) === 'rendered');
  // Past the first sync's own events.
  await new Promise((resolve) => setTimeout(resolve, 3000));

  const latencies: number[] = [];
  for (let n = 1; n <= Number(values.edits); n++) {
    const name = `item-${1 + ((n * 7919) % rows)}`;
    const started = performance.now();
    const edited = await adminRequest(member, 'PATCH', `/api/v1/namespaces/${namespace}/configmaps/${name}?fieldManager=kubectl-edit`, { data: { v: `edited ${n}` } });
    if (edited.status !== 200) throw new Error(`edit ${name}: ${edited.status}`);
    await until(() => seen.get(name) === 'rendered');
    latencies.push(performance.now() - started);
  }
  latencies.sort((a, b) => a - b);
  const q = (p: number): string => (latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0).toFixed(0);
  process.stdout.write(`drift: ${values.edits} edits of a rendered field, each on another of ${rows} objects, edit → healed: p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms\n`);
} finally {
  watch?.stop();
  await controller?.stop();
  await admin.end().catch(() => undefined);
  await plane.stop();
}
