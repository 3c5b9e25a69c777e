import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { adminRequest } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { condition, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

// Changes made on members by others: what Rowcast leaves to them, and what it takes back.
const env = await openTestEnv('drift');
const [east] = env.members as [TestCluster, TestCluster];
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

before(async () => {
  await registerMembers(env);
  await putDatabaseSecret(env);
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

const deployment = (prefix: string): string => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${prefix}-{{row.id}}
spec:
  replicas: {{row.replicas}}
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
          image: "{{row.image}}"
`;

interface Deployment {
  spec: { replicas: number; template: { spec: { containers: { image: string }[] } } };
}

async function deploymentOn(member: TestCluster, name: string): Promise<Deployment | undefined> {
  const got = await adminRequest(member.info, 'GET', `/apis/apps/v1/namespaces/${env.namespace}/deployments/${name}`);
  return got.status === 200 ? (JSON.parse(got.body) as Deployment) : undefined;
}

/** What an autoscaler does: an update of spec.replicas under its own field manager. */
async function scale(member: TestCluster, name: string, replicas: number, manager: string): Promise<void> {
  const patched = await adminRequest(member.info, 'PATCH', `/apis/apps/v1/namespaces/${env.namespace}/deployments/${name}?fieldManager=${manager}`, { spec: { replicas } });
  assert.equal(patched.status, 200, patched.body);
}

test('ignoreFields: a field left to others is created as rendered, then kept as they set it through row and template changes', async () => {
  await env.sql('CREATE TABLE scaled (id int PRIMARY KEY, replicas int NOT NULL, image text NOT NULL)');
  await env.sql("INSERT INTO scaled VALUES (1, 3, 'app:1')");
  const spec = (template: string): Record<string, unknown> => ({
    query: 'SELECT id, replicas, image FROM scaled ORDER BY id',
    template,
    targets: { clusters: ['member-1'] },
    ignoreFields: [{ kind: 'apps/Deployment', jsonPointers: ['/spec/replicas'] }],
  });
  await putDqr(env, 'scaled', spec(deployment('scaled')));
  const created = await eventually('the deployment created', () => deploymentOn(east, 'scaled-1'));
  assert.equal(created.spec.replicas, 3, 'created with the rendered value');

  await scale(east, 'scaled-1', 5, 'autoscaler');
  await env.sql("UPDATE scaled SET image = 'app:2', replicas = 4");
  const updated = await eventually('the new image applied', async () => {
    const d = await deploymentOn(east, 'scaled-1');
    return d?.spec.template.spec.containers[0]?.image === 'app:2' ? d : undefined;
  });
  assert.equal(updated.spec.replicas, 5, "the autoscaler's value stays through Rowcast's update");
  const status = await dqrStatus(env, 'scaled');
  assert.equal(condition(status, 'Synced')?.status, 'True', JSON.stringify(status.conditions));

  await scale(east, 'scaled-1', 7, 'autoscaler');
  await env.sql("UPDATE scaled SET image = 'app:3'");
  await eventually('the next image applied', async () => ((await deploymentOn(east, 'scaled-1'))?.spec.template.spec.containers[0]?.image === 'app:3' ? true : undefined));
  assert.equal((await deploymentOn(east, 'scaled-1'))?.spec.replicas, 7);
});

const configMapTemplate = (prefix: string): string => `apiVersion: v1
kind: ConfigMap
metadata:
  name: ${prefix}-{{row.id}}
data:
  v: "{{row.v}}"
`;

async function configMapOn(member: TestCluster, name: string): Promise<{ data?: Record<string, string>; metadata: { uid: string } } | undefined> {
  const got = await adminRequest(member.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps/${name}`);
  return got.status === 200 ? (JSON.parse(got.body) as { data?: Record<string, string>; metadata: { uid: string } }) : undefined;
}

/** What `kubectl edit` does to a field: an update under its own field manager. */
async function edit(member: TestCluster, name: string, v: string, manager = 'kubectl-edit'): Promise<void> {
  const patched = await adminRequest(member.info, 'PATCH', `/api/v1/namespaces/${env.namespace}/configmaps/${name}?fieldManager=${manager}`, { data: { v } });
  assert.equal(patched.status, 200, patched.body);
}

async function driftMetric(result: string): Promise<number> {
  const text = await running?.metrics.registry.getSingleMetricAsString('rowcast_drift_corrections_total');
  const line = (text ?? '').split('\n').find((l) => l.includes(`cluster="${env.namespace}/member-1"`) && l.includes(`result="${result}"`));
  return Number(line?.split(' ').pop() ?? 0);
}

test('driftPolicy Heal (the default): an edited field is reverted and a deleted object recreated, within seconds', async () => {
  await env.sql('CREATE TABLE healed (id int PRIMARY KEY, v text NOT NULL)');
  await env.sql("INSERT INTO healed VALUES (1, 'rendered'), (2, 'rendered')");
  await putDqr(env, 'healed', { query: 'SELECT id, v FROM healed ORDER BY id', template: configMapTemplate('healed'), targets: { clusters: ['member-1'] }, pollInterval: '10m' });
  await eventually('both objects', async () => ((await configMapOn(east, 'healed-2')) === undefined ? undefined : true));
  const healedBefore = await driftMetric('healed');

  await edit(east, 'healed-1', 'edited by hand');
  await eventually('the edit reverted', async () => ((await configMapOn(east, 'healed-1'))?.data?.['v'] === 'rendered' ? true : undefined), 10_000);

  const deleted = await adminRequest(east.info, 'DELETE', `/api/v1/namespaces/${env.namespace}/configmaps/healed-2`);
  assert.equal(deleted.status, 200, deleted.body);
  await eventually('the deleted object recreated', async () => ((await configMapOn(east, 'healed-2'))?.data?.['v'] === 'rendered' ? true : undefined), 10_000);
  assert.ok((await driftMetric('healed')) >= healedBefore + 2, 'both heals counted');
  const status = await dqrStatus(env, 'healed');
  assert.equal(condition(status, 'Drifted')?.status, 'False', JSON.stringify(status.conditions));
  assert.equal(condition(status, 'Ready')?.status, 'True');
});

test('driftPolicy Report: the edit stays, the Drifted condition and the metric say so; a row change there is a conflict, not a takeover', async () => {
  await env.sql('CREATE TABLE reported (id int PRIMARY KEY, v text NOT NULL)');
  await env.sql("INSERT INTO reported VALUES (1, 'rendered')");
  await putDqr(env, 'reported', { query: 'SELECT id, v FROM reported ORDER BY id', template: configMapTemplate('reported'), targets: { clusters: ['member-1'] }, pollInterval: '10m', driftPolicy: 'Report' });
  await eventually('the object', () => configMapOn(east, 'reported-1'));
  const reportedBefore = await driftMetric('reported');
  await edit(east, 'reported-1', 'edited by hand');
  const drifted = await eventually('Drifted=True', async () => {
    const c = condition(await dqrStatus(env, 'reported'), 'Drifted');
    return c?.status === 'True' ? c : undefined;
  });
  assert.equal(drifted.reason, 'DriftReported');
  assert.match(drifted.message, /ConfigMap .*reported-1 on cluster member-1 was changed by someone else \(field managers besides Rowcast: kubectl-edit\)/);
  assert.ok((await driftMetric('reported')) > reportedBefore);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assert.equal((await configMapOn(east, 'reported-1'))?.data?.['v'], 'edited by hand', 'Report writes nothing');

  // A row change is Rowcast's own, but never taken from the person who holds the field now: a conflict, said so.
  await env.sql("UPDATE reported SET v = 'next'");
  await putDqr(env, 'reported', { query: 'SELECT id, v FROM reported ORDER BY id', template: configMapTemplate('reported'), targets: { clusters: ['member-1'] }, pollInterval: '1s', driftPolicy: 'Report' });
  const failing = await eventually('the conflict reported', async () => {
    const rows = (await dqrStatus(env, 'reported')).failingRows ?? [];
    return rows.find((r) => r.rowKey === '1' && (r as { conflict?: boolean }).conflict === true);
  });
  assert.match(failing.message, /kubectl-edit/);
  assert.equal((await configMapOn(east, 'reported-1'))?.data?.['v'], 'edited by hand');
});

test('driftPolicy Ignore: an edit stays, nothing is reported', async () => {
  await env.sql('CREATE TABLE ignored (id int PRIMARY KEY, v text NOT NULL)');
  await env.sql("INSERT INTO ignored VALUES (1, 'rendered')");
  await putDqr(env, 'ignored', { query: 'SELECT id, v FROM ignored ORDER BY id', template: configMapTemplate('ignored'), targets: { clusters: ['member-1'] }, pollInterval: '10m', driftPolicy: 'Ignore' });
  await eventually('the object', () => configMapOn(east, 'ignored-1'));
  await eventually('Ready', async () => (condition(await dqrStatus(env, 'ignored'), 'Ready')?.status === 'True' ? true : undefined));
  const before = [await driftMetric('healed'), await driftMetric('reported')];
  await edit(east, 'ignored-1', 'edited by hand');
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assert.equal((await configMapOn(east, 'ignored-1'))?.data?.['v'], 'edited by hand', 'Ignore writes nothing');
  assert.deepEqual([await driftMetric('healed'), await driftMetric('reported')], before);
  assert.equal(condition(await dqrStatus(env, 'ignored'), 'Drifted')?.status, 'False');
});

test('two writers fighting over a field: Rowcast backs off (2s doubling) and says so, instead of fighting forever', async () => {
  await env.sql('CREATE TABLE fought (id int PRIMARY KEY, v text NOT NULL)');
  await env.sql("INSERT INTO fought VALUES (1, 'rendered')");
  await putDqr(env, 'fought', { query: 'SELECT id, v FROM fought ORDER BY id', template: configMapTemplate('fought'), targets: { clusters: ['member-1'] }, pollInterval: '10m' });
  await eventually('the object', () => configMapOn(east, 'fought-1'));
  const healedBefore = await driftMetric('healed');
  // Another controller that sets its own value back whenever it sees Rowcast's, for 20 s.
  const until = Date.now() + 20_000;
  let writes = 0;
  while (Date.now() < until) {
    if ((await configMapOn(east, 'fought-1'))?.data?.['v'] !== 'theirs') {
      await edit(east, 'fought-1', 'theirs', 'other-controller');
      writes++;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const heals = (await driftMetric('healed')) - healedBefore;
  // At once, then after 2, 4, 8 s: a handful in 20 s, where an unbounded fight would be one every few hundred ms.
  assert.ok(heals >= 2 && heals <= 6, `${heals} heals in 20 s (the other writer wrote ${writes} times)`);
  const drifted = condition(await dqrStatus(env, 'fought'), 'Drifted');
  assert.equal(drifted?.status, 'True', JSON.stringify(drifted));
  assert.equal(drifted.reason, 'HealBackingOff');
  assert.match(drifted.message, /fought-1 on cluster member-1 .*other-controller/);
});

test('an edit made while the controller was down is no event it could see: the periodic re-check (--resync-period) heals it', async () => {
  await env.sql('CREATE TABLE missed (id int PRIMARY KEY, v text NOT NULL)');
  await env.sql("INSERT INTO missed VALUES (1, 'rendered')");
  await putDqr(env, 'missed', { query: 'SELECT id, v FROM missed ORDER BY id', template: configMapTemplate('missed'), targets: { clusters: ['member-1'] }, pollInterval: '10m' });
  await eventually('the object', () => configMapOn(east, 'missed-1'));
  await running?.stop();
  await edit(east, 'missed-1', 'edited while nobody watched');
  running = await startController(env, ['--resync-period', '3s']);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal((await configMapOn(east, 'missed-1'))?.data?.['v'], 'edited while nobody watched', 'a restart alone sees no drift: the edit predates its watch');
  await eventually('healed by the re-check', async () => ((await configMapOn(east, 'missed-1'))?.data?.['v'] === 'rendered' ? true : undefined), 15_000);
  assert.ok((await driftMetric('healed')) >= 1, 'counted as a heal');
});
