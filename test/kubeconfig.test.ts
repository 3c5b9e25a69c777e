import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import yaml from 'js-yaml';
import { IN_CLUSTER, Kubeconfig, MemberApi, MemberKubeConfig, vetKubeconfig } from '../src/clusters/index.ts';
import { adminRequest, type ClusterInfo } from './harness/kube-apiserver.ts';
import { openTestEnv, type TestCluster } from './harness/test-env.ts';

const env = await openTestEnv('kubeconfig');
const [member] = env.members as [TestCluster, ...TestCluster[]];
const info: ClusterInfo = member.info;
const b64 = (text: string): string => Buffer.from(text).toString('base64');
let dir = '';
let token = '';
const reader = `system:serviceaccount:${env.namespace}:reader`;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rowcast-kubeconfig-'));
  const account = await adminRequest(info, 'POST', `/api/v1/namespaces/${env.namespace}/serviceaccounts`, { metadata: { name: 'reader' } });
  assert.ok(account.status < 300, account.body);
  const issued = await adminRequest(info, 'POST', `/api/v1/namespaces/${env.namespace}/serviceaccounts/reader/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3600 },
  });
  assert.ok(issued.status < 300, issued.body);
  token = (JSON.parse(issued.body) as { status: { token: string } }).status.token;
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function kubeconfig(user: Record<string, unknown>, cluster: Record<string, unknown> = { 'certificate-authority-data': b64(info.caCert) }): string {
  return yaml.dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'other', cluster: { server: 'https://127.0.0.1:1' } }, { name: 'member', cluster: { server: info.server, ...cluster } }],
    users: [{ name: 'member-user', user }],
    contexts: [{ name: 'member', context: { cluster: 'member', user: 'member-user' } }],
    'current-context': 'member',
  });
}

/** Who the member's apiserver says the caller is: proof that the credentials went out, and which. */
async function whoami(source: string): Promise<string> {
  const api = new MemberApi(new MemberKubeConfig(source, { requestTimeoutMs: 10_000 }));
  try {
    const review = await api.request<{ status: { userInfo: { username: string } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    return review.status.userInfo.username;
  } finally {
    await api.close();
  }
}

test('every way a kubeconfig names its user authenticates as that user', async () => {
  const tokenPath = join(dir, 'token');
  // A token file written by hand often ends in a newline; a header may not.
  await writeFile(tokenPath, `${token}\n`);
  const caPath = join(dir, 'ca.crt');
  await writeFile(caPath, info.caCert);
  const [certPath, keyPath] = [join(dir, 'admin.crt'), join(dir, 'admin.key')];
  await writeFile(certPath, info.adminCert);
  await writeFile(keyPath, info.adminKey);
  const admin = await whoami(info.kubeconfig);
  assert.notEqual(admin, reader);

  assert.equal(await whoami(kubeconfig({ token })), reader, 'token');
  assert.equal(await whoami(kubeconfig({ tokenFile: tokenPath })), reader, "tokenFile (client-go's spelling)");
  assert.equal(await whoami(kubeconfig({ 'token-file': tokenPath })), reader, "token-file (client-node's spelling)");
  assert.equal(await whoami(kubeconfig({ token }, { 'certificate-authority': caPath })), reader, 'certificate-authority as a file');
  assert.equal(await whoami(kubeconfig({ 'client-certificate-data': b64(info.adminCert), 'client-key-data': b64(info.adminKey) })), admin, 'client certificate data');
  assert.equal(await whoami(kubeconfig({ 'client-certificate': certPath, 'client-key': keyPath })), admin, 'client certificate files');
  assert.equal(await whoami(JSON.stringify(yaml.load(kubeconfig({ token })))), reader, 'JSON');
  const credential = JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token } });
  const exec = { apiVersion: 'client.authentication.k8s.io/v1', command: '/bin/sh', args: ['-c', 'printf %s "$CREDENTIAL"'], env: [{ name: 'CREDENTIAL', value: credential }], interactiveMode: 'Never' };
  assert.equal(await whoami(kubeconfig({ exec })), reader, 'an exec plugin, through client-node');
  const impersonating = await whoami(kubeconfig({ 'client-certificate-data': b64(info.adminCert), 'client-key-data': b64(info.adminKey), as: 'someone-else' }));
  assert.equal(impersonating, 'someone-else', 'as: impersonates');
});

test("in-cluster: the pod's service account token and CA, at the service's address", async () => {
  const account = await mkdtemp(join(dir, 'sa-'));
  await writeFile(join(account, 'token'), token);
  await writeFile(join(account, 'ca.crt'), info.caCert);
  const url = new URL(info.server);
  const saved = { host: process.env['KUBERNETES_SERVICE_HOST'], port: process.env['KUBERNETES_SERVICE_PORT'] };
  process.env['KUBERNETES_SERVICE_HOST'] = url.hostname;
  process.env['KUBERNETES_SERVICE_PORT'] = url.port;
  try {
    const config = new Kubeconfig(IN_CLUSTER, account);
    assert.equal(config.server, info.server);
    assert.equal(config.exportConfig(), IN_CLUSTER);
    const headers = await config.authHeaders();
    assert.equal(headers['Authorization'], `Bearer ${token}`);
    assert.equal((await config.tls()).ca?.toString(), info.caCert);
    delete process.env['KUBERNETES_SERVICE_HOST'];
    assert.throws(() => new Kubeconfig(IN_CLUSTER, account), /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set \(pass --kubeconfig\)/);
    process.env['KUBERNETES_SERVICE_HOST'] = 'fd00::1';
    assert.equal(new Kubeconfig(IN_CLUSTER, account).server, `https://[fd00::1]:${url.port}`);
  } finally {
    if (saved.host === undefined) delete process.env['KUBERNETES_SERVICE_HOST'];
    else process.env['KUBERNETES_SERVICE_HOST'] = saved.host;
    if (saved.port === undefined) delete process.env['KUBERNETES_SERVICE_PORT'];
    else process.env['KUBERNETES_SERVICE_PORT'] = saved.port;
  }
});

