import assert from 'node:assert/strict';
import test from 'node:test';
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { MemberApi, MemberKubeConfig } from '../src/clusters/index.ts';
import { HeldBytes, SupervisedInformer } from '../src/runtime/index.ts';
import { SecretScrubber, createLogger } from '../src/telemetry/index.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { waitFor } from './harness/ports.ts';
import { failOnLeaks, openTestEnv, type TestCluster } from './harness/test-env.ts';

const env = await openTestEnv('runtime-informer');
failOnLeaks(env);
const [member] = env.members as [TestCluster, ...TestCluster[]];

const crd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'widgets.informer.test.rowcast.dev' },
  spec: {
    group: 'informer.test.rowcast.dev',
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
  },
};
const crdPath = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
const widgets = `/apis/informer.test.rowcast.dev/v1/namespaces/${env.namespace}/widgets`;

async function installCrd(cluster: TestCluster = member): Promise<void> {
  await waitFor('CRD created', async () => [201, 409].includes((await adminRequest(cluster.info, 'POST', crdPath, crd)).status), 30_000, 200);
  await waitFor('widgets served', async () => (await adminRequest(cluster.info, 'GET', widgets)).status === 200, 30_000, 200);
}

async function widget(name: string, cluster: TestCluster = member): Promise<void> {
  const created = await adminRequest(cluster.info, 'POST', widgets, { apiVersion: 'informer.test.rowcast.dev/v1', kind: 'Widget', metadata: { name } });
  assert.equal(created.status, 201, created.body);
}

test('an informer that fails (its resource removed) is restarted and catches up when the resource is back', async () => {
  await installCrd();
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', scrubber: new SecretScrubber(), write: (line) => logs.push(line) });
  const api = new MemberApi(new MemberKubeConfig(member.info.kubeconfig, { requestTimeoutMs: 5000 }));
  const seen: string[] = [];
  const watching: boolean[] = [];
  const informer = new SupervisedInformer<KubernetesObject>({
    name: 'widgets',
    path: widgets,
    watch: (path, query, signal) => api.watch(path, query, signal),
    list: () => api.request<KubernetesListObject<KubernetesObject>>('GET', widgets),
    logger,
    backoff: { baseMs: 200, maxMs: 1000 },
    onEvent: (event, object) => {
      seen.push(`${event}:${object.metadata?.name ?? ''}`);
      if (object.metadata?.name === 'throws') throw new Error('a handler bug');
    },
    onWatchingChange: (now) => watching.push(now),
  });
  try {
    informer.start();
    await informer.waitForSync();
    assert.equal(informer.watching, true);
    await widget('one');
    await widget('throws');
    await waitFor('events for one and throws', () => Promise.resolve(seen.includes('add:one') && seen.includes('add:throws')), 10_000);
    assert.ok(logs.some((l) => l.includes('informer handler threw')), 'a throwing handler is logged, not fatal');

    await adminRequest(member.info, 'DELETE', `${crdPath}/${crd.metadata.name}`);
    await waitFor('the informer to notice', () => Promise.resolve(!informer.watching), 30_000);
    assert.ok(logs.some((l) => l.includes('informer failed; restarting')));

    await installCrd();
    await widget('two');
    await waitFor('the restarted informer to see two', () => Promise.resolve(seen.includes('add:two') && informer.watching), 30_000);
    // The CRD's removal took one and throws with it: the cache says so, whether by the watch or by a relist.
    await waitFor('one and throws gone from the cache', () => Promise.resolve(informer.get('one', env.namespace) === undefined && informer.get('throws', env.namespace) === undefined), 30_000);
    assert.ok(seen.includes('delete:one'), seen.join(' '));
    assert.deepEqual(
      informer.list(env.namespace).map((o) => o.metadata?.name),
      ['two'],
    );
    assert.deepEqual(watching.slice(0, 2), [true, false]);
    assert.equal(watching.at(-1), true);
  } finally {
    await informer.stop();
    await api.close();
    await adminRequest(member.info, 'DELETE', `${crdPath}/${crd.metadata.name}`);
  }
});

