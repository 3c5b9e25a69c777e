import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { API_VERSION, DATABASE_QUERY_RESOURCE } from '../src/api/index.ts';
import { request } from 'node:https';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('printer-columns');
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

before(async () => {
  await registerMembers(env);
  await putDatabaseSecret(env);
  await env.sql("CREATE TABLE shown (id int PRIMARY KEY, name text); INSERT INTO shown VALUES (1, 'one'), (2, 'two'), (3, 'NOT A NAME')");
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

/** What `kubectl get dqr` prints: the apiserver's Table for the CRD's printer columns. */
async function table(): Promise<Record<string, unknown>> {
  const hub = env.state.hub;
  const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(
      new URL(`/apis/${API_VERSION}/namespaces/${env.namespace}/${DATABASE_QUERY_RESOURCE.plural}`, hub.server),
      { ca: hub.caCert, cert: hub.adminCert, key: hub.adminKey, headers: { accept: 'application/json;as=Table;g=meta.k8s.io;v=v1' } },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(response.status, 200, response.body);
  const parsed = JSON.parse(response.body) as { columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] };
  const row = parsed.rows[0];
  assert.ok(row !== undefined);
  return Object.fromEntries(parsed.columnDefinitions.map((c, i) => [c.name, row.cells[i]]));
}

test('kubectl get dqr shows how many rows fail and how many prunes wait for confirmation', async () => {
  await putDqr(env, 'shown', { query: 'SELECT id, name FROM shown ORDER BY id', template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "{{row.name}}"\n', pruneLimit: 0 });
  await eventually('row 3 failing', async () => ((await dqrStatus(env, 'shown')).failingRows?.some((r) => r.rowKey === '3') === true ? true : undefined));
  const first = await table();
  assert.equal(first['Failing'], 1);
  assert.equal(first['Blocked'], null, 'empty when nothing waits');

  await env.sql('DELETE FROM shown WHERE id = 2');
  await eventually('the prune blocked', async () => ((await dqrStatus(env, 'shown') as { pendingPrune?: unknown }).pendingPrune !== undefined ? true : undefined));
  const blocked = await table();
  assert.equal(blocked['Blocked'], 2, 'cm two on both members');
  assert.equal(blocked['Failing'], 1);
});
