import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE, SHARDING_LABELS } from '../src/api/index.ts';
import { MemberApi, MemberKubeConfig } from '../src/clusters/index.ts';
import { adminRequest, type RunningApiserver } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { startAuditedMember } from './helpers/audited-member.ts';
import { applyHub, eventually, putDatabaseSecret, putDqr, putSecret } from './helpers/hub-fixture.ts';

// Real `rowcast controller --sharding` processes with the default Lease
// timings (15 s lease, 10 s renew deadline, 2 s retry), and a member
// apiserver of this file's own that keeps an audit log of every write in the
// test's namespace: the log says which replica (its User-Agent) wrote for
// which DQR (each DQR's ConfigMaps are named after it) and when.

const env = await openTestEnv('sharding');
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
const DQRS = 30;
const ROWS = 2;
const dqrNames = Array.from({ length: DQRS }, (_, i) => `s${i}`);
let audited: RunningApiserver | undefined;
let auditLog = '';
let baseline: LeakCount | undefined;

interface Replica {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
  identity: string;
  metricsPort: number;
}

const replicas: Replica[] = [];

async function startReplica(): Promise<Replica> {
  const child = spawn(process.execPath, [main, 'controller', '--kubeconfig', env.hub.info.kubeconfigPath, '--namespace', env.namespace, '--metrics-bind-address', '127.0.0.1:0', '--probe-interval', '5s', '--sharding'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const identity = await eventually('the replica holds its shard Lease', () => Promise.resolve(/"msg":"holding a shard Lease"[^\n]*"identity":"([^"]+)"/.exec(output.join(''))?.[1]), 60_000);
  const metricsPort = Number(/"msg":"serving \/metrics, \/healthz and \/readyz"[^\n]*"port":(\d+)/.exec(output.join(''))?.[1]);
  const replica = { child, output, exited, identity, metricsPort };
  replicas.push(replica);
  return replica;
}

async function stopReplica(r: Replica): Promise<number | null> {
  if (r.child.exitCode !== null || r.child.signalCode !== null) return r.exited;
  r.child.kill('SIGCONT');
  r.child.kill('SIGTERM');
  const timer = setTimeout(() => r.child.kill('SIGKILL'), 60_000);
  try {
    return await r.exited;
  } finally {
    clearTimeout(timer);
  }
}

interface Labels {
  shard: string | undefined;
  draining: boolean;
}

async function assignments(): Promise<Map<string, Labels>> {
  const got = await adminRequest(env.hub.info, 'GET', `/apis/${API_VERSION}/namespaces/${env.namespace}/${DATABASE_QUERY_RESOURCE.plural}`);
  const items = (JSON.parse(got.body) as { items: { metadata: { name: string; labels?: Record<string, string> } }[] }).items;
  return new Map(items.map((i) => [i.metadata.name, { shard: i.metadata.labels?.[SHARDING_LABELS.shard], draining: i.metadata.labels?.[SHARDING_LABELS.drain] !== undefined }]));
}

function splitOf(assigned: Map<string, Labels>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { shard } of assigned.values()) counts[shard ?? '(none)'] = (counts[shard ?? '(none)'] ?? 0) + 1;
  return counts;
}

/** Every DQR labelled with one of these shards and none draining. */
async function settledOn(shards: readonly string[]): Promise<Map<string, Labels> | undefined> {
  const assigned = await assignments();
  if (assigned.size !== DQRS) return undefined;
  for (const { shard, draining } of assigned.values()) if (shard === undefined || draining || !shards.includes(shard)) return undefined;
  return assigned;
}

/** Microseconds since the epoch, from the RFC 3339 micro times of audit events. */
function micros(time: string): number {
  const [whole = '', fraction = ''] = time.replace(/Z$/, '').split('.');
  return Date.parse(`${whole}Z`) * 1000 + Number(fraction.padEnd(6, '0').slice(0, 6));
}

interface Write {
  at: number;
  identity: string;
  verb: string;
  dqr: string;
  name: string;
}

/** Rowcast's writes of ConfigMaps in the test namespace of the audited member since a moment, by replica and DQR. */
async function writes(since = 0): Promise<Write[]> {
  const text = await readFile(auditLog, 'utf8').catch(() => '');
  const found: Write[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const event = JSON.parse(line) as { stage?: string; verb?: string; userAgent?: string; requestReceivedTimestamp?: string; objectRef?: { namespace?: string; resource?: string; name?: string } };
    if (event.stage !== 'ResponseComplete' || event.objectRef?.namespace !== env.namespace || event.objectRef.resource !== 'configmaps') continue;
    const identity = /^rowcast \(replica (.+)\)$/.exec(event.userAgent ?? '')?.[1];
    const name = event.objectRef.name ?? '';
    const dqr = /^(s\d+)-/.exec(name)?.[1];
    if (identity === undefined || dqr === undefined || event.requestReceivedTimestamp === undefined || micros(event.requestReceivedTimestamp) < since) continue;
    found.push({ at: micros(event.requestReceivedTimestamp), identity, verb: event.verb ?? '', dqr, name });
  }
  return found.sort((a, b) => a.at - b.at);
}

/** Per DQR, the replicas that wrote for it, in the order of their turns: a replica appears again only if its writes interleaved with another's. */
function turns(all: Write[]): Map<string, string[]> {
  const byDqr = new Map<string, string[]>();
  for (const w of all) {
    const seq = byDqr.get(w.dqr) ?? [];
    if (seq.at(-1) !== w.identity) seq.push(w.identity);
    byDqr.set(w.dqr, seq);
  }
  return byDqr;
}

async function memberValues(): Promise<Map<string, string>> {
  assert.ok(audited !== undefined);
  const got = await adminRequest(audited.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps`);
  return new Map(
    (JSON.parse(got.body) as { items: { metadata: { name: string }; data?: Record<string, string> }[] }).items
      .filter((c) => c.metadata.name !== 'kube-root-ca.crt')
      .map((c) => [c.metadata.name, c.data?.['v'] ?? '']),
  );
}

/** Every DQR's ConfigMaps on the member, with this value. */
async function converged(value: number, dqrs: readonly string[] = dqrNames): Promise<true | undefined> {
  const values = await memberValues();
  for (const d of dqrs) for (let row = 1; row <= ROWS; row++) if (values.get(`${d}-${row}`) !== String(value)) return undefined;
  return true;
}

async function shardLeaseHolder(identity: string): Promise<string | undefined> {
  const got = await adminRequest(env.hub.info, 'GET', `/apis/coordination.k8s.io/v1/namespaces/${env.namespace}/leases/${identity}`);
  return got.status === 200 ? ((JSON.parse(got.body) as { spec: { holderIdentity?: string } }).spec.holderIdentity ?? '') : undefined;
}

async function leader(): Promise<string | undefined> {
  const got = await adminRequest(env.hub.info, 'GET', `/apis/coordination.k8s.io/v1/namespaces/${env.namespace}/leases/rowcast-controller`);
  return got.status === 200 ? (JSON.parse(got.body) as { spec: { holderIdentity?: string } }).spec.holderIdentity : undefined;
}

/** One sample of a replica's /metrics, by series with its labels as written. */
async function metric(r: Replica, series: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${r.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function concurrencySeries(): string {
  return `rowcast_member_concurrency{cluster="${env.namespace}/audited"}`;
}

/** The Shard printer column of `kubectl get dqr -o wide`, as the hub's Table answer has it. */
async function shardColumn(): Promise<Map<string, string>> {
  const hub = new MemberApi(new MemberKubeConfig(env.hub.info.kubeconfig, { requestTimeoutMs: 5000 }));
  let table: { columnDefinitions: { name: string; priority: number }[]; rows: { cells: unknown[] }[] };
  try {
    table = await hub.request('GET', `/apis/${API_VERSION}/namespaces/${env.namespace}/${DATABASE_QUERY_RESOURCE.plural}`, { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
  } finally {
    await hub.close();
  }
  const shard = table.columnDefinitions.findIndex((c) => c.name === 'Shard');
  assert.ok(shard >= 0 && table.columnDefinitions[shard]?.priority === 1, 'a wide-only Shard column');
  return new Map(table.rows.map((r) => [String(r.cells[0]), String(r.cells[shard])]));
}

function alive(): Replica[] {
  return replicas.filter((r) => r.child.exitCode === null && r.child.signalCode === null);
}

before(async () => {
  ({ apiserver: audited, auditLog } = await startAuditedMember(env, `audited-${env.namespace}`, true));
  await putSecret(env, 'audited-kubeconfig', { kubeconfig: audited.info.kubeconfig });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'audited' },
    spec: { kubeconfigSecretRef: { name: 'audited-kubeconfig', key: 'kubeconfig' }, rateLimit: { qps: 300, burst: 300, concurrency: 9 } },
  });
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE things (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)');
  await env.sql(`INSERT INTO things (id) SELECT generate_series(1, ${ROWS})`);
  baseline = await env.leaks();
});

env.defer(async () => {
  await Promise.all(replicas.map((r) => stopReplica(r)));
  await audited?.process.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

async function putDqrs(): Promise<void> {
  for (const name of dqrNames) {
    await putDqr(env, name, {
      query: 'SELECT id, v FROM things ORDER BY id',
      template: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}-{{row.id}}\ndata:\n  v: "{{row.v}}"\n`,
      targets: { clusters: ['audited'] },
      pruneLimit: '100%',
      pollInterval: '2s',
    });
  }
}

