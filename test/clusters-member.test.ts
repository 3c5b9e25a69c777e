import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import test from 'node:test';
import yaml from 'js-yaml';
import { MemberApi, MemberKubeConfig, MemberQueue, MemberRegistry, probeMember } from '../src/clusters/index.ts';
import { describeApiError } from '../src/runtime/index.ts';
import { SecretScrubber } from '../src/telemetry/index.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';
import { startStallProxy } from './helpers/stall-proxy.ts';

const env = await openTestEnv('clusters-member');
failOnLeaks(env);

const member = env.members[0];
assert.ok(member !== undefined);

function countConnections(): { count: () => number; stop: () => void } {
  let connections = 0;
  const onConnected = (): void => {
    connections++;
  };
  subscribe('undici:client:connected', onConnected);
  return { count: () => connections, stop: () => unsubscribe('undici:client:connected', onConnected) };
}

test('a member client reuses its TLS connections across its calls', async () => {
  const api = new MemberApi(new MemberKubeConfig(member.info.kubeconfig, { requestTimeoutMs: 10_000 }));
  const counter = countConnections();
  try {
    for (let i = 0; i < 40; i++) assert.match(await api.version(), /^v1\./);
    for (let i = 0; i < 10; i++) await api.get(`/api/v1/namespaces/${env.namespace}`);
  } finally {
    counter.stop();
    await api.close();
  }
  assert.ok(counter.count() <= 2, `opened ${counter.count()} connections for 50 requests`);
});

test('server-side apply sends the rendered JSON as is: strict field validation names a typo', async () => {
  const api = new MemberApi(new MemberKubeConfig(member.info.kubeconfig, { requestTimeoutMs: 10_000 }));
  try {
    const resource = await api.resourceFor('v1', 'ConfigMap');
    assert.ok(resource?.namespaced);
    const path = MemberApi.collectionPath('v1', resource, env.namespace);
    const good = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ssa', namespace: env.namespace, labels: { owner: 'x' } }, data: { a: '1' } };
    const applied = await api.apply(good, `${path}/ssa`, 'rowcast-test');
    assert.equal((applied['data'] as Record<string, string>)['a'], '1');
    const typo = { ...good, metadata: { ...good.metadata, name: 'typo' }, dtaa: { a: '1' } };
    const failure = await api.apply(typo, `${path}/typo`, 'rowcast-test').then(
      () => undefined,
      (error: unknown) => describeApiError(error),
    );
    assert.ok(failure !== undefined, 'a typo was applied');
    assert.equal(failure.kind, 'invalid');
    assert.match(failure.message, /dtaa/);
    const listed = await api.list(path, 'owner=x');
    assert.deepEqual(
      listed.map((o) => (o['metadata'] as { name: string }).name),
      ['ssa'],
    );
    await api.delete(`${path}/ssa`, 'not-the-uid').then(
      () => assert.fail('delete with a stale uid precondition succeeded'),
      (error: unknown) => assert.equal(describeApiError(error).kind, 'conflict'),
    );
    const uid = (listed[0]?.['metadata'] as { uid: string }).uid;
    await api.delete(`${path}/ssa`, uid);
    assert.equal(await api.get(`${path}/ssa`), undefined);
    assert.equal(await api.resourceFor('example.com/v1', 'Nothing'), undefined, 'an unknown group is no resource, not an error');
  } finally {
    await api.close();
  }
});

test('the registry builds a member once, rebuilds it on a new kubeconfig, and refuses exec plugins', async () => {
  const scrubber = new SecretScrubber();
  const registry = new MemberRegistry({ policy: { allowExecAuth: false, allowFilePaths: false, allowInsecure: false }, scrubber, requestTimeoutMs: 5000 });
  try {
    const spec = { key: 'ns/m1', name: 'm1', labels: { region: 'a' }, kubeconfig: member.info.kubeconfig, scrubSource: 'secret:ns/m1', trusted: false, rateLimit: { qps: 50, burst: 100, concurrency: 8 } };
    const first = await registry.ensure(spec);
    const again = await registry.ensure(spec);
    assert.ok(first.ok && again.ok);
    assert.equal(again.member, first.member);
    assert.equal(again.rebuilt, false);
    const probe = await probeMember(first.member, 5000);
    assert.equal(probe.reachable, true);
    assert.equal(probe.ready, true);
    assert.match(probe.serverVersion ?? '', /^v1\.35\./);
    const faster = await registry.ensure({ ...spec, rateLimit: { qps: 100, burst: 200, concurrency: 8 } });
    assert.ok(faster.ok && faster.rebuilt);
    const parsed = yaml.load(member.info.kubeconfig) as { users: { user: Record<string, unknown> }[] };
    const admin = parsed.users[0];
    assert.ok(admin !== undefined);
    const key = String(admin.user['client-key-data']);
    admin.user = { exec: { command: '/bin/sh', apiVersion: 'client.authentication.k8s.io/v1' } };
    const exec = yaml.dump(parsed);
    const refused = await registry.ensure({ ...spec, kubeconfig: exec });
    assert.ok(!refused.ok);
    assert.match(refused.problems[0]?.field ?? '', /exec$/);
    assert.equal(registry.size, 0, 'a refused kubeconfig removes the member');
    assert.ok(key.length > 20);
    assert.equal(scrubber.scrub(`leak ${key}`), 'leak [REDACTED]', 'credentials are registered with the scrubber');
  } finally {
    await registry.closeAll();
  }
});

