import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { adminRequest, kubeconfigYaml, type RunningApiserver } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { startAuditedMember } from './helpers/audited-member.ts';
import { eventually, putClusterTarget, putDatabaseSecret, putDqr } from './helpers/hub-fixture.ts';

// Two real `rowcast controller --leader-elect` processes and a member apiserver
// of this file's own that keeps an audit log of every write in the test's
// namespace: the log, not the controllers' word, says who wrote when.

const env = await openTestEnv('leader-fencing');
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
const leaseName = 'rowcast-controller';
const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${env.namespace}/leases/${leaseName}`;
/** Short, so a test waits seconds; the renew deadline leaves the leader a 2 s margin, as the defaults leave 5 s. */
const leaseFlags = ['--leader-election-lease-duration', '6s', '--leader-election-renew-deadline', '4s', '--leader-election-retry-period', '1s'];
let audited: RunningApiserver | undefined;
let auditLog = '';

let baseline: LeakCount | undefined;

interface Controller {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

function startProcess(): Controller {
  const child = spawn(
    process.execPath,
    [main, 'controller', '--kubeconfig', env.hub.info.kubeconfigPath, '--namespace', env.namespace, '--metrics-bind-address', '0', '--probe-interval', '2s', '--leader-elect', ...leaseFlags],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, output, exited };
}

/** The replica's identity, as it logs it when it starts waiting for the Lease. */
async function identityOf(c: Controller): Promise<string> {
  return eventually('the replica logs its identity', () => {
    const match = /"msg":"waiting for the leader Lease"[^\n]*"identity":"([^"]+)"/.exec(c.output.join(''));
    return Promise.resolve(match?.[1]);
  });
}

/** On a failure, the tail of each replica's log, so a failure in CI says what the replicas were doing. */
function reportOutput(t: { diagnostic: (message: string) => void }, controllers: Record<string, Controller | undefined>, error: unknown): never {
  for (const [name, c] of Object.entries(controllers)) {
    if (c !== undefined) t.diagnostic(`replica ${name}, last lines:\n${c.output.join('').split('\n').slice(-60).join('\n')}`);
  }
  throw error;
}

async function stopProcess(c: Controller): Promise<number | null> {
  if (c.child.exitCode !== null || c.child.signalCode !== null) return c.exited;
  c.child.kill('SIGCONT');
  c.child.kill('SIGTERM');
  const timer = setTimeout(() => c.child.kill('SIGKILL'), 60_000);
  try {
    return await c.exited;
  } finally {
    clearTimeout(timer);
  }
}

interface LeaseSpec {
  holderIdentity?: string;
  acquireTime?: string;
}

async function leaseSpec(): Promise<LeaseSpec | undefined> {
  const got = await adminRequest(env.hub.info, 'GET', leasePath);
  return got.status === 200 ? (JSON.parse(got.body) as { spec: LeaseSpec }).spec : undefined;
}

/** Microseconds since the epoch, from the RFC 3339 micro times of audit events and Leases. */
function micros(time: string): number {
  const [whole = '', fraction = ''] = time.replace(/Z$/, '').split('.');
  return Date.parse(`${whole}Z`) * 1000 + Number(fraction.padEnd(6, '0').slice(0, 6));
}

/** Every holder the Lease has had while watched, each with its acquireTime (the holder's own clock: same machine). */
function watchLease(): { holders: { identity: string; acquiredAt: number }[]; stop: () => Promise<void> } {
  const holders: { identity: string; acquiredAt: number }[] = [];
  const done = new AbortController();
  const loop = (async () => {
    while (!done.signal.aborted) {
      const spec = await leaseSpec().catch(() => undefined);
      const identity = spec?.holderIdentity ?? '';
      if (identity !== '' && spec?.acquireTime !== undefined) {
        const acquiredAt = micros(spec.acquireTime);
        if (!holders.some((h) => h.identity === identity && h.acquiredAt === acquiredAt)) holders.push({ identity, acquiredAt });
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    holders,
    stop: async () => {
      done.abort();
      await loop;
    },
  };
}

interface Write {
  at: number;
  identity: string;
  verb: string;
  uri: string;
}

/** Rowcast's writes in the test namespace of the audited member since a moment, by replica (its identity is in the user agent). */
async function writes(since: number): Promise<Write[]> {
  const text = await readFile(auditLog, 'utf8').catch(() => '');
  const found: Write[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const event = JSON.parse(line) as { stage?: string; verb?: string; userAgent?: string; requestURI?: string; requestReceivedTimestamp?: string; objectRef?: { namespace?: string } };
    if (event.stage !== 'ResponseComplete' || event.objectRef?.namespace !== env.namespace) continue;
    const identity = /^rowcast \(replica (.+)\)$/.exec(event.userAgent ?? '')?.[1];
    if (identity === undefined || event.requestReceivedTimestamp === undefined || micros(event.requestReceivedTimestamp) < since) continue;
    found.push({ at: micros(event.requestReceivedTimestamp), identity, verb: event.verb ?? '', uri: event.requestURI ?? '' });
  }
  return found.sort((a, b) => a.at - b.at);
}

/** Every write was made while its writer held the Lease: never after a later holder acquired it. */
function countBy(all: Write[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const w of all) counts[w.identity] = (counts[w.identity] ?? 0) + 1;
  return counts;
}

function assertFenced(all: Write[], holders: { identity: string; acquiredAt: number }[]): void {
  const ordered = [...holders].sort((a, b) => a.acquiredAt - b.acquiredAt);
  for (const write of all) {
    const holder = ordered.filter((h) => h.acquiredAt <= write.at).at(-1);
    assert.equal(
      write.identity,
      holder?.identity,
      `${write.verb} ${write.uri} by ${write.identity} at ${new Date(write.at / 1000).toISOString()} while the Lease was ${holder === undefined ? 'not yet held' : `held by ${holder.identity} since ${new Date(holder.acquiredAt / 1000).toISOString()}`}`,
    );
  }
}

/** Keeps every row changing, so a replica that thinks it leads always has something to write. */
function churnRows(): { stop: () => Promise<void> } {
  const done = new AbortController();
  const loop = (async () => {
    while (!done.signal.aborted) {
      await env.sql('UPDATE things SET v = v + 1');
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  })();
  return {
    stop: async () => {
      done.abort();
      await loop;
    },
  };
}

async function memberConfigMaps(): Promise<string[]> {
  assert.ok(audited !== undefined);
  const got = await adminRequest(audited.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps`);
  return (JSON.parse(got.body) as { items: { metadata: { name: string } }[] }).items
    .map((c) => c.metadata.name)
    .filter((n) => n !== 'kube-root-ca.crt')
    .sort();
}