test('three replicas share 30 DQRs: each DQR has one owner, which alone writes for it, and the split is within 30 % of even', async (t) => {
  const started = await Promise.all([startReplica(), startReplica(), startReplica()]);
  const identities = started.map((r) => r.identity);
  const boss = await eventually('a leader', () => leader(), 60_000);
  // The DQRs come once the sharder can see every shard: each is placed once, never moved.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  await putDqrs();
  const assigned = await eventually('every DQR assigned to one of the three', () => settledOn(identities), 60_000);
  await eventually('every DQR synced', () => converged(0), 120_000);
  const split = splitOf(assigned);
  t.diagnostic(`split: ${JSON.stringify(split)}`);
  for (const identity of identities) {
    const n = split[identity] ?? 0;
    assert.ok(n >= DQRS / 3 * 0.7 && n <= DQRS / 3 * 1.3, `shard ${identity} holds ${n} of ${DQRS}: ${JSON.stringify(split)}`);
  }
  const target = JSON.parse((await adminRequest(env.hub.info, 'GET', `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}/audited`)).body) as { status?: { managedObjects?: number; conditions?: { type: string; status: string }[] } };
  assert.equal(target.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', 'the sharder reports the ClusterTarget');
  assert.equal(target.status.managedObjects, undefined, 'a shard reported its own share of managedObjects as the whole');
  const column = await shardColumn();
  for (const name of dqrNames) assert.equal(column.get(name), assigned.get(name)?.shard, `${name}: the Shard column`);
  const sharder = started.find((r) => r.identity === boss);
  assert.ok(sharder !== undefined);
  await eventually('the sharder reports the split', async () => {
    for (const identity of identities) if ((await metric(sharder, `rowcast_shard_dqrs{shard="${identity}"}`)) !== split[identity]) return undefined;
    return (await metric(sharder, 'rowcast_dqrs_unassigned')) === 0 ? true : undefined;
  });
  // The member's budget of 9 calls in flight is the hub's: each of three replicas gets 3.
  for (const r of started) await eventually(`${r.identity}'s share of the member's concurrency`, async () => ((await metric(r, concurrencySeries())) === 3 ? true : undefined));
  const all = await writes();
  for (const name of dqrNames) {
    const writers = [...new Set(all.filter((w) => w.dqr === name).map((w) => w.identity))];
    assert.deepEqual(writers, [assigned.get(name)?.shard], `${name}: written by ${JSON.stringify(writers)}, assigned to ${assigned.get(name)?.shard ?? '(none)'}`);
  }
});

test('a killed replica: its Lease is taken over and its DQRs converge on the others', async (t) => {
  const boss = await leader();
  const victim = alive().find((r) => r.identity !== boss);
  assert.ok(victim !== undefined);
  const before = await assignments();
  const lost = [...before].filter(([, l]) => l.shard === victim.identity).map(([name]) => name);
  assert.ok(lost.length > 0);
  victim.child.kill('SIGKILL');
  const killedAt = performance.now();
  await env.sql('UPDATE things SET v = 1');
  const survivors = alive().map((r) => r.identity);
  await eventually('the sharder takes over the killed shard Lease', async () => ((await shardLeaseHolder(victim.identity)) === 'rowcast-sharder' ? true : undefined), 60_000);
  const fencedAt = performance.now();
  await eventually('its DQRs assigned to the others', () => settledOn(survivors), 60_000);
  const reassignedAt = performance.now();
  await eventually('its DQRs converge elsewhere', () => converged(1, lost), 60_000);
  const convergedAt = performance.now();
  t.diagnostic(
    `killed shard ${victim.identity} (${lost.length} DQRs): Lease taken over ${((fencedAt - killedAt) / 1000).toFixed(1)} s, reassigned ${((reassignedAt - killedAt) / 1000).toFixed(1)} s, converged ${((convergedAt - killedAt) / 1000).toFixed(1)} s after SIGKILL (lease 15 s, renew deadline 10 s, retry 2 s)`,
  );
  const sharder = alive().find((r) => r.identity === boss);
  assert.ok(sharder !== undefined);
  assert.ok(((await metric(sharder, 'rowcast_shard_moves_total{reason="shard-gone"}')) ?? 0) >= lost.length, 'the moves are counted');
  for (const r of alive()) await eventually(`${r.identity}'s share of the member's concurrency among two`, async () => ((await metric(r, concurrencySeries())) === 4 ? true : undefined));
  const after = await assignments();
  for (const [name, l] of before) if (l.shard !== victim.identity) assert.equal(after.get(name)?.shard, l.shard, `${name} moved though its shard is alive`);
});

test('a replica frozen past its Lease writes nothing for the DQRs it lost when it wakes, and exits non-zero', async (t) => {
  const boss = await leader();
  const frozen = alive().find((r) => r.identity !== boss);
  assert.ok(frozen !== undefined);
  const lost = [...(await assignments())].filter(([, l]) => l.shard === frozen.identity).map(([name]) => name);
  frozen.child.kill('SIGSTOP');
  await eventually('its DQRs assigned to the leader', () => settledOn([boss ?? '']), 90_000);
  await env.sql('UPDATE things SET v = 2');
  await eventually('every DQR converges on the leader', () => converged(2), 60_000);
  const wokenAt = Date.now() * 1000;
  frozen.child.kill('SIGCONT');
  const code = await Promise.race([frozen.exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 30_000))]);
  assert.notEqual(code, 'still running', 'the woken replica exits');
  assert.notEqual(code, 0, 'the woken replica exits non-zero');
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const late = (await writes(wokenAt)).filter((w) => w.identity === frozen.identity);
  t.diagnostic(`frozen shard had ${lost.length} DQRs; writes after waking: ${late.length}`);
  assert.deepEqual(late, [], 'the woken replica wrote');
  assert.equal(await converged(2), true, 'the current rows are intact on the member');
});

