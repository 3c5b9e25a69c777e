// Row values reach the members as values: never as objects of their own,
// never altered, never refused. Real members, real PostgreSQL.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { configMaps, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('render-escaping');
const [east] = env.members;
assert.ok(east !== undefined);
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

const INJECTION = `hello
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: rowcast-injected
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - kind: Group
    name: system:authenticated
    apiGroup: rbac.authorization.k8s.io`;

test('a row value holding a second document reaches the member as one value, and no ClusterRoleBinding is made', async () => {
  await env.sql('CREATE TABLE hostile (id int PRIMARY KEY, v text)');
  await env.sql('INSERT INTO hostile VALUES (1, $1)', [INJECTION]);
  await putDqr(env, 'hostile', {
    query: 'SELECT id, v FROM hostile',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hostile-{{row.id}}\ndata:\n  v: {{row.v}}\n',
  });
  const data = await eventually('hostile-1 on the member', async () => (await configMaps(east, env.namespace)).get('hostile-1'));
  assert.deepEqual(data, { v: INJECTION });
  const status = await dqrStatus(env, 'hostile');
  assert.equal(status.failingRows?.length ?? 0, 0, JSON.stringify(status.failingRows));
  assert.equal((await adminRequest(east.info, 'GET', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rowcast-injected')).status, 404);
  const owned = [...(await configMaps(east, env.namespace)).keys()].filter((name) => name.startsWith('hostile'));
  assert.deepEqual(owned, ['hostile-1'], 'exactly one object');
});
