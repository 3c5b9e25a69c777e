import assert from 'node:assert/strict';
import test from 'node:test';
import yaml from 'js-yaml';
import { vetKubeconfig } from '../../src/clusters/index.ts';
import { kubeconfigWithAliasBomb } from '../helpers/hostile-yaml.ts';

const strict = { allowExecAuth: false, allowFilePaths: false, allowInsecure: false };

function kubeconfig(user: Record<string, unknown>, cluster: Record<string, unknown> = {}): string {
  return yaml.dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'other', cluster: { server: 'https://other.example:6443' } },
      { name: 'm1', cluster: { server: 'https://127.0.0.1:6443', 'certificate-authority-data': 'Y2E=', ...cluster } },
    ],
    users: [{ name: 'admin', user }],
    contexts: [{ name: 'ctx', context: { cluster: 'm1', user: 'admin' } }],
    'current-context': 'ctx',
  });
}

test('an inline kubeconfig is accepted and reduced to its current context', () => {
  const result = vetKubeconfig(kubeconfig({ 'client-certificate-data': 'Y2VydA==', 'client-key-data': 'a2V5' }), strict);
  assert.ok(result.ok);
  assert.equal(result.value.server, 'https://127.0.0.1:6443');
  const reduced = JSON.parse(result.value.text) as { clusters: { name: string }[] };
  assert.deepEqual(
    reduced.clusters.map((c) => c.name),
    ['m1'],
  );
});

test('exec and auth-provider plugins are refused unless allowed, naming the field', () => {
  const exec = vetKubeconfig(kubeconfig({ exec: { command: 'aws', apiVersion: 'client.authentication.k8s.io/v1' } }), strict);
  assert.ok(!exec.ok);
  assert.deepEqual(
    exec.problems.map((p) => p.field),
    ['users[0].user.exec'],
  );
  assert.match(exec.problems[0]?.message ?? '', /--allow-exec-auth/);
  const provider = vetKubeconfig(kubeconfig({ 'auth-provider': { name: 'oidc' } }), strict);
  assert.ok(!provider.ok);
  assert.equal(provider.problems[0]?.field, 'users[0].user.auth-provider');
  assert.ok(vetKubeconfig(kubeconfig({ exec: { command: 'aws' } }), { ...strict, allowExecAuth: true }).ok);
});

test('file paths are refused: they could hand the hub its own credentials', () => {
  const result = vetKubeconfig(
    kubeconfig({ 'token-file': '/var/run/secrets/kubernetes.io/serviceaccount/token', 'client-key': '/etc/key' }, { 'certificate-authority': '/etc/ca.crt' }),
    strict,
  );
  assert.ok(!result.ok);
  assert.deepEqual(result.problems.map((p) => p.field).sort(), ['clusters[1].cluster.certificate-authority', 'users[0].user.client-key', 'users[0].user.token-file']);
  const tokenFile = vetKubeconfig(kubeconfig({ 'auth-provider': { name: 'x', config: { tokenFile: '/t' } } }), { ...strict, allowExecAuth: true });
  assert.ok(!tokenFile.ok);
  assert.equal(tokenFile.problems[0]?.field, 'users[0].user.auth-provider.config.tokenFile');
});

test('plain http and insecure-skip-tls-verify are refused unless the controller allows insecure kubeconfigs, naming field and flag', () => {
  const http = vetKubeconfig(kubeconfig({ token: 'abc' }, { server: 'http://10.0.0.1', 'insecure-skip-tls-verify': true }), strict);
  assert.ok(!http.ok);
  assert.deepEqual(
    http.problems.map((p) => [p.field, p.kind]),
    [
      ['clusters[1].cluster.server', 'refused'],
      ['clusters[1].cluster.insecure-skip-tls-verify', 'refused'],
    ],
  );
  for (const problem of http.problems) assert.match(problem.message, /unless the controller runs with --allow-insecure-kubeconfigs/);
  const skip = vetKubeconfig(kubeconfig({ token: 'abc' }, { 'insecure-skip-tls-verify': true }), strict);
  assert.ok(!skip.ok);
  assert.deepEqual(
    skip.problems.map((p) => p.field),
    ['clusters[1].cluster.insecure-skip-tls-verify'],
  );
  const insecure = { ...strict, allowInsecure: true };
  assert.ok(vetKubeconfig(kubeconfig({ token: 'abc' }, { 'insecure-skip-tls-verify': true }), insecure).ok);
  assert.ok(vetKubeconfig(kubeconfig({ token: 'abc' }, { server: 'http://10.0.0.1', 'insecure-skip-tls-verify': true }), insecure).ok);
  const plain = vetKubeconfig(kubeconfig({ token: 'abc' }, { server: 'http://10.0.0.1' }), insecure);
  assert.ok(!plain.ok, 'plain http still needs insecure-skip-tls-verify, as an explicit acknowledgement');
  assert.equal(plain.problems[0]?.field, 'clusters[1].cluster.server');
});

test('garbage and dangling contexts are explained', () => {
  const garbage = vetKubeconfig('{{{', strict);
  assert.ok(!garbage.ok);
  assert.match(garbage.problems[0]?.message ?? '', /not valid YAML/);
  const dangling = vetKubeconfig(yaml.dump({ 'current-context': 'nope', contexts: [] }), strict);
  assert.ok(!dangling.ok);
  assert.equal(dangling.problems[0]?.field, 'current-context');
});

test('a kubeconfig built as a YAML alias bomb is refused as too large, not expanded', () => {
  const text = kubeconfigWithAliasBomb(kubeconfig({ token: 'abc' }));
  assert.ok(text.length < 2048);
  const result = vetKubeconfig(text, strict);
  assert.ok(!result.ok);
  const [problem] = result.problems;
  assert.ok(problem !== undefined);
  assert.equal(problem.kind, 'too-large');
  assert.match(problem.message, /^YAML refused: its aliases expand it past twice the size limit/);
});

test('deep nesting and oversized kubeconfigs are refused as too large, naming the limit', () => {
  const deep = vetKubeconfig(`${kubeconfig({ token: 'abc' })}extra: ${'['.repeat(1000)}${']'.repeat(1000)}\n`, strict);
  assert.ok(!deep.ok);
  assert.deepEqual(
    deep.problems.map((p) => [p.kind, p.message]),
    [['too-large', 'YAML refused: nested deeper than the limit of 32 (line 21, column 39)']],
  );
  const huge = vetKubeconfig(`${kubeconfig({ token: 'abc' })}padding: "${'x'.repeat(10 * 1024 * 1024)}"\n`, strict);
  assert.ok(!huge.ok);
  assert.deepEqual(
    huge.problems.map((p) => p.kind),
    ['too-large'],
  );
  assert.match(huge.problems.map((p) => p.message).join(), /more than the limit of 262144$/);
});