test('a kubeconfig that cannot be used says which part is wrong', () => {
  const doc = yaml.load(kubeconfig({ token })) as Record<string, unknown>;
  const variant = (change: (d: Record<string, unknown>) => void): string => {
    const copy = structuredClone(doc);
    change(copy);
    return yaml.dump(copy);
  };
  assert.throws(() => new Kubeconfig('a: [b'), /^Error: kubeconfig: /);
  assert.throws(() => new Kubeconfig('- a'), /kubeconfig: expected a mapping/);
  assert.throws(() => new Kubeconfig(variant((d) => delete d['current-context'])), /kubeconfig has no current context/);
  assert.throws(() => new Kubeconfig(variant((d) => (d['current-context'] = 'nope'))), /kubeconfig: context "nope" not found/);
  assert.throws(() => new Kubeconfig(variant((d) => (d['clusters'] = []))), /kubeconfig: cluster "member" not found/);
  assert.throws(() => new Kubeconfig(variant((d) => (d['users'] = []))), /kubeconfig: user "member-user" not found/);
  assert.throws(() => new Kubeconfig(variant((d) => (d['clusters'] = [{ name: 'member', cluster: {} }]))), /kubeconfig: cluster "member" has no server/);
  // Nothing of the token may reach the message.
  for (const bad of ['a: [b', variant((d) => (d['users'] = []))]) {
    try {
      new Kubeconfig(bad);
    } catch (error) {
      assert.ok(!String(error).includes(token));
    }
  }
});

test('a member kubeconfig naming a token file in either spelling is refused unless file paths are allowed', () => {
  const policy = { allowExecAuth: false, allowFilePaths: false, allowInsecure: false };
  for (const key of ['tokenFile', 'token-file']) {
    const vetted = vetKubeconfig(kubeconfig({ [key]: '/var/run/secrets/kubernetes.io/serviceaccount/token' }), policy);
    assert.ok(!vetted.ok);
    assert.deepEqual(
      vetted.problems.map((p) => [p.field, p.message]),
      [[`users[0].user.${key}`, 'file paths are refused; use token']],
    );
    assert.ok(vetKubeconfig(kubeconfig({ [key]: '/tmp/token' }), { ...policy, allowFilePaths: true }).ok);
  }
});
