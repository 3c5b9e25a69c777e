import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { ANNOTATIONS, API_VERSION, CLUSTER_TARGET, OWNER_LABEL, parseClusterTarget, type ClusterTarget } from '../src/api/index.ts';
import { MemberApi, MemberKubeConfig, MemberQueue, MemberWatchCache, type DriftReport, type Member } from '../src/clusters/index.ts';
import { ownerLabelValue, ownerMatcher, ownerRefValue } from '../src/render/index.ts';
import { listOwned, pruneMember } from '../src/sync/index.ts';
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

function clusterTarget(allowedNamespaces: string[]): ClusterTarget {
  const parsed = parseClusterTarget({ apiVersion: API_VERSION, kind: CLUSTER_TARGET.kind, metadata: { name: 'audited', namespace: env.namespace }, spec: { kubeconfigSecretRef: { name: 'k', key: 'kubeconfig' }, allowedNamespaces } });
  assert.ok(parsed.ok);
  return parsed.value;
}

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
  const target = clusterTarget([]);
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

test("drift: another manager taking a rendered field, or deleting the object, is reported; Rowcast's own applies and prunes, and others' fields, are not", async (t) => {
  assert.ok(audited !== undefined);
  const logger = createLogger({ level: 'error', scrubber: new SecretScrubber(), write: () => undefined });
  const api = new MemberApi(new MemberKubeConfig(audited.info.kubeconfig, { requestTimeoutMs: 5000 }));
  const reports: DriftReport[] = [];
  const cache = new MemberWatchCache(api, { member: 'drift-member', logger, onDrift: (report) => reports.push(report) });
  const member: Member = { key: 'drift-member', name: 'drift-member', labels: {}, api, queue: new MemberQueue({ limits: { qps: 50, burst: 100, concurrency: 4 } }), fingerprint: 'test', cache };
  t.after(async () => {
    await cache.close();
    await member.queue.close();
    await api.close();
  });
  const resource = await api.resourceFor('v1', 'ConfigMap');
  assert.ok(resource !== undefined);
  cache.use('drift', [{ apiVersion: 'v1', kind: 'ConfigMap', resource, namespace: env.namespace }]);
  await eventually('the cache watching', () => Promise.resolve(cache.read({ apiVersion: 'v1', kind: 'ConfigMap', namespace: env.namespace })));
  const owner = { hubId: 'hub-drift', namespace: env.namespace, name: 'drifty', uid: 'u-2', target: 'drift-member' };
  const manager = `rowcast-${env.namespace}-drifty`;
  const path = (name: string): string => `/api/v1/namespaces/${env.namespace}/configmaps/${name}`;
  // force: as a heal applies, taking its fields back from whoever took them.
  const apply = async (name: string, value: string, force = false): Promise<Record<string, unknown>> => {
    const ref = { apiVersion: 'v1', kind: 'ConfigMap', namespace: env.namespace, name };
    const done = cache.beginApply(ref, manager);
    const body = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: env.namespace, labels: { [OWNER_LABEL]: ownerLabelValue(owner) }, annotations: { [ANNOTATIONS.ownerRef]: ownerRefValue(owner), [ANNOTATIONS.rowKey]: name, [ANNOTATIONS.hash]: value } },
      data: { v: value },
    };
    const applied = await api.request<Record<string, unknown>>('PATCH', path(name), { query: { fieldManager: manager, force: String(force) }, body, contentType: 'application/apply-patch+yaml' });
    done(applied);
    return applied;
  };
  await apply('drift-1', 'a');
  await apply('drift-1', 'b');
  await apply('drift-2', 'a');
  // Someone else's label: Rowcast renders no such field.
  assert.equal((await adminRequest(audited.info, 'PATCH', path('drift-1'), { metadata: { labels: { team: 'blue' } } })).status, 200);
  // kubectl edit of a rendered field.
  assert.equal((await adminRequest(audited.info, 'PATCH', path('drift-1'), { data: { v: 'edited' } })).status, 200);
  await eventually('the edit reported', () => Promise.resolve(reports.length >= 1 ? true : undefined));
  assert.equal(reports.length, 1, JSON.stringify(reports));
  assert.deepEqual(
    { name: reports[0]?.name, reason: reports[0]?.reason, kind: reports[0]?.kind, rowKey: reports[0]?.rowKey, ownerRef: reports[0]?.ownerRef },
    { name: 'drift-1', reason: 'modified', kind: 'ConfigMap', rowKey: 'drift-1', ownerRef: ownerRefValue(owner) },
  );
  assert.ok((reports[0]?.managers.length ?? 0) > 0, 'the editing manager is named');

  // Rowcast's own apply putting it back is no drift; a prune of its own neither; a delete by someone else is.
  await apply('drift-1', 'b', true);
  const pruned = await listOwned(member, clusterTarget([env.namespace]), [{ apiVersion: 'v1', kind: 'ConfigMap', resource }], ownerMatcher(owner), AbortSignal.timeout(10_000), 'drift');
  const two = pruned.find((o) => o.name === 'drift-2');
  assert.ok(two !== undefined);
  const result = await pruneMember(member, [two], () => undefined, AbortSignal.timeout(10_000));
  assert.equal(result.pruned, 1);
  assert.equal((await adminRequest(audited.info, 'DELETE', path('drift-1'))).status, 200);
  await eventually('the delete reported', () => Promise.resolve(reports.length >= 2 ? true : undefined));
  assert.deepEqual(
    reports.map((r) => [r.name, r.reason]),
    [
      ['drift-1', 'modified'],
      ['drift-1', 'deleted'],
    ],
  );
});

test('a member that stops answering (frozen) is not vouched for by its cache after a while; answering again, it is', async (t) => {
  assert.ok(audited !== undefined);
  const server = audited;
  const logger = createLogger({ level: 'error', scrubber: new SecretScrubber(), write: () => undefined });
  const api = new MemberApi(new MemberKubeConfig(server.info.kubeconfig, { requestTimeoutMs: 5000 }));
  const cache = new MemberWatchCache(api, { member: 'frozen', logger });
  t.after(async () => {
    server.process.thaw();
    await cache.close();
    await api.close();
  });
  const resource = await api.resourceFor('v1', 'ConfigMap');
  assert.ok(resource !== undefined);
  const scope = { apiVersion: 'v1', kind: 'ConfigMap', resource, namespace: env.namespace };
  cache.use('frozen', [scope]);
  await eventually('the cache watching', () => Promise.resolve(cache.read(scope)));
  // Frozen, the member keeps its connections open and answers nothing: client-node cuts the
  // watch for inactivity (30 s) and reopens it without reporting an error; the reopened watch
  // then fails for want of response headers (the member's request timeout), and that is what
  // tells the cache.
  server.process.freeze();
  try {
    await eventually('the cache no longer vouching for the frozen member', () => Promise.resolve(cache.read(scope) === undefined ? true : undefined), 90_000);
  } finally {
    server.process.thaw();
  }
  await eventually('the cache vouching again', () => Promise.resolve(cache.read(scope)), 90_000);
});
