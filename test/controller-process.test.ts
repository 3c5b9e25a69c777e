import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { freePort, waitFor } from './harness/ports.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { condition, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers } from './helpers/hub-fixture.ts';

const env = await openTestEnv('controller-process');
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
let baseline: LeakCount | undefined;

interface Controller {
  child: ChildProcess;
  port: number;
  output: string[];
}

async function startProcess(extra: string[] = []): Promise<Controller> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [main, 'controller', '--kubeconfig', env.hub.info.kubeconfigPath, '--namespace', env.namespace, '--metrics-bind-address', `127.0.0.1:${port}`, '--probe-interval', '2s', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  await waitFor('the metrics port', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 20_000, 100);
  return { child, port, output };
}

async function scrape(c: Controller): Promise<string> {
  return (await fetch(`http://127.0.0.1:${c.port}/metrics`)).text();
}

function sample(metrics: string, name: string): number | undefined {
  const line = metrics.split('\n').find((l) => l.startsWith(name));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function stopProcess(c: Controller): Promise<number | null> {
  if (c.child.exitCode !== null) return c.child.exitCode;
  c.child.kill('SIGTERM');
  const [code] = (await once(c.child, 'exit')) as [number | null];
  return code;
}

before(async () => {
  await registerMembers(env);
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE things (id int PRIMARY KEY)');
  await env.sql('INSERT INTO things VALUES (1), (2)');
  baseline = await env.leaks();
});

env.defer(async () => {
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('rowcast controller serves /healthz, /readyz and /metrics, syncs, and stops cleanly on SIGTERM', async () => {
  const c = await startProcess();
  try {
    await putDqr(env, 'things', { query: 'SELECT id FROM things ORDER BY id', template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: thing-{{row.id}}\n' });
    await eventually('Ready', async () => (condition(await dqrStatus(env, 'things'), 'Ready')?.status === 'True' ? true : undefined));
    assert.equal((await fetch(`http://127.0.0.1:${c.port}/readyz`)).status, 200);
    const metrics = await scrape(c);
    for (const name of [
      'controller_runtime_reconcile_total{controller="databasequeryresource",result="success"}',
      'controller_runtime_reconcile_time_seconds_bucket',
      'workqueue_depth{name="databasequeryresource"}',
      'workqueue_queue_duration_seconds_bucket',
      'workqueue_retries_total',
      'rest_client_requests_total{',
      'leader_election_master_status{name="rowcast"} 1',
      `rowcast_applies_total{cluster="${env.namespace}/member-1",result="applied"}`,
      `rowcast_applies_total{cluster="${env.namespace}/member-2",result="throttled"} 0`,
      `rowcast_member_reachable{cluster="${env.namespace}/member-1"} 1`,
      `rowcast_member_queue_depth{cluster="${env.namespace}/member-2"}`,
      'rowcast_member_queue_wait_seconds_bucket',
      'rowcast_db_query_duration_seconds_bucket',
      `rowcast_dqr_rows{namespace="${env.namespace}",dqr="things"} 2`,
      'rowcast_sync_freshness_seconds_bucket',
      // The process's own, for memory alerts and bench/memory.ts.
      'process_resident_memory_bytes ',
      'nodejs_heap_size_used_bytes ',
    ]) {
      assert.ok(metrics.includes(name), `metrics lack ${name}`);
    }
    assert.ok((sample(metrics, `rowcast_applies_total{cluster="${env.namespace}/member-1",result="applied"}`) ?? 0) >= 2);
    assert.ok(!/thing-1|row_key|rowKey/.test(metrics), 'no row keys or object names in labels');
  } finally {
    assert.equal(await stopProcess(c), 0);
  }
  assert.match(c.output.join(''), /"msg":"stopped"/);
});

test('with --leader-elect one replica leads and the other takes over when it stops', async () => {
  const flags = ['--leader-elect', '--leader-election-namespace', env.namespace];
  const a = await startProcess(flags);
  const b = await startProcess(flags);
  try {
    const leaders = async (): Promise<Controller[]> => {
      const states = await Promise.all([a, b].map(async (c) => [c, sample(await scrape(c), 'leader_election_master_status')] as const));
      return states.filter(([, v]) => v === 1).map(([c]) => c);
    };
    const [leader] = await eventually('one leader', async () => {
      const l = await leaders();
      return l.length === 1 ? l : undefined;
    });
    assert.ok(leader !== undefined);
    const standby = leader === a ? b : a;
    assert.equal((await fetch(`http://127.0.0.1:${standby.port}/readyz`)).status, 200, 'a standby is ready to take over');
    assert.equal(await stopProcess(leader), 0);
    await eventually('the standby leads', async () => (sample(await scrape(standby), 'leader_election_master_status') === 1 ? true : undefined), 20_000);
    await env.sql('INSERT INTO things VALUES (3)');
    await eventually('the new leader syncs', async () => ((await dqrStatus(env, 'things')).rowCount === 3 ? true : undefined));
  } finally {
    await stopProcess(a);
    await stopProcess(b);
  }
});
