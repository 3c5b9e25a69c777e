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
