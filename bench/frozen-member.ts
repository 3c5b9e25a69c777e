// One member frozen: does it hold back the others? N single-row updates of a
// 1,000-row DQR (notify mode) on three members, timed from the commit to the
// value on both harness members; first with all three healthy, then with the
// third (an apiserver of the bench's own) frozen by SIGSTOP; p50 and p99 of
// each.
//   node bench/frozen-member.ts [--rows 1000] [--updates 100]
import { parseArgs } from 'node:util';
import pg from 'pg';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE } from '../src/api/index.ts';
import type { HubController } from '../src/hub/index.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { startApiserver } from '../test/harness/kube-apiserver.ts';
import { post, registerFleet, startBenchController, watchConfigMaps, type ConfigMapWatch } from './fleet.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000' }, updates: { type: 'string', default: '100' } } });
const rows = Number(values.rows);
const namespace = 'bench';

const plane = await startControlPlane({ members: 2, log: (l) => process.stderr.write(`${l}\n`) });
const { hub, members, postgres } = plane.state;
const third = await startApiserver(plane.state.binaries.kubeApiserver, 'third', plane.state.runDir, plane.state.etcdUrl);
const admin = new pg.Client({ host: postgres.host, port: postgres.port, user: postgres.user, password: postgres.password, database: 'postgres' });
let controller: HubController | undefined;
let watch: ConfigMapWatch | undefined;
try {
  await admin.connect();
  await admin.query(`CREATE TABLE items AS SELECT g AS id, 'v0' AS v FROM generate_series(1, ${rows}) g`);
  await admin.query(`ALTER TABLE items ADD PRIMARY KEY (id);
    CREATE FUNCTION items_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('items', ''); RETURN NULL; END $$;
    CREATE TRIGGER items_changed AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH STATEMENT EXECUTE FUNCTION items_notify();`);
  await registerFleet(plane.state, namespace, { qps: 1000, burst: 2000, concurrency: 32 });
  await post(third.info, '/api/v1/namespaces', { metadata: { name: namespace } });
  await post(hub, `/api/v1/namespaces/${namespace}/secrets`, { metadata: { name: 'third', labels: { 'rowcast.dev/watch': 'true' } }, stringData: { kubeconfig: third.info.kubeconfig } });
  await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'third' },
    spec: { kubeconfigSecretRef: { name: 'third', key: 'kubeconfig' }, rateLimit: { qps: 1000, burst: 2000, concurrency: 32 } },
  });
  controller = await startBenchController(hub, namespace, ['--full-sync-interval', '1h']);
  await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, {
    apiVersion: API_VERSION,
    kind: DATABASE_QUERY_RESOURCE.kind,
    metadata: { name: 'items' },
    spec: {
      database: { connectionSecretRef: { name: 'db' } },
      query: 'SELECT id, v FROM items ORDER BY id',
      pollInterval: '10m',
      changeDetection: { mode: 'notify', channel: 'items' },
      targets: { clusterSelector: {} },
      template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: item-{{row.id}}\ndata:\n  v: {{quote row.v}}\n',
    },
  });

  watch = await watchConfigMaps([...members, third.info], namespace);
  const { seen, until } = watch;
  await until(() => seen.every((m) => m.get(`item-${rows}`) === 'v0'));
  const healthy = seen.slice(0, members.length);

  let n = 0;
  const round = async (label: string): Promise<string> => {
    const latencies: number[] = [];
    for (let k = 0; k < Number(values.updates); k++) {
      n++;
      const id = 1 + ((n * 7919) % rows);
      const value = `v${n}`;
      const started = performance.now();
      await admin.query('UPDATE items SET v = $1 WHERE id = $2', [value, id]);
      await until(() => healthy.every((m) => m.get(`item-${id}`) === value));
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    const q = (p: number): string => (latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0).toFixed(0);
    return `${label}: p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms`;
  };
  const allHealthy = await round('all three healthy');
  third.process.freeze();
  const frozen = await round('third frozen (SIGSTOP)');
  third.process.thaw();
  process.stdout.write(`${values.updates} single-row updates of a ${rows}-row DQR on 3 members, commit → applied on the two harness members:\n  ${allHealthy}\n  ${frozen}\n`);
} finally {
  third.process.thaw();
  watch?.stop();
  await controller?.stop();
  await admin.end().catch(() => undefined);
  await third.process.stop();
  await plane.stop();
}