function dqrSpec(prefix: string): Record<string, unknown> {
  return {
    query: 'SELECT id, v FROM things ORDER BY id',
    template: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${prefix}-{{row.id}}\ndata:\n  v: "{{row.v}}"\n`,
    targets: { clusters: ['audited'] },
    pruneLimit: '100%',
  };
}

/** A member that accepts connections and never answers: every replica's start-up waits on it for 10 s, past the 6 s Lease. */
async function startBlackhole(): Promise<{ stop: () => Promise<void> }> {
  assert.ok(audited !== undefined);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  await putClusterTarget(env, 'blackhole', kubeconfigYaml('blackhole', { ...audited.info, server: `https://127.0.0.1:${port}` }));
  return {
    stop: async () => {
      await adminRequest(env.hub.info, 'DELETE', `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}/blackhole`);
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

before(async () => {
  ({ apiserver: audited, auditLog } = await startAuditedMember(env, `audited-${env.namespace}`, true));
  await putClusterTarget(env, 'audited', audited.info.kubeconfig);
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE things (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)');
  await env.sql('INSERT INTO things (id) SELECT generate_series(1, 20)');
  baseline = await env.leaks();
});

env.defer(async () => {
  await audited?.process.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('a start-up slower than the Lease keeps renewing it: the standby never takes over and only the leader writes', async (t) => {
  assert.ok(audited !== undefined);
  const blackhole = await startBlackhole();
  const since = Date.now() * 1000;
  await putDqr(env, 'fenced', dqrSpec('slow'));
  const lease = watchLease();
  const churn = churnRows();
  const a = startProcess();
  let b: Controller | undefined;
  try {
    const first = await identityOf(a);
    await eventually('the first replica leads', async () => ((await leaseSpec())?.holderIdentity === first ? true : undefined));
    b = startProcess();
    await identityOf(b);
    await eventually('the objects on the audited member', async () => ((await memberConfigMaps()).length === 20 ? true : undefined), 60_000);
    // Long enough for a standby to take a Lease nobody renews, and for a replica that lost it to write anyway.
    await new Promise((resolve) => setTimeout(resolve, 15_000));
  } finally {
    await churn.stop();
    await lease.stop();
    const codes = await Promise.all([stopProcess(a), b === undefined ? null : stopProcess(b)]);
    t.diagnostic(`exit codes: ${JSON.stringify(codes)}`);
    await blackhole.stop();
  }
  const all = await writes(since);
  t.diagnostic(`Lease holders: ${JSON.stringify(lease.holders)}; writes by replica: ${JSON.stringify(countBy(all))}`);
  assert.ok(all.length > 0, 'the leader wrote');
  assertFenced(all, lease.holders);
  assert.equal(lease.holders.length, 1, `the Lease changed hands during a slow start-up: ${JSON.stringify(lease.holders)}`);
});

test('a leader frozen past its Lease writes nothing when it wakes, and exits non-zero', async (t) => {
  const since = Date.now() * 1000;
  await env.sql('UPDATE things SET v = 0');
  await putDqr(env, 'fenced', dqrSpec('old'));
  const lease = watchLease();
  const a = startProcess();
  let b: Controller | undefined;
  let churn: { stop: () => Promise<void> } | undefined;
  try {
    const first = await identityOf(a);
    await eventually('the first replica leads', async () => ((await leaseSpec())?.holderIdentity === first ? true : undefined));
    b = startProcess();
    const second = await identityOf(b);
    await eventually('the old spec on the audited member', async () => ((await memberConfigMaps()).filter((n) => n.startsWith('old-')).length === 20 ? true : undefined), 60_000);
    churn = churnRows();
    await new Promise((resolve) => setTimeout(resolve, 2000));

    a.child.kill('SIGSTOP');
    const frozenAt = Date.now() * 1000;
    await eventually('the standby takes the Lease', async () => ((await leaseSpec())?.holderIdentity === second ? true : undefined), 60_000);
    await churn.stop();
    churn = undefined;
    // The standby's spec and rows: a woken stale leader would bring back old-* and delete or rewrite new-*.
    await putDqr(env, 'fenced', dqrSpec('new'));
    await env.sql('DELETE FROM things WHERE id > 10');
    await env.sql('UPDATE things SET v = 1000 + id');
    const wanted = Array.from({ length: 10 }, (_, i) => `new-${i + 1}`).sort();
    await eventually(
      'the standby syncs the new spec',
      async () => {
        const seen = await memberConfigMaps();
        if (JSON.stringify(seen) === JSON.stringify(wanted)) return true;
        const exited = b?.child.exitCode ?? b?.child.signalCode;
        throw new Error(`on the member: ${seen.join(' ')}; the standby ${exited === null || exited === undefined ? 'runs' : `exited (${exited})`}`);
      },
      60_000,
    );

    const wokenAt = Date.now() * 1000;
    a.child.kill('SIGCONT');
    const code = await Promise.race([a.exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 30_000))]);
    assert.notEqual(code, 'still running', 'the woken leader exits');
    assert.notEqual(code, 0, 'the woken leader exits non-zero');
    assert.match(a.output.join(''), /"msg":"lost the leader Lease: stopping at once"/);
    // Anything it would still send has had its chance to land.
    await new Promise((resolve) => setTimeout(resolve, 3000));

    const all = await writes(since);
    t.diagnostic(`Lease holders: ${JSON.stringify(lease.holders)}; writes by replica: ${JSON.stringify(countBy(all))}`);
    const handOver = all.find((w) => w.identity === second);
    assert.ok(handOver !== undefined, 'the new leader wrote');
    t.diagnostic(`hand-over: ${((handOver.at - frozenAt) / 1e6).toFixed(1)} s from SIGSTOP of the leader to the standby's first write (${leaseFlags.join(' ') || 'default timings'})`);
    const afterWake = all.filter((w) => w.identity === first && w.at >= wokenAt);
    assert.deepEqual(afterWake, [], 'the woken leader wrote');
    assertFenced(all, lease.holders);
    assert.deepEqual(await memberConfigMaps(), wanted, 'the current spec is intact on the member');
    const values = await adminRequest(audited?.info ?? env.hub.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps/new-3`);
    assert.equal((JSON.parse(values.body) as { data: { v: string } }).data.v, '1003', 'the current rows are intact on the member');
  } catch (error) {
    reportOutput(t, { a, b }, error);
  } finally {
    await churn?.stop();
    await lease.stop();
    await Promise.all([stopProcess(a), b === undefined ? null : stopProcess(b)]);
  }
});

test('a leader whose Lease is taken while it starts stops at once, writes nothing and exits non-zero', async () => {
  const blackhole = await startBlackhole();
  await env.sql('UPDATE things SET v = v + 1');
  await putDqr(env, 'fenced', dqrSpec('taken'));
  const a = startProcess();
  try {
    const first = await identityOf(a);
    await eventually('the replica leads', async () => ((await leaseSpec())?.holderIdentity === first ? true : undefined));
    // Another holder, as the apiserver would see one that acquired: the replica's renewals fail from now on, mid start-up.
    const current = await adminRequest(env.hub.info, 'GET', leasePath);
    const lease = JSON.parse(current.body) as { spec: Record<string, unknown> };
    const now = new Date().toISOString().replace(/(\.\d{3})Z$/, '$1000Z');
    const taken = await adminRequest(env.hub.info, 'PUT', leasePath, { ...lease, spec: { ...lease.spec, holderIdentity: 'intruder', acquireTime: now, renewTime: now, leaseDurationSeconds: 3600 } });
    assert.equal(taken.status, 200, taken.body);
    const takenAt = micros(now);
    const code = await Promise.race([a.exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 30_000))]);
    assert.deepEqual(
      (await writes(takenAt)).filter((w) => w.identity === first),
      [],
      'the replica wrote after its Lease was taken',
    );
    assert.notEqual(code, 'still running', 'the replica exits');
    assert.notEqual(code, 0, 'the replica exits non-zero');
    assert.match(a.output.join(''), /"msg":"lost the leader Lease: stopping at once"/);
  } finally {
    await stopProcess(a);
    await blackhole.stop();
    await adminRequest(env.hub.info, 'DELETE', leasePath);
  }
});
