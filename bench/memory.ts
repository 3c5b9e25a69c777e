// The hub's memory as an operator sees it: the controller runs as its own
// process (`node src/main.ts controller`, NODE_OPTIONS as the Helm chart sets
// them), and this bench reads its RSS from /proc (VmHWM is the peak) and its
// heap from its own /metrics. Scenarios, each in a fresh controller process:
//   a: 10,000 rows x 1 member      b: 10,000 rows x 2 members
//   c: 1,000 rows x 100 ClusterTargets (50 on each harness member, each
//      allowed only its own namespace t-<name>, which the template writes to)
// For each: RSS before the DQR (idle, nothing to sync), peak RSS during the
// first sync, RSS and heap once settled; and a bare `node` with the same flags.
//   node bench/memory.ts [--scenarios a,b,c] [--settle 60s] [--rate-limit 1000/2000/32|default] [--node-options='--max-old-space-size=384 --max-semi-space-size=2'] [--snapshot DIR] [--main app/src/main.js]
// --profile-at 30s prints where the live heap was allocated 30 s into the
// first sync, by V8's sampling heap profiler (bench/heap-profile.ts).
// --snapshot writes heap snapshots of each controller into DIR/<scenario>:
// idle.heapsnapshot before the DQR, settled.heapsnapshot after the sync. Writing
// one leaves ~100 MiB of malloc'd memory resident: take the RSS figures from a
// run without it.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE, parseGoDuration } from '../src/api/index.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { adminRequest, type ClusterInfo } from '../test/harness/kube-apiserver.ts';
import { freePort, waitFor } from '../test/harness/ports.ts';
import { post } from './fleet.ts';
import { startHeapSampling, type HeapSampler } from './heap-profile.ts';

const { values } = parseArgs({
  options: {
    scenarios: { type: 'string', default: 'a,b,c' },
    settle: { type: 'string', default: '60s' },
    // The Helm chart's defaults (maxOldSpaceSizeMiB, maxSemiSpaceSizeMiB).
    'node-options': { type: 'string', default: '--max-old-space-size=384 --max-semi-space-size=2' },
    snapshot: { type: 'string' },
    // The image's compiled JavaScript instead (e.g. the src/ that scripts/image.ts compiles, next to a node_modules).
    main: { type: 'string' },
    // Each ClusterTarget's spec.rateLimit, qps/burst/concurrency; 'default' leaves it unset.
    'rate-limit': { type: 'string', default: '1000/2000/32' },
    // Print where the live heap was allocated this long into the first sync (sampling heap profiler).
    'profile-at': { type: 'string' },
  },
});
const settleMs = parseGoDuration(values.settle);
const rateLimit = values['rate-limit'] === 'default' ? undefined : (([qps, burst, concurrency]) => ({ qps, burst, concurrency }))(values['rate-limit'].split('/').map(Number));
const profileAtMs = values['profile-at'] === undefined ? undefined : parseGoDuration(values['profile-at']);
const nodeOptions = values['node-options'];
const main = values.main ?? join(import.meta.dirname, '..', 'src', 'main.ts');
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/** VmRSS and VmHWM (the peak) of a process, in bytes. */
async function rss(pid: number): Promise<{ now: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { now: kib('VmRSS'), peak: kib('VmHWM') };
}

/** User + system CPU seconds the process has used so far. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Resident memory of the process's mappings, grouped: the binary and libraries
 * by name; anonymous ones by size, which tells V8's 256 KiB heap pages from
 * glibc's 64 MiB arenas and the brk heap ([heap]).
 */
