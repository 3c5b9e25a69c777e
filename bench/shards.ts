// A sharded fleet: N `rowcast controller --sharding` processes share D DQRs of
// R rows over T ClusterTargets (each pointing at one of the harness's member
// apiservers, one member namespace per target). Prints the first sync's wall
// time and objects/s, each replica's RSS and CPU, and with N > 1 the time for
// a SIGKILLed replica's DQRs to be reassigned and synced elsewhere.
//   node bench/shards.ts [--replicas 3] [--dqrs 300] [--rows 100] [--targets 20] [--lease 15s]
// --log-dir DIR writes each replica's log (debug level) there when it exits.
// --lease sets the lease duration; the renew deadline and retry period keep the
// defaults' proportions (15s / 10s / 2s). A replica starved of CPU past its renew
// deadline stops at once and exits, which ends the run.
// Run it once with --replicas 1 and once with 3: each run has its own control plane.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE, SHARDING_LABELS } from '../src/api/index.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { adminRequest } from '../test/harness/kube-apiserver.ts';
import { post } from './fleet.ts';

const { values } = parseArgs({
  options: {
    replicas: { type: 'string', default: '3' },
    dqrs: { type: 'string', default: '300' },
    rows: { type: 'string', default: '100' },
    targets: { type: 'string', default: '20' },
    lease: { type: 'string', default: '15s' },
    'log-dir': { type: 'string' },
  },
});
const replicaCount = Number(values.replicas);
const dqrCount = Number(values.dqrs);
const rowCount = Number(values.rows);
const targetCount = Number(values.targets);
const leaseSeconds = Number(values.lease.replace(/s$/, ''));
const leaseFlags = ['--leader-election-lease-duration', `${String(leaseSeconds)}s`, '--leader-election-renew-deadline', `${String((leaseSeconds * 2) / 3)}s`, '--leader-election-retry-period', `${String((leaseSeconds * 2) / 15)}s`];
const namespace = 'bench';
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};
const seconds = (ms: number): string => (ms / 1000).toFixed(1);

interface Replica {
  child: ChildProcess;
  output: string[];
  identity: string;
  exited: Promise<unknown>;
}

interface DqrView {
  name: string;
  shard: string | undefined;
  ready: boolean;
  lastSync: number;
}

/** RSS (MiB) and CPU seconds of a process, from /proc. */
async function usage(pid: number | undefined): Promise<{ rssMiB: number; cpuSeconds: number }> {
  const status = await readFile(`/proc/${String(pid)}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = (await readFile(`/proc/${String(pid)}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second on Linux).
  const ticks = Number(stat[11] ?? 0) + Number(stat[12] ?? 0);
  return { rssMiB: rssKiB / 1024, cpuSeconds: ticks / 100 };
}

