import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import yaml from 'js-yaml';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { applyHub, condition, dqrStatus, eventually, putDatabaseSecret, putDqr, putSecret, startController, type RunningController } from './helpers/hub-fixture.ts';

// A ClusterTarget whose credentials reach only its allowedNamespaces, as a
// tenant's would: every watch Rowcast keeps there must stay inside them.
const env = await openTestEnv('write-back-namespaced');
const [east] = env.members as [TestCluster, TestCluster];
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

async function ok(method: string, path: string, body: unknown): Promise<string> {
  const response = await adminRequest(east.info, method, path, body);
  assert.ok(response.status < 300, `${method} ${path}: ${response.status} ${response.body}`);
  return response.body;
}

/** A ServiceAccount that may do anything with Deployments in the test namespace, and nothing elsewhere. */
async function namespacedKubeconfig(): Promise<string> {
  const ns = env.namespace;
  await ok('POST', `/api/v1/namespaces/${ns}/serviceaccounts`, { metadata: { name: 'tenant' } });
  await ok('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
    metadata: { name: 'tenant' },
    rules: [{ apiGroups: ['apps'], resources: ['deployments'], verbs: ['*'] }],
  });
  await ok('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    metadata: { name: 'tenant' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'tenant' },
    subjects: [{ kind: 'ServiceAccount', name: 'tenant', namespace: ns }],
  });
  const issued = await ok('POST', `/api/v1/namespaces/${ns}/serviceaccounts/tenant/token`, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } });
  const token = (JSON.parse(issued) as { status: { token: string } }).status.token;
  return yaml.dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'east', cluster: { server: east.info.server, 'certificate-authority-data': Buffer.from(east.info.caCert).toString('base64') } }],
    users: [{ name: 'tenant', user: { token } }],
    contexts: [{ name: 'east', context: { cluster: 'east', user: 'tenant' } }],
    'current-context': 'east',
  });
}

before(async () => {
  await env.sql('CREATE TABLE apps (id int PRIMARY KEY, ready int)');
  await env.sql('INSERT INTO apps (id) VALUES (1)');
  await putSecret(env, 'tenant-kubeconfig', { kubeconfig: await namespacedKubeconfig() });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'tenant' },
    spec: { kubeconfigSecretRef: { name: 'tenant-kubeconfig', key: 'kubeconfig' }, allowedNamespaces: [env.namespace] },
  });
  await putDatabaseSecret(env);
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('a ClusterTarget whose credentials reach only its allowedNamespaces gets its status written back: the status watch stays in them', async () => {
  await putDqr(env, 'apps', {
    query: 'SELECT id FROM apps ORDER BY id',
    template: `apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{{row.id}}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: app-{{row.id}}
  template:
    metadata:
      labels:
        app: app-{{row.id}}
    spec:
      containers:
        - name: app
          image: example.com/app:1
`,
    targets: { clusters: ['tenant'] },
    statusUpdateQueryTemplate: 'UPDATE apps SET ready = {{param resource.status.readyReplicas}} WHERE id = {{param row.id}}',
  });
  await eventually('Ready on the namespaced target', async () => (condition(await dqrStatus(env, 'apps'), 'Ready')?.status === 'True' ? true : undefined), 60_000);
  const patched = await adminRequest(east.info, 'PATCH', `/apis/apps/v1/namespaces/${env.namespace}/deployments/app-1/status`, { status: { replicas: 1, readyReplicas: 1 } });
  assert.equal(patched.status, 200, patched.body);
  await eventually(
    'the row written back',
    async () => {
      const { rows } = await env.sql<{ ready: number | null }>('SELECT ready FROM apps WHERE id = 1');
      return rows[0]?.ready === 1 ? true : undefined;
    },
    60_000,
  );
  assert.ok(running !== undefined);
  assert.ok(!running.logs.some((l) => l.includes('informer failed') && l.includes('403')), 'no watch was refused');
});