test('a frozen member fails its probe within the timeout and its circuit opens; the other member is unaffected', async () => {
  const frozen = env.members[1];
  assert.ok(frozen !== undefined);
  const apis = [member, frozen].map((m) => new MemberApi(new MemberKubeConfig(m.info.kubeconfig, { requestTimeoutMs: 1500 })));
  const [healthy, hung] = apis as [MemberApi, MemberApi];
  const queue = new MemberQueue({ limits: { qps: 50, burst: 100, concurrency: 2 }, failureThreshold: 2, openMs: 60_000 });
  process.kill(frozen.info.pid, 'SIGSTOP');
  try {
    const started = performance.now();
    const outcomes = await Promise.allSettled([1, 2].map(() => queue.run((signal) => hung.version(signal))));
    assert.ok(outcomes.every((o) => o.status === 'rejected'));
    assert.ok(performance.now() - started < 10_000, 'a hung member fails within its request timeout');
    assert.equal(queue.circuitOpen, true);
    const fast = performance.now();
    await assert.rejects(queue.run((signal) => hung.version(signal)), { name: 'MemberUnavailableError' });
    assert.ok(performance.now() - fast < 1000, 'an open circuit fails at once, not after the 1.5 s request timeout');
    assert.match(await healthy.version(), /^v1\./);
  } finally {
    process.kill(frozen.info.pid, 'SIGCONT');
    await queue.close();
    await Promise.all(apis.map((a) => a.close()));
  }
});

test('a member that stops sending after the first chunk of a response fails the call with a retryable body timeout instead of hanging', async () => {
  const big = 'x'.repeat(400_000);
  for (const name of ['stall-a', 'stall-b', 'stall-c']) {
    await member.core.createNamespacedConfigMap({ namespace: env.namespace, body: { metadata: { name, labels: { stall: 'yes' } }, data: { big } } });
  }
  const proxy = await startStallProxy(Number(new URL(member.kubeConfig.getCurrentCluster()?.server ?? '').port));
  const kubeconfig = yaml.load(member.info.kubeconfig) as { clusters: { cluster: { server: string } }[] };
  for (const entry of kubeconfig.clusters) entry.cluster.server = `https://127.0.0.1:${proxy.port}`;
  const api = new MemberApi(new MemberKubeConfig(JSON.stringify(kubeconfig), { requestTimeoutMs: 2000 }));
  try {
    assert.match(await api.version(), /^v1\./, 'the proxy forwards until told to stall');
    proxy.stallNextResponse();
    const listing = api.list(`/api/v1/namespaces/${env.namespace}/configmaps`, 'stall=yes');
    let bound: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      listing.then(
        () => ({ settled: 'resolved' as const }),
        (error: unknown) => ({ settled: 'rejected' as const, error }),
      ),
      new Promise<{ settled: 'hung' }>((resolve) => {
        bound = setTimeout(() => resolve({ settled: 'hung' }), 30_000);
      }),
    ]);
    clearTimeout(bound);
    await proxy.stalled;
    assert.equal(outcome.settled, 'rejected', `the list ${outcome.settled} while the member sent nothing after its first chunk`);
    const failure = describeApiError(outcome.error);
    assert.equal(failure.retryable, true);
    assert.equal(failure.kind, 'unavailable');
    assert.match(failure.message, /response body/);
  } finally {
    await api.close();
    await proxy.close();
  }
});

test('a list whose page of big objects is over the answer limit is read again in shorter pages, every object once', async () => {
  const api = new MemberApi(new MemberKubeConfig(member.info.kubeconfig, { requestTimeoutMs: 30_000 }));
  const path = `/api/v1/namespaces/${env.namespace}/configmaps`;
  // 24 ConfigMaps of 1 MiB each, near etcd's limit per object: one page of all of them is over the 16 MiB limit.
  const big = 'x'.repeat(2 ** 20 - 1024);
  try {
    for (let i = 0; i < 24; i++) {
      await api.request('POST', path, { body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `big-${i}`, labels: { size: 'big' } }, data: { big } } });
    }
    const before = api.requests.list;
    const listed = await api.listWithVersion(path, 'size=big');
    assert.equal(listed.items.length, 24);
    assert.equal(new Set(listed.items.map((item) => (item['metadata'] as { name: string }).name)).size, 24);
    assert.notEqual(listed.resourceVersion, '');
    // Pages of 500, 250, 125, 63 and 32 are each over (all 24 objects); pages of 16 fit: two of them.
    assert.equal(api.requests.list - before, 5 + 2);
  } finally {
    // One by one: a deletecollection answers with every object it deleted, itself over the limit.
    for (let i = 0; i < 24; i++) await api.delete(`${path}/big-${i}`, undefined);
    await api.close();
  }
});