test('a watch on a member that freezes falls silent, is given up after 30 s, and resumes when the member answers again', async () => {
  const frozen = env.members[1];
  assert.ok(frozen !== undefined);
  await installCrd(frozen);
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', scrubber: new SecretScrubber(), write: (line) => logs.push(line) });
  const api = new MemberApi(new MemberKubeConfig(frozen.info.kubeconfig, { requestTimeoutMs: 2000 }));
  const seen: string[] = [];
  const informer = new SupervisedInformer<KubernetesObject>({
    name: 'frozen-widgets',
    path: widgets,
    list: () => api.request<KubernetesListObject<KubernetesObject>>('GET', widgets),
    watch: (path, query, signal) => api.watch(path, query, signal),
    logger,
    backoff: { baseMs: 200, maxMs: 1000 },
    onEvent: (event, object) => seen.push(`${event}:${object.metadata?.name ?? ''}`),
  });
  let stopped = false;
  try {
    informer.start();
    await informer.waitForSync();
    await widget('before', frozen);
    await waitFor('the informer to see before', () => Promise.resolve(seen.includes('add:before')), 10_000);
    // The open watch gets no byte more, and no end: only the informer's own silence timer can notice.
    process.kill(frozen.info.pid, 'SIGSTOP');
    stopped = true;
    await waitFor('the informer to stop vouching for a frozen member', () => Promise.resolve(!informer.watching), 60_000, 500);
    assert.ok(logs.some((l) => l.includes('informer failed; restarting')), 'the failed reopen is logged');
    process.kill(frozen.info.pid, 'SIGCONT');
    stopped = false;
    await widget('after', frozen);
    await waitFor('the informer back, with after', () => Promise.resolve(informer.watching && seen.includes('add:after')), 30_000);
    assert.deepEqual(informer.list(env.namespace).map((o) => o.metadata?.name).sort(), ['after', 'before']);
  } finally {
    if (stopped) process.kill(frozen.info.pid, 'SIGCONT');
    await informer.stop();
    await api.close();
    await adminRequest(frozen.info, 'DELETE', `${crdPath}/${crd.metadata.name}`);
  }
});

test('informers sharing a budget take what they hold from it, give back what is deleted or stopped, and fail past it without holding more', async () => {
  const path = `/api/v1/namespaces/${env.namespace}/configmaps`;
  const selector = 'budget-test';
  const put = async (name: string, size: number): Promise<void> => {
    const created = await adminRequest(member.info, 'POST', path, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { [selector]: 'yes' } }, data: { v: 'x'.repeat(size) } });
    assert.equal(created.status, 201, created.body);
  };
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', scrubber: new SecretScrubber(), write: (line) => logs.push(line) });
  const budget = new HeldBytes(64 * 1024);
  const api = new MemberApi(new MemberKubeConfig(member.info.kubeconfig, { requestTimeoutMs: 5000 }), undefined, budget);
  const informer = (name: string): SupervisedInformer<KubernetesObject> =>
    new SupervisedInformer<KubernetesObject>({
      name,
      path,
      watch: (watchPath, query, signal) => api.watch(watchPath, query, signal),
      labelSelector: selector,
      list: () => api.listCollection<KubernetesObject>(path, selector),
      logger,
      backoff: { baseMs: 200, maxMs: 400 },
      onEvent: () => undefined,
      budget,
    });
  const first = informer('first');
  const second = informer('second');
  try {
    await put('small-1', 4096);
    await put('small-2', 4096);
    first.start();
    await first.waitForSync();
    const listed = budget.bytes;
    assert.ok(listed > 2 * 4096 && listed < 16 * 1024, `two objects of 4 KiB are held as ${listed} bytes`);
    second.start();
    await second.waitForSync();
    await waitFor('both informers hold them', () => Promise.resolve(budget.bytes >= 2 * listed - 2), 10_000, 50);
    // A watch event is counted as its line: another object of 4 KiB, in each informer.
    await put('small-3', 4096);
    await waitFor('the new object held by both', () => Promise.resolve(first.size === 3 && second.size === 3), 10_000, 50);
    const three = budget.bytes;
    assert.ok(three > 2 * listed + 2 * 4096, `${three} bytes held for three objects twice`);
    const deleted = await adminRequest(member.info, 'DELETE', `${path}/small-3`);
    assert.equal(deleted.status, 200, deleted.body);
    await waitFor('the deleted object given back', () => Promise.resolve(first.size === 2 && second.size === 2), 10_000, 50);
    assert.ok(budget.bytes < three - 2 * 4096, `${budget.bytes} bytes held after the delete, ${three} before`);
    await second.stop();
    const afterStop = budget.bytes;
    assert.ok(afterStop < 16 * 1024, `one informer of two objects holds ${afterStop} bytes`);
    // 64 KiB in all: an object of 80 KiB does not fit. The informer fails and holds no more than before.
    await put('big', 80 * 1024);
    await waitFor('the informer fails on the budget', () => Promise.resolve(logs.some((l) => l.includes('informer failed') && l.includes('--member-cache-limit'))), 10_000, 50);
    assert.equal(first.get('big', env.namespace), undefined);
    assert.equal(budget.bytes, afterStop);
    assert.equal(first.watching, false);
    await first.stop();
    assert.equal(budget.bytes, 0);
  } finally {
    await first.stop();
    await second.stop();
    for (const name of ['small-1', 'small-2', 'small-3', 'big']) await adminRequest(member.info, 'DELETE', `${path}/${name}`);
    await api.close();
  }
});
