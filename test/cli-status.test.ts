import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { promisify } from 'node:util';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('cli-status');
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

async function rowcast(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [main, ...args]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: unknown) => {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    },
  );
}

before(async () => {
  await registerMembers(env);
  await putDatabaseSecret(env);
  await env.sql("CREATE TABLE st (id int PRIMARY KEY, name text); INSERT INTO st VALUES (1, 'st-1'), (2, 'st-2'), (3, 'NOT A NAME'), (4, 'st-taken')");
  const member = env.members[0];
  assert.ok(member !== undefined);
  // Someone else's ConfigMap where row 4 wants its own: a conflict on member-1 only.
  await member.core.createNamespacedConfigMap({ namespace: env.namespace, body: { metadata: { name: 'st-taken' } } });
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

interface Report {
  clusters: { name: string; applied: string[]; failing: { row: string }[]; conflicting: { row: string; message: string }[]; blocked: number; pending?: string }[];
}

test('rowcast status: per cluster the applied, failing, conflicting and blocked rows, from status and the live members', async () => {
  await putDqr(env, 'st', { query: 'SELECT id, name FROM st ORDER BY id', template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "{{row.name}}"\n', pruneLimit: 0 });
  await eventually('rows failing', async () => ((await dqrStatus(env, 'st')).failingRows?.length === 3 ? true : undefined));
  await env.sql('DELETE FROM st WHERE id = 2');
  await eventually('the prune blocked', async () => (((await dqrStatus(env, 'st')) as { pendingPrune?: unknown }).pendingPrune !== undefined ? true : undefined));

  const result = await rowcast('status', 'st', '-n', env.namespace, '--kubeconfig', env.hub.info.kubeconfigPath, '--hub-id', `hub-${env.namespace}`, '-o', 'json');
  assert.equal(result.code, 1, result.stderr);
  const report = JSON.parse(result.stdout) as Report;
  const east = report.clusters.find((c) => c.name === 'member-1');
  const west = report.clusters.find((c) => c.name === 'member-2');
  assert.ok(east !== undefined && west !== undefined);
  assert.deepEqual(east.applied, ['1', '2'], 'row 2 is gone from the table, but its object waits for the blocked prune');
  assert.deepEqual(east.failing.map((f) => f.row), ['3']);
  assert.deepEqual(east.conflicting.map((f) => f.row), ['4']);
  assert.match(east.conflicting[0]?.message ?? '', /not managed by Rowcast/);
  assert.deepEqual(west.applied, ['1', '2', '4']);
  assert.deepEqual(west.conflicting, []);
  assert.equal(east.blocked, 2);

  const one = await rowcast('status', 'st', '-n', env.namespace, '--kubeconfig', env.hub.info.kubeconfigPath, '--hub-id', `hub-${env.namespace}`, '--cluster', 'member-2');
  assert.match(one.stdout, /^cluster member-2:\n {2}applied {6}3: rows 1, 2, 4\n/);
  assert.ok(!one.stdout.includes('member-1'));
  const unknown = await rowcast('status', 'st', '-n', env.namespace, '--kubeconfig', env.hub.info.kubeconfigPath, '--cluster', 'mars');
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /--cluster mars: .* selects: member-1, member-2/);
  const missing = await rowcast('status', 'nope', '-n', env.namespace, '--kubeconfig', env.hub.info.kubeconfigPath);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^rowcast: DatabaseQueryResource .*\/nope not found\n$/);
});
