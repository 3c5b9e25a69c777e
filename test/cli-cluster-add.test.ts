import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { MemberApi, MemberKubeConfig } from '../src/clusters/index.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { freePort } from './harness/ports.ts';
import { openTestEnv } from './harness/test-env.ts';

const env = await openTestEnv('cli-cluster-add');
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
const dir = await mkdtemp(join(tmpdir(), 'rowcast-cluster-add-'));

async function rowcast(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [main, ...args]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: unknown) => {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    },
  );
}

async function sourceKubeconfig(name: string, server: string): Promise<string> {
  const member = env.members[0];
  assert.ok(member !== undefined);
  const path = join(dir, name);
  await writeFile(
    path,
    yaml.dump({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'm', cluster: { server, 'certificate-authority-data': Buffer.from(member.info.caCert).toString('base64') } }],
      users: [{ name: 'admin', user: { 'client-certificate-data': Buffer.from(member.info.adminCert).toString('base64'), 'client-key-data': Buffer.from(member.info.adminKey).toString('base64') } }],
      contexts: [{ name: 'm', context: { cluster: 'm', user: 'admin' } }],
      'current-context': 'm',
    }),
  );
  return path;
}

const onHub = async (path: string): Promise<number> => (await adminRequest(env.state.hub, 'GET', path)).status;

test('cluster add registers nothing when the member does not answer', async () => {
  const source = await sourceKubeconfig('silent', `https://127.0.0.1:${await freePort()}`);
  const result = await rowcast('cluster', 'add', 'silent', '--context', 'm', '--source-kubeconfig', source, '--kubeconfig', env.hub.info.kubeconfigPath, '-n', env.namespace);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stderr, /^rowcast: the member at https:\/\/127\.0\.0\.1:\d+ does not answer/);
  assert.equal(await onHub(`/api/v1/namespaces/${env.namespace}/secrets/silent-kubeconfig`), 404);
  assert.equal(await onHub(`/apis/rowcast.dev/v1alpha1/namespaces/${env.namespace}/clustertargets/silent`), 404);
});

test('cluster add leaves no Secret behind when the hub refuses the ClusterTarget', async () => {
  const member = env.members[0];
  assert.ok(member !== undefined);
  const source = await sourceKubeconfig('refused', member.info.server.replace('127.0.0.1', 'localhost'));
  const result = await rowcast('cluster', 'add', 'refused', '--context', 'm', '--source-kubeconfig', source, '--kubeconfig', env.hub.info.kubeconfigPath, '-n', env.namespace, '--label', 'region=not a label value!');
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stderr, /the hub refused/);
  assert.equal(await onHub(`/api/v1/namespaces/${env.namespace}/secrets/refused-kubeconfig`), 404, 'no Secret left behind');
});

test('cluster add --service-account registers a token for a ServiceAccount bounded to the managed kinds, not the admin credentials', async () => {
  const member = env.members[0];
  assert.ok(member !== undefined);
  const source = await sourceKubeconfig('bounded', member.info.server.replace('127.0.0.1', 'localhost'));
  const saNamespace = `sa-${env.namespace}`.slice(0, 63);
  const result = await rowcast('cluster', 'add', 'bounded', '--context', 'm', '--source-kubeconfig', source, '--kubeconfig', env.hub.info.kubeconfigPath, '-n', env.namespace, '--service-account', saNamespace, '--resource', '/configmaps');
  try {
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const secret = await adminRequest(env.state.hub, 'GET', `/api/v1/namespaces/${env.namespace}/secrets/bounded-kubeconfig`);
    const stored = Buffer.from((JSON.parse(secret.body) as { data: { kubeconfig: string } }).data.kubeconfig, 'base64').toString();
    const users = (yaml.load(stored) as { users: { user: Record<string, unknown> }[] }).users;
    assert.deepEqual(users.map((u) => Object.keys(u.user)), [['token']], 'a token, no client certificate');
    const api = new MemberApi(new MemberKubeConfig(stored, { requestTimeoutMs: 5000 }));
    try {
      await api.request('GET', `/api/v1/namespaces/default/configmaps`);
      await assert.rejects(api.request('GET', `/api/v1/namespaces/default/secrets`), (error: { code?: number }) => error.code === 403);
    } finally {
      await api.close();
    }
  } finally {
    await adminRequest(member.info, 'DELETE', `/api/v1/namespaces/${saNamespace}`);
    await adminRequest(member.info, 'DELETE', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rowcast-manager');
    await adminRequest(member.info, 'DELETE', '/apis/rbac.authorization.k8s.io/v1/clusterroles/rowcast-manager');
  }
});