const plane = await startControlPlane({ members: 2, log });
const { hub, members, postgres } = plane.state;
const replicas: Replica[] = [];
try {
  await post(hub, '/api/v1/namespaces', { metadata: { name: namespace } });
  for (let t = 0; t < targetCount; t++) {
    const member = members[t % members.length];
    if (member === undefined) throw new Error('no member');
    await post(member, '/api/v1/namespaces', { metadata: { name: `t${String(t)}` } });
    await post(hub, `/api/v1/namespaces/${namespace}/secrets`, { metadata: { name: `t${String(t)}`, labels: { 'rowcast.dev/watch': 'true' } }, stringData: { kubeconfig: member.kubeconfig } });
    await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}`, {
      apiVersion: API_VERSION,
      kind: CLUSTER_TARGET.kind,
      metadata: { name: `t${String(t)}` },
      spec: { kubeconfigSecretRef: { name: `t${String(t)}`, key: 'kubeconfig' }, allowedNamespaces: [`t${String(t)}`], rateLimit: { qps: 1000, burst: 2000, concurrency: 32 } },
    });
  }
  await post(hub, `/api/v1/namespaces/${namespace}/secrets`, {
    metadata: { name: 'db', labels: { 'rowcast.dev/watch': 'true' } },
    stringData: { host: postgres.host, port: String(postgres.port), username: postgres.user, password: postgres.password, dbname: 'postgres', sslmode: 'disable' },
  });
  const admin = new pg.Client({ host: postgres.host, port: postgres.port, user: postgres.user, password: postgres.password, database: 'postgres' });
  await admin.connect();
  await admin.query(`CREATE TABLE fleet AS SELECT g AS id, 'value-' || g AS v FROM generate_series(1, ${String(rowCount)}) g`);
  await admin.end();

  for (let i = 0; i < replicaCount; i++) {
    const child = spawn(process.execPath, [main, 'controller', '--kubeconfig', hub.kubeconfigPath, '--namespace', namespace, '--metrics-bind-address', '0', '--sharding', '--workers', '4', ...leaseFlags, ...(values['log-dir'] === undefined ? [] : ['--log-level', 'debug'])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const exited = once(child, 'exit');
    const logDir = values['log-dir'];
    if (logDir !== undefined) void exited.then(() => writeFile(join(logDir, `replica-${String(i)}.log`), output.join('')));
    // A replica that dies mid-run makes every figure wrong: say why and stop.
    child.once('exit', (code, signal) => {
      if (code === 0 || signal === 'SIGKILL' || signal === 'SIGTERM') return;
      log(`replica exited (${String(code)}): ${output.join('').split('\n').slice(-15).join('\n')}`);
      process.exitCode = 1;
    });
    let identity: string | undefined;
    while (identity === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      identity = /"msg":"holding a shard Lease"[^\n]*"identity":"([^"]+)"/.exec(output.join(''))?.[1];
      if (child.exitCode !== null) throw new Error(`replica exited: ${output.join('').slice(-2000)}`);
    }
    replicas.push({ child, output, identity, exited });
  }
  const leaseOf = async (name: string): Promise<string | undefined> => {
    const got = await adminRequest(hub, 'GET', `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}`);
    return got.status === 200 ? (JSON.parse(got.body) as { spec: { holderIdentity?: string } }).spec.holderIdentity : undefined;
  };
  let leader: string | undefined;
  while (leader === undefined) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    leader = await leaseOf('rowcast-controller');
  }
  // Every shard visible to the sharder before the DQRs come: each is placed once.
  await new Promise((resolve) => setTimeout(resolve, 3000));

  const dqrs = async (): Promise<DqrView[]> => {
    const got = await adminRequest(hub, 'GET', `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, undefined, 30_000);
    const items = (JSON.parse(got.body) as { items: { metadata: { name: string; labels?: Record<string, string> }; status?: { lastSyncTime?: string; conditions?: { type: string; status: string }[] } }[] }).items;
    return items.map((i) => ({
      name: i.metadata.name,
      shard: i.metadata.labels?.[SHARDING_LABELS.shard],
      ready: i.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true,
      lastSync: i.status?.lastSyncTime === undefined ? 0 : Date.parse(i.status.lastSyncTime),
    }));
  };
  const cpuBefore = await Promise.all(replicas.map((r) => usage(r.child.pid)));
  const started = performance.now();
  for (let d = 0; d < dqrCount; d++) {
    const target = `t${String(d % targetCount)}`;
    await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, {
      apiVersion: API_VERSION,
      kind: DATABASE_QUERY_RESOURCE.kind,
      metadata: { name: `d${String(d)}` },
      spec: {
        database: { connectionSecretRef: { name: 'db' } },
        query: 'SELECT id, v FROM fleet ORDER BY id',
        pollInterval: '10m',
        targets: { clusters: [target] },
        template: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d${String(d)}-{{row.id}}\n  namespace: ${target}\ndata:\n  v: {{quote row.v}}\n`,
      },
    });
  }
  const created = performance.now();
  let view = await dqrs();
  while (view.filter((d) => d.ready).length < dqrCount) {
    if (replicas.some((r) => r.child.exitCode !== null)) throw new Error('a replica exited during the first sync');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    view = await dqrs();
  }
  const firstSyncMs = performance.now() - started;
  const objects = dqrCount * rowCount;
  const split: Record<string, number> = {};
  for (const d of view) split[d.shard ?? '(none)'] = (split[d.shard ?? '(none)'] ?? 0) + 1;
  const after = await Promise.all(replicas.map((r) => usage(r.child.pid)));
  const lines = [
    `${String(replicaCount)} replica(s), ${String(dqrCount)} DQRs x ${String(rowCount)} rows over ${String(targetCount)} ClusterTargets on ${String(members.length)} member apiservers = ${String(objects)} ConfigMaps`,
    `first sync: ${seconds(firstSyncMs)} s from the first DQR created (creating them took ${seconds(created - started)} s), ${(objects / (firstSyncMs / 1000)).toFixed(0)} objects/s`,
    `split: ${JSON.stringify(split)}`,
    ...replicas.map((r, i) => {
      const u = after[i];
      const cpu = (u?.cpuSeconds ?? 0) - (cpuBefore[i]?.cpuSeconds ?? 0);
      return `replica ${r.identity}${r.identity === leader ? ' (leader, sharder)' : ''}: ${String(split[r.identity] ?? 0)} DQRs, RSS ${(u?.rssMiB ?? 0).toFixed(0)} MiB, CPU ${cpu.toFixed(1)} s during the first sync (${(((cpu * 1000) / Math.max(split[r.identity] ?? 1, 1)) / rowCount).toFixed(2)} ms per object)`;
    }),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);

  const victim = replicas.find((r) => r.identity !== leader);
  if (victim !== undefined) {
    const lost = view.filter((d) => d.shard === victim.identity).map((d) => d.name);
    victim.child.kill('SIGKILL');
    const killedAt = performance.now();
    const killedWall = Date.now();
    let reassignedMs: number | undefined;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const now = await dqrs();
      const mine = now.filter((d) => lost.includes(d.name));
      if (reassignedMs === undefined && mine.every((d) => d.shard !== undefined && d.shard !== victim.identity)) reassignedMs = performance.now() - killedAt;
      // lastSyncTime has whole seconds: a sync that finished after the kill shows the kill's second or later.
      if (reassignedMs !== undefined && mine.every((d) => d.lastSync >= Math.floor(killedWall / 1000) * 1000 + 1000)) break;
    }
    const convergedMs = performance.now() - killedAt;
    process.stdout.write(
      `killed ${victim.identity} (${String(lost.length)} DQRs, ${String(lost.length * rowCount)} objects): reassigned ${seconds(reassignedMs)} s, synced on their new shards ${seconds(convergedMs)} s after SIGKILL (lease ${String(leaseSeconds)} s)\n`,
    );
  }
} finally {
  for (const r of replicas) {
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM');
  }
  await Promise.all(replicas.filter((r) => r.child.exitCode === null && r.child.signalCode === null).map((r) => r.exited));
  await plane.stop();
}
