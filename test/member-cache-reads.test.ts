import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { ANNOTATIONS, API_VERSION, CLUSTER_TARGET, OWNER_LABEL, parseClusterTarget, type ClusterTarget } from '../src/api/index.ts';
import { MemberApi, MemberKubeConfig, MemberQueue, MemberWatchCache, type Member } from '../src/clusters/index.ts';
import { ownerLabelValue, ownerMatcher, ownerRefValue } from '../src/render/index.ts';
import { listOwned } from '../src/sync/index.ts';
import { SecretScrubber, createLogger } from '../src/telemetry/index.ts';
import { adminRequest, startApiserver, type RunningApiserver } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { eventually } from './helpers/hub-fixture.ts';

// The member watch cache read directly, against an apiserver of this file's
// own (one test stops and restarts it).
const env = await openTestEnv('member-cache-reads');
let audited: RunningApiserver | undefined;
let baseline: LeakCount | undefined;

before(async () => {
  audited = await startApiserver(env.state.binaries.kubeApiserver, `cache-reads-${env.namespace}`, env.state.runDir, env.state.etcdUrl);
  assert.equal((await adminRequest(audited.info, 'POST', '/api/v1/namespaces', { metadata: { name: env.namespace } })).status, 201);
  baseline = await env.leaks();
});

env.defer(async () => {
  await audited?.process.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

/** An object stamped as the DQR's own on the member, as an apply would have left it. */
async function stamped(name: string, owner: Parameters<typeof ownerRefValue>[0]): Promise<void> {
  assert.ok(audited !== undefined);
  const created = await adminRequest(audited.info, 'POST', `/api/v1/namespaces/${env.namespace}/configmaps`, {
    metadata: { name, labels: { [OWNER_LABEL]: ownerLabelValue(owner) }, annotations: { [ANNOTATIONS.ownerRef]: ownerRefValue(owner), [ANNOTATIONS.rowKey]: name, [ANNOTATIONS.hash]: 'h' } },
  });
  assert.equal(created.status, 201, created.body);
}

test('a cache that has not listed yet, or whose watch is broken, is never read as "nothing there": the sync lists live', async (t) => {
  assert.ok(audited !== undefined);
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', scrubber: new SecretScrubber(), write: (line) => logs.push(line) });
  const owner = { hubId: 'hub-cache-test', namespace: env.namespace, name: 'direct', uid: 'u-1', target: `${env.namespace}/audited` };
  for (const name of ['direct-1', 'direct-2', 'direct-3']) await stamped(name, owner);
  const api = new MemberApi(new MemberKubeConfig(audited.info.kubeconfig, { requestTimeoutMs: 5000 }));
  // A failed watch is retried only after ten minutes: the test sees it broken for as long as it needs.
  const cache = new MemberWatchCache(api, { member: owner.target, logger, backoff: { baseMs: 600_000, maxMs: 600_000 } });
  const member: Member = { key: owner.target, name: 'audited', labels: {}, api, queue: new MemberQueue({ limits: { qps: 50, burst: 100, concurrency: 4 } }), fingerprint: 'test', cache };
  t.after(async () => {
    await cache.close();
    await member.queue.close();
    await api.close();
  });
  const parsed = parseClusterTarget({ apiVersion: API_VERSION, kind: CLUSTER_TARGET.kind, metadata: { name: 'audited', namespace: env.namespace }, spec: { kubeconfigSecretRef: { name: 'k', key: 'kubeconfig' } } });
  assert.ok(parsed.ok);
  const target: ClusterTarget = parsed.value;
  const resource = await api.resourceFor('v1', 'ConfigMap');
  assert.ok(resource !== undefined);
  const kinds = [{ apiVersion: 'v1', kind: 'ConfigMap', resource }];
  const scope = { apiVersion: 'v1', kind: 'ConfigMap', namespace: undefined };
  const owned = async (): Promise<string[]> =>
    (await listOwned(member, target, kinds, ownerMatcher(owner), AbortSignal.timeout(10_000), 'direct')).map((o) => o.name).sort();

  // First use: the informer starts now and has not listed; the call lists live.
  assert.equal(cache.read(scope), undefined);
  assert.deepEqual(await owned(), ['direct-1', 'direct-2', 'direct-3']);
  await eventually('the cache listed and watching', () => Promise.resolve(cache.read(scope)));
  const lists = api.requests.list;
  assert.deepEqual(await owned(), ['direct-1', 'direct-2', 'direct-3']);
  assert.equal(api.requests.list, lists, 'read from the cache');

  // The member goes away and comes back: the watch broke, and the cache (as it was before) is not read.
  await audited.process.stop();
  await eventually('the cache no longer vouching for the scope', () => Promise.resolve(cache.read(scope) === undefined ? true : undefined), 30_000);
  audited.process.start();
  await eventually('the member back', async () => ((await adminRequest(audited?.info ?? env.hub.info, 'GET', '/readyz')).status === 200 ? true : undefined), 60_000);
  await stamped('direct-4', owner);
  assert.deepEqual(await owned(), ['direct-1', 'direct-2', 'direct-3', 'direct-4'], 'listed live, not from the cache of before');
  assert.equal(cache.read(scope), undefined);
  assert.ok(logs.some((l) => l.includes('informer failed; restarting')));
});

test('a DQR that no longer uses a kind stops its informer; the last user going stops it', async () => {
  assert.ok(audited !== undefined);
  const logger = createLogger({ level: 'error', scrubber: new SecretScrubber(), write: () => undefined });
  const api = new MemberApi(new MemberKubeConfig(audited.info.kubeconfig, { requestTimeoutMs: 5000 }));
  const cache = new MemberWatchCache(api, { member: 'm', logger });
  try {
    const resource = await api.resourceFor('v1', 'ConfigMap');
    const secrets = await api.resourceFor('v1', 'Secret');
    assert.ok(resource !== undefined && secrets !== undefined);
    const configMaps = { apiVersion: 'v1', kind: 'ConfigMap', resource, namespace: env.namespace };
    const secretScope = { apiVersion: 'v1', kind: 'Secret', resource: secrets, namespace: env.namespace };
    cache.use('a', [configMaps, secretScope]);
    cache.use('b', [configMaps]);
    await eventually('both scopes watching', () => Promise.resolve(cache.stats.watching === 2 ? true : undefined));
    cache.use('a', [configMaps]);
    assert.equal(cache.stats.scopes, 1, 'the Secret informer stopped with its last user');
    assert.equal(cache.read(secretScope), undefined);
    cache.release('a');
    assert.ok(cache.read(configMaps) !== undefined, 'b still uses the ConfigMap informer');
    cache.release('b');
    assert.equal(cache.stats.scopes, 0);
  } finally {
    await cache.close();
    await api.close();
  }
});