test('scaling from one replica to three moves DQRs by the drain hand-over: no DQR is written by two replicas at once, nothing is pruned', async (t) => {
  const since = Date.now() * 1000;
  const churn = new AbortController();
  const churning = (async () => {
    for (let v = 3; !churn.signal.aborted; v++) {
      await env.sql('UPDATE things SET v = $1', [v]);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  let last = 0;
  try {
    const second = await startReplica();
    const boss = await leader();
    await eventually('the DQRs split between two', async () => {
      const settled = await settledOn([boss ?? '', second.identity]);
      return settled !== undefined && (splitOf(settled)[second.identity] ?? 0) >= 10 ? settled : undefined;
    }, 90_000);
    const third = await startReplica();
    const settled = await eventually('the DQRs split among three', async () => {
      const now = await settledOn([boss ?? '', second.identity, third.identity]);
      return now !== undefined && (splitOf(now)[third.identity] ?? 0) >= 7 ? now : undefined;
    }, 90_000);
    t.diagnostic(`split among three: ${JSON.stringify(splitOf(settled))}`);
    await new Promise((resolve) => setTimeout(resolve, 5000));
  } finally {
    churn.abort();
    await churning;
    last = (await env.sql<{ v: number }>('SELECT max(v) AS v FROM things')).rows[0]?.v ?? 0;
  }
  await eventually('every DQR converges on the last rows', () => converged(last), 60_000);
  const all = await writes(since);
  const moved = [...turns(all)].filter(([, seq]) => seq.length > 1);
  t.diagnostic(`DQRs whose writer changed: ${moved.length}; writes: ${all.length}`);
  assert.ok(moved.length > 0, 'some DQRs moved');
  for (const [dqr, seq] of turns(all)) assert.equal(new Set(seq).size, seq.length, `${dqr}: writes by ${JSON.stringify(seq)} interleave`);
  assert.deepEqual(all.filter((w) => w.verb === 'delete' || w.verb === 'deletecollection'), [], 'something was pruned');
  assert.equal((await memberValues()).size, DQRS * ROWS);
});
