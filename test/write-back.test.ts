import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { adminRequest } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { condition, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('write-back');
const [east] = env.members as [TestCluster, TestCluster];
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

const deployment = (prefix: string): string => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${prefix}-{{row.id}}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: ${prefix}-{{row.id}}
  template:
    metadata:
      labels:
        app: ${prefix}-{{row.id}}
    spec:
      containers:
        - name: app
          image: example.com/app:1
`;

const hostile = `'; DROP TABLE apps; -- "quoted" \\ back\\slash ünïcødé`;

async function patchStatus(name: string, status: Record<string, unknown>): Promise<void> {
  const patched = await adminRequest(east.info, 'PATCH', `/apis/apps/v1/namespaces/${env.namespace}/deployments/${name}/status`, { status });
  assert.equal(patched.status, 200, patched.body);
}

before(async () => {
  await env.sql('CREATE TABLE apps (id int PRIMARY KEY, ready int, note text)');
  await env.sql('INSERT INTO apps (id) VALUES (1), (2)');
  await registerMembers(env);
  await putDatabaseSecret(env);
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('a status change on a member lands in its row through bind parameters, hostile text verbatim', async () => {
  // One member: with both, the other member's app-1 writes its own (empty) status into the same row, and
  // whichever comes last wins. That race failed this test in whole-suite runs.
  await putDqr(env, 'apps', {
    targets: { clusters: [east.info.name] },
    query: 'SELECT id FROM apps ORDER BY id',
    template: deployment('app'),
    statusUpdateQueryTemplate: 'UPDATE apps SET ready = {{param resource.status.readyReplicas}}, note = {{ param resource.status.conditions.0.message }}\nWHERE id = {{param row.id}}',
  });
  await eventually('deployments on the member', async () => ((await adminRequest(east.info, 'GET', `/apis/apps/v1/namespaces/${env.namespace}/deployments/app-1`)).status === 200 ? true : undefined));
  await eventually('Ready', async () => (condition(await dqrStatus(env, 'apps'), 'Ready')?.status === 'True' ? true : undefined));
  await patchStatus('app-1', { replicas: 2, readyReplicas: 2, conditions: [{ type: 'Available', status: 'True', message: hostile }] });
  // Should it fail, the controller's warnings say why.
  const row = await eventually(
    'the row written back',
    async () => {
      const { rows } = await env.sql<{ ready: number | null; note: string | null }>('SELECT ready, note FROM apps WHERE id = 1');
      return rows[0]?.ready === 2 ? rows[0] : undefined;
    },
    60_000,
  ).catch((error: unknown) => {
    const warnings = (running?.logs ?? []).filter((line) => /"level":"(warn|error)"/.test(line));
    throw new Error(`${error instanceof Error ? error.message : String(error)}; controller warnings:\n${warnings.join('\n')}`);
  });
  assert.equal(row.note, hostile);
  assert.equal((await env.sql('SELECT count(*)::int AS n FROM apps')).rows[0]?.['n'], 2, 'the table is intact');
  const untouched = await env.sql<{ ready: number | null }>('SELECT ready FROM apps WHERE id = 2');
  assert.equal(untouched.rows[0]?.ready, null);
  assert.ok(running !== undefined);
  assert.match(await running.metrics.registry.metrics(), /rowcast_writebacks_total\{result="written"\} [1-9]/);
});

test('a status forged on an object Rowcast never applied is not written back', async () => {
  // A tenant of the member copies app-1's marks onto a Deployment of its own and names row 2.
  const original = JSON.parse((await adminRequest(east.info, 'GET', `/apis/apps/v1/namespaces/${env.namespace}/deployments/app-1`)).body) as {
    metadata: { labels: Record<string, string>; annotations: Record<string, string> };
    spec: Record<string, unknown>;
  };
  const created = await adminRequest(east.info, 'POST', `/apis/apps/v1/namespaces/${env.namespace}/deployments`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'forged', labels: original.metadata.labels, annotations: { ...original.metadata.annotations, 'rowcast.dev/row-key': '2' } },
    spec: original.spec,
  });
  assert.equal(created.status, 201, created.body);
  await patchStatus('forged', { replicas: 9, readyReplicas: 7, conditions: [{ type: 'Available', status: 'True', message: 'forged' }] });
  // The genuine object's next status change goes through the same watch, after the forged one.
  await patchStatus('app-1', { replicas: 4, readyReplicas: 3, conditions: [{ type: 'Available', status: 'True', message: 'genuine' }] });
  await eventually('the genuine status written back', async () => {
    const { rows } = await env.sql<{ ready: number | null }>('SELECT ready FROM apps WHERE id = 1');
    return rows[0]?.ready === 3 ? true : undefined;
  });
  const { rows } = await env.sql<{ ready: number | null; note: string | null }>('SELECT ready, note FROM apps WHERE id = 2');
  assert.deepEqual(rows[0], { ready: null, note: null }, 'the forged status never reached row 2');
  await adminRequest(east.info, 'DELETE', `/apis/apps/v1/namespaces/${env.namespace}/deployments/forged`);
});

test('a failing write-back leaves applies working and shows as WriteBackFailed; an unsafe template is refused by position', async () => {
  await putDqr(env, 'broken-back', {
    query: 'SELECT id FROM apps ORDER BY id',
    template: deployment('bb'),
    statusUpdateQueryTemplate: 'UPDATE no_such_table SET ready = {{param resource.status.readyReplicas}}',
  });
  await eventually('applied', async () => ((await adminRequest(east.info, 'GET', `/apis/apps/v1/namespaces/${env.namespace}/deployments/bb-1`)).status === 200 ? true : undefined));
  await patchStatus('bb-1', { replicas: 2, readyReplicas: 1 });
  const ready = await eventually('WriteBackFailed', async () => {
    const c = condition(await dqrStatus(env, 'broken-back'), 'Ready');
    return c?.reason === 'WriteBackFailed' ? c : undefined;
  });
  assert.equal(ready.status, 'False');
  assert.match(ready.message, /no_such_table/);
  assert.equal(condition(await dqrStatus(env, 'broken-back'), 'Synced')?.status, 'True', 'applies are not blocked');

  await putDqr(env, 'spliced', {
    query: 'SELECT id FROM apps ORDER BY id',
    template: deployment('sp'),
    statusUpdateQueryTemplate: "UPDATE apps\nSET note = '{{row.id}}'",
  });
  const invalid = await eventually('refused', async () => {
    const c = condition(await dqrStatus(env, 'spliced'), 'Ready');
    return c?.reason === 'InvalidSpec' ? c : undefined;
  });
  assert.match(invalid.message, /spec\.statusUpdateQueryTemplate line 2, column \d+/);
});

test('statusUpdate.kinds limits which objects write back', async () => {
  await env.sql('INSERT INTO apps (id) VALUES (7)');
  await putDqr(env, 'kinds', {
    query: 'SELECT id FROM apps WHERE id = 7',
    template: deployment('kinds'),
    statusUpdateQueryTemplate: 'UPDATE apps SET ready = {{param resource.status.readyReplicas}} WHERE id = {{param row.id}}',
    statusUpdate: { kinds: ['StatefulSet'], minInterval: '1s' },
  });
  await eventually('applied', async () => ((await adminRequest(east.info, 'GET', `/apis/apps/v1/namespaces/${env.namespace}/deployments/kinds-7`)).status === 200 ? true : undefined));
  await eventually('Ready', async () => (condition(await dqrStatus(env, 'kinds'), 'Ready')?.status === 'True' ? true : undefined));
  await patchStatus('kinds-7', { replicas: 2, readyReplicas: 2 });
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const { rows } = await env.sql<{ ready: number | null }>('SELECT ready FROM apps WHERE id = 7');
  assert.equal(rows[0]?.ready, null, 'a Deployment is not among the kinds that write back');
});

test('row holds every column the row had when applied, and resource.kind/apiVersion are set on the first write-back', async () => {
  await env.sql('CREATE TABLE tenants (id int PRIMARY KEY, team text NOT NULL, tier int NOT NULL)');
  await env.sql("INSERT INTO tenants VALUES (11, 'blue', 3)");
  await env.sql('CREATE TABLE seen (team text, tier int, kind text, api_version text, ready int)');
  await putDqr(env, 'columns', {
    query: 'SELECT id, team, tier FROM tenants',
    template: deployment('cols'),
    statusUpdateQueryTemplate:
      'INSERT INTO seen (team, tier, kind, api_version, ready) VALUES ({{param row.team}}, {{param row.tier}}, {{param resource.kind}}, {{param resource.apiVersion}}, {{param resource.status.readyReplicas}})',
  });
  await eventually('applied', async () => ((await adminRequest(east.info, 'GET', `/apis/apps/v1/namespaces/${env.namespace}/deployments/cols-11`)).status === 200 ? true : undefined));
  await eventually('Ready', async () => (condition(await dqrStatus(env, 'columns'), 'Ready')?.status === 'True' ? true : undefined));
  await patchStatus('cols-11', { replicas: 2, readyReplicas: 1 });
  const first = await eventually('the first write-back', async () => {
    const { rows } = await env.sql<{ team: string | null; tier: number | null; kind: string | null; api_version: string | null }>('SELECT team, tier, kind, api_version FROM seen WHERE ready = 1');
    return rows[0];
  });
  assert.deepEqual(first, { team: 'blue', tier: 3, kind: 'Deployment', api_version: 'apps/v1' });
});

test('a status set while the sync that created the object is still applying the rest is written back', async () => {
  // The Deployment watch on this member is already running (earlier tests). A controller on the member
  // sets status within milliseconds of a create; here the test does, long before the sync of 400 rows
  // has finished and recorded the object as Rowcast's: that change must not be dropped.
  await env.sql('CREATE TABLE fleet (id int PRIMARY KEY, ready int)');
  await env.sql('INSERT INTO fleet SELECT g FROM generate_series(1, 400) g');
  await putDqr(env, 'fleet', {
    targets: { clusters: [east.info.name] },
    query: 'SELECT id FROM fleet ORDER BY id',
    template: deployment('fleet'),
    statusUpdateQueryTemplate: 'UPDATE fleet SET ready = {{param resource.status.readyReplicas}} WHERE id = {{param row.id}}',
  });
  const path = `/apis/apps/v1/namespaces/${env.namespace}/deployments/fleet-1`;
  for (const deadline = Date.now() + 20_000; (await adminRequest(east.info, 'GET', path)).status !== 200; ) {
    assert.ok(Date.now() < deadline, 'fleet-1 was never created');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await patchStatus('fleet-1', { replicas: 2, readyReplicas: 2 });
  const synced = condition(await dqrStatus(env, 'fleet'), 'Ready');
  assert.notEqual(synced?.status, 'True', 'the status was set before the sync finished (else this test shows nothing)');
  await eventually('the early status written back', async () => {
    const { rows } = await env.sql<{ ready: number | null }>('SELECT ready FROM fleet WHERE id = 1');
    return rows[0]?.ready === 2 ? true : undefined;
  });
});