async function residentByMapping(pid: number): Promise<string> {
  const smaps = await readFile(`/proc/${pid}/smaps`, 'utf8');
  const groups = new Map<string, number>();
  let current = '';
  for (const line of smaps.split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header !== null) {
      const [, from = '0', to = '0', name = ''] = header;
      const size = (parseInt(to, 16) - parseInt(from, 16)) / 2 ** 20;
      const anonymous = size >= 64 ? 'anonymous >= 64 MiB' : size >= 1 ? 'anonymous 1-64 MiB' : size >= 0.25 ? 'anonymous 256 KiB-1 MiB' : 'anonymous < 256 KiB';
      current = name === '' ? anonymous : name.startsWith('/') ? name.replace(/.*\//, '') : name;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss !== null) groups.set(current, (groups.get(current) ?? 0) + Number(rss[1]));
  }
  return [...groups].filter(([, kib]) => kib >= 1024).sort((a, b) => b[1] - a[1]).map(([name, kib]) => `${name} ${(kib / 1024).toFixed(0)} MiB`).join(', ');
}

/** Node writes Heap.<date>.<pid>…heapsnapshot into its cwd on SIGUSR2 (--heapsnapshot-signal); renamed to <name>.heapsnapshot. */
async function heapSnapshot(child: ChildProcess, dir: string, name: string): Promise<void> {
  const fresh = async (): Promise<string | undefined> => (await readdir(dir)).find((f) => f.startsWith('Heap.') && f.endsWith('.heapsnapshot'));
  child.kill('SIGUSR2');
  await waitFor('the heap snapshot', async () => (await fresh()) !== undefined, 120_000, 500);
  // Written in pieces: wait until its size stops changing.
  let size = -1;
  for (;;) {
    await sleep(1000);
    const file = await fresh();
    if (file === undefined) break;
    const now = (await stat(join(dir, file))).size;
    if (now === size) {
      await rename(join(dir, file), join(dir, `${name}.heapsnapshot`));
      break;
    }
    size = now;
  }
}

function sample(metrics: string, name: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function bareNode(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { env: { ...process.env, NODE_OPTIONS: nodeOptions }, stdio: 'ignore' });
  await sleep(2000);
  const { now } = await rss(child.pid ?? 0);
  child.kill();
  await once(child, 'exit');
  return now;
}

interface Scenario {
  name: string;
  rows: number;
  /** ClusterTarget name → the member it points at. */
  targets: Map<string, ClusterInfo>;
  /** Each target writes only to t-<its name>. */
  ownNamespaces: boolean;
}

const plane = await startControlPlane({ members: 2, log });
const { hub, members, postgres } = plane.state;
const [m1, m2] = members;
if (m1 === undefined || m2 === undefined) throw new Error('two members needed');
const admin = new pg.Client({ host: postgres.host, port: postgres.port, user: postgres.user, password: postgres.password, database: 'postgres' });
const lines: string[] = [];
let controller: ChildProcess | undefined;
try {
  await admin.connect();
  for (const rows of [10_000, 1000]) {
    await admin.query(`CREATE TABLE users_${rows} AS SELECT g AS id, 'user' || g || '@example.com' AS email, (g % 3)::text AS plan FROM generate_series(1, ${rows}) g`);
    await admin.query(`ALTER TABLE users_${rows} ADD PRIMARY KEY (id)`);
  }
  const bare = await bareNode();
  lines.push(`bare node (${process.version}, NODE_OPTIONS=${nodeOptions}), idle: RSS ${mib(bare)}`);

  const scenarios: Record<string, Scenario> = {
    a: { name: 'a', rows: 10_000, targets: new Map([['m1', m1]]), ownNamespaces: false },
    b: { name: 'b', rows: 10_000, targets: new Map([['m1', m1], ['m2', m2]]), ownNamespaces: false },
    c: {
      name: 'c',
      rows: 1000,
      targets: new Map(Array.from({ length: 100 }, (_, i) => [`c${String(i).padStart(3, '0')}`, i % 2 === 0 ? m1 : m2] as const)),
      ownNamespaces: true,
    },
  };
  for (const key of values.scenarios.split(',')) {
    const scenario = scenarios[key];
    if (scenario === undefined) throw new Error(`unknown scenario ${key}`);
    const namespace = `mem-${scenario.name}`;
    await post(hub, '/api/v1/namespaces', { metadata: { name: namespace } });
    for (const [i, member] of [m1, m2].entries()) {
      await post(hub, `/api/v1/namespaces/${namespace}/secrets`, { metadata: { name: `member-${i + 1}`, labels: { 'rowcast.dev/watch': 'true' } }, stringData: { kubeconfig: member.kubeconfig } });
    }
    await post(hub, `/api/v1/namespaces/${namespace}/secrets`, {
      metadata: { name: 'db', labels: { 'rowcast.dev/watch': 'true' } },
      stringData: { host: postgres.host, port: String(postgres.port), username: postgres.user, password: postgres.password, dbname: 'postgres', sslmode: 'disable' },
    });
    for (const [name, member] of scenario.targets) {
      const memberNamespace = scenario.ownNamespaces ? `t-${name}` : namespace;
      await post(member, '/api/v1/namespaces', { metadata: { name: memberNamespace } }).catch(() => undefined);
      await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}`, {
        apiVersion: API_VERSION,
        kind: CLUSTER_TARGET.kind,
        metadata: { name },
        spec: {
          kubeconfigSecretRef: { name: member === m1 ? 'member-1' : 'member-2', key: 'kubeconfig' },
          ...(rateLimit === undefined ? {} : { rateLimit }),
          ...(scenario.ownNamespaces ? { allowedNamespaces: [memberNamespace] } : {}),
        },
      });
    }

    const port = await freePort();
    const snapshotDir = values.snapshot === undefined ? undefined : join(values.snapshot, scenario.name);
    if (snapshotDir !== undefined) await mkdir(snapshotDir, { recursive: true });
    const inspectPort = profileAtMs === undefined ? undefined : await freePort();
    const flags = [nodeOptions, snapshotDir === undefined ? '' : '--heapsnapshot-signal=SIGUSR2', inspectPort === undefined ? '' : `--inspect=127.0.0.1:${inspectPort}`].join(' ');
    controller = spawn(process.execPath, [main, 'controller', '--kubeconfig', hub.kubeconfigPath, '--namespace', namespace, '--metrics-bind-address', `127.0.0.1:${port}`, '--log-level', 'warn'], {
      env: { ...process.env, NODE_OPTIONS: flags },
      cwd: snapshotDir ?? process.cwd(),
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const pid = controller.pid ?? 0;
    const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    await waitFor('the controller', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok, 60_000, 200);
    await sleep(5000);
    const before = await rss(pid);
    const sampler: HeapSampler | undefined = inspectPort === undefined ? undefined : await startHeapSampling(inspectPort);
    if (snapshotDir !== undefined) await heapSnapshot(controller, snapshotDir, 'idle');

    const objects = scenario.rows * scenario.targets.size;
    await post(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, {
      apiVersion: API_VERSION,
      kind: DATABASE_QUERY_RESOURCE.kind,
      metadata: { name: 'users' },
      spec: {
        database: { connectionSecretRef: { name: 'db' } },
        query: `SELECT id, email, plan FROM users_${scenario.rows} ORDER BY id`,
        targets: { clusterSelector: {} },
        template: [
          'apiVersion: v1',
          'kind: ConfigMap',
          'metadata:',
          '  name: user-{{row.id}}',
          scenario.ownNamespaces ? '  namespace: t-{{cluster.name}}' : `  namespace: ${namespace}`,
          '  labels:',
          '    plan: "{{row.plan}}"',
          'data:',
          '  email: {{quote row.email}}',
          '  cluster: {{cluster.name}}',
          '',
        ].join('\n'),
      },
    });
    const started = performance.now();
    const cpuBefore = await cpuSeconds(pid);
    let heapPeak = 0;
    let peakSeen = 0;
    let applied = 0;
    let profiled = false;
    for (;;) {
      if (controller.exitCode !== null || controller.signalCode !== null) {
        // Out of heap, typically: V8's FATAL ERROR is on stderr above.
        throw new Error(`scenario ${scenario.name}: the controller exited (${controller.exitCode ?? controller.signalCode}) with ${applied} of ${objects} applied, peak RSS ${mib(peakSeen)}`);
      }
      try {
        peakSeen = (await rss(pid)).peak;
        heapPeak = Math.max(heapPeak, sample(await metrics(), 'nodejs_heap_size_used_bytes'));
        const dqr = await adminRequest(hub, 'GET', `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}/users`);
        const status = (JSON.parse(dqr.body) as { status?: { clusters?: { applied?: number }[] } }).status;
        applied = (status?.clusters ?? []).reduce((n, c) => n + (c.applied ?? 0), 0);
      } catch (error) {
        // A controller busy for seconds lets its keep-alive connection lapse: the next scrape meets a reset.
        log(`scenario ${scenario.name}: ${String(error)}; retrying`);
      }
      if (sampler !== undefined && profileAtMs !== undefined && performance.now() - started >= profileAtMs && !profiled) {
        profiled = true;
        log(`scenario ${scenario.name}, ${values['profile-at']} into the first sync:\n${await sampler.summary()}`);
      }
      if (applied >= objects) break;
      if (performance.now() - started > 1_800_000) throw new Error(`scenario ${scenario.name}: ${applied} of ${objects} applied after 30 minutes`);
      await sleep(500);
    }
    const syncSeconds = (performance.now() - started) / 1000;
    const afterSync = await rss(pid);
    const syncCpu = (await cpuSeconds(pid)) - cpuBefore;
    await sleep(settleMs);
    const settled = await rss(pid);
    const text = await metrics().catch(async () => metrics());
    const heapUsed = sample(text, 'nodejs_heap_size_used_bytes');
    const heapTotal = sample(text, 'nodejs_heap_size_total_bytes');
    const external = sample(text, 'nodejs_external_memory_bytes');
    const mappings = await residentByMapping(pid);
    if (snapshotDir !== undefined) await heapSnapshot(controller, snapshotDir, 'settled');
    sampler?.close();
    controller.kill('SIGTERM');
    await once(controller, 'exit');
    controller = undefined;
    const perObject = (bytes: number): string => `${((bytes - bare) / objects / 1024).toFixed(1)} KiB`;
    lines.push(
      `${scenario.name}: ${scenario.rows} rows x ${scenario.targets.size} ClusterTargets = ${objects} objects; first sync ${syncSeconds.toFixed(1)} s, controller CPU ${syncCpu.toFixed(1)} s`,
      `   RSS before the DQR ${mib(before.now)}, at the end of the first sync ${mib(afterSync.now)}, peak ${mib(settled.peak)}, ${values.settle} later ${mib(settled.now)}; ` +
        `heap used peak ${mib(heapPeak)}, settled ${mib(heapUsed)} (heap total ${mib(heapTotal)}, external ${mib(external)})`,
      `   per managed object above bare node: peak ${perObject(settled.peak)}, settled ${perObject(settled.now)}`,
      `   resident by mapping, settled: ${mappings}`,
    );
    log(lines.slice(-4).join('\n'));
  }
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  controller?.kill('SIGKILL');
  await admin.end().catch(() => undefined);
  await plane.stop();
}
