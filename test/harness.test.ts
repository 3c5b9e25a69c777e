import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'node:test';
import { AuthorizationV1Api, VersionApi, Watch } from '@kubernetes/client-node';
import pg from 'pg';
import { kubernetesVersion } from './harness/control-plane-build.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';

const env = await openTestEnv('harness');
failOnLeaks(env);

test('the hub and every member answer /version with the pinned Kubernetes version', async () => {
  const pinned = await kubernetesVersion();
  assert.equal(env.members.length, 2);
  for (const cluster of [env.hub, ...env.members]) {
    const version = await cluster.kubeConfig.makeApiClient(VersionApi).getCode();
    assert.equal(version.gitVersion, pinned, `${cluster.info.name} runs ${version.gitVersion}`);
  }
});

test('each cluster keeps its own objects although all share one etcd', async () => {
  const [first, second] = env.members;
  assert.ok(first !== undefined && second !== undefined);
  const name = 'only-on-member-1';
  await first.core.createNamespacedConfigMap({ namespace: env.namespace, body: { metadata: { name }, data: { k: 'v' } } });
  const read = await first.core.readNamespacedConfigMap({ name, namespace: env.namespace });
  assert.equal(read.data?.['k'], 'v');
  for (const other of [env.hub, second]) {
    await assert.rejects(other.core.readNamespacedConfigMap({ name, namespace: env.namespace }), { code: 404 });
  }
});

test('RBAC authorization is on: an unknown user may not read Secrets', async () => {
  for (const cluster of [env.hub, ...env.members]) {
    const review = await cluster.kubeConfig.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
      body: { spec: { user: 'nobody', resourceAttributes: { verb: 'list', resource: 'secrets', namespace: env.namespace } } },
    });
    assert.equal(review.status?.allowed, false, `${cluster.info.name} allowed an unknown user`);
  }
});

test('PostgreSQL is real: password authentication is enforced on the test database', async () => {
  const { rows } = await env.sql<{ version: string; db: string; owner: string }>(
    'SELECT version() AS version, current_database() AS db, current_user AS owner',
  );
  assert.match(rows[0]?.version ?? '', /^PostgreSQL \d+/);
  assert.equal(rows[0]?.db, env.db.database);
  const wrong = new pg.Client({ ...env.db, password: 'not-the-password' });
  await assert.rejects(wrong.connect(), { code: '28P01' });
});

test('the leak check sees an open database connection and an open watch', async () => {
  const before = await env.leaks();
  const client = new pg.Client({ ...env.db });
  await client.connect();
  assert.equal((await env.leaks()).dbConnections, before.dbConnections + 1);
  await client.end();

  const member = env.members[0];
  assert.ok(member !== undefined);
  const watch = await new Watch(member.kubeConfig).watch(
    `/api/v1/namespaces/${env.namespace}/configmaps`,
    {},
    () => undefined,
    () => undefined,
  );
  const deadline = Date.now() + 10_000;
  let seen = before.watches;
  while (seen <= before.watches && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    seen = (await env.leaks()).watches;
  }
  watch.abort();
  assert.ok(seen > before.watches, `open watches stayed at ${seen}`);
});

test('failOnLeaks fails a test that leaves a connection open', async () => {
  const fixture = join(import.meta.dirname, 'fixtures', 'leaky.fixture.ts');
  // Without NODE_TEST_CONTEXT the child runs as a test runner of its own, not as our subtest.
  const env = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  const result = await promisify(execFile)(process.execPath, ['--test', '--test-reporter=tap', fixture], { env }).then(
    () => ({ failed: false, stdout: '' }),
    (error: unknown) => ({ failed: true, stdout: (error as { stdout?: string }).stdout ?? '' }),
  );
  assert.ok(result.failed, 'the leaky fixture passed');
  assert.match(result.stdout, /leak: 1 database connection\(s\) still open/);
  assert.match(result.stdout, /# pass 1\b/);
  assert.match(result.stdout, /# fail 1\b/);
});
