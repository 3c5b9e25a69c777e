import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, test } from 'node:test';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { condition, dqrPath, dqrStatus, eventually, getHub, putClusterTarget, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('ownership-targets');
const [east, west] = env.members;
assert.ok(east !== undefined && west !== undefined);
let running: RunningController | undefined;
let baseline: LeakCount | undefined;
const hubId = `hub-${env.namespace}`;
const ctPath = `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`;

/** The label the previous version stamped: hub id, namespace and name, no ClusterTarget. */
function legacyLabel(name: string): string {
  return createHash('sha256').update(JSON.stringify([hubId, env.namespace, name])).digest('hex').slice(0, 32);
}

async function targetReady(name: string): Promise<{ status: string; reason: string; message: string }> {
  return eventually(`${name} Ready reported`, async () => {
    const ct = await getHub(env, `${ctPath}/${name}`);
    const conditions = (ct?.['status'] as { conditions?: { type: string; status: string; reason: string; message: string }[] } | undefined)?.conditions ?? [];
    return conditions.find((c) => c.type === 'Ready' && c.reason !== 'Unknown');
  });
}

const eastObject = async (name: string): Promise<{ uid: string; labels: Record<string, string>; annotations: Record<string, string> } | undefined> => {
  const response = await adminRequest(east.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps/${name}`);
  if (response.status === 404) return undefined;
  const metadata = (JSON.parse(response.body) as { metadata: { uid: string; labels?: Record<string, string>; annotations?: Record<string, string> } }).metadata;
  return { uid: metadata.uid, labels: metadata.labels ?? {}, annotations: metadata.annotations ?? {} };
};

function refTarget(annotations: Record<string, string>): string | undefined {
  return (JSON.parse(annotations['rowcast.dev/owner-ref'] ?? '{}') as { target?: string }).target;
}

async function lastSync(name: string): Promise<string | undefined> {
  return ((await dqrStatus(env, name)) as { lastSyncTime?: string }).lastSyncTime;
}

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

test('two ClusterTargets reaching one apiserver under different URLs keep each other\'s objects', async () => {
  // The same member as member-1, reached as localhost instead of 127.0.0.1: no URL comparison can tell.
  await putClusterTarget(env, 'member-1-alias', east.info.kubeconfig.replaceAll('127.0.0.1', 'localhost'));
  assert.equal((await targetReady('member-1-alias')).status, 'True');
  await env.sql('CREATE TABLE twins (id int PRIMARY KEY, cluster text)');
  await env.sql("INSERT INTO twins VALUES (1, 'member-1'), (2, 'member-1-alias')");
  await putDqr(env, 'twins', {
    query: 'SELECT id, cluster FROM twins ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: twin-{{row.id}}\ndata:\n  cluster: {{quote cluster.name}}\n',
    targets: { clusters: ['member-1', 'member-1-alias'], rowClusterColumn: 'cluster' },
    pruneLimit: '100%',
  });
  const first = await eventually('both twins on member-1', async () => {
    const [one, two] = [await eastObject('twin-1'), await eastObject('twin-2')];
    return one !== undefined && two !== undefined ? { one, two } : undefined;
  });
  // Three more syncs through both targets (a row more each time): neither prunes what the other applied.
  for (let i = 3; i < 6; i++) {
    const before = await lastSync('twins');
    await env.sql('INSERT INTO twins VALUES ($1, $2)', [i, i % 2 === 0 ? 'member-1' : 'member-1-alias']);
    await eventually('another sync', async () => ((await lastSync('twins')) !== before && (await eastObject(`twin-${i}`)) !== undefined ? true : undefined));
  }
  assert.equal((await eastObject('twin-1'))?.uid, first.one.uid, 'twin-1 was never pruned and recreated');
  assert.equal((await eastObject('twin-2'))?.uid, first.two.uid, 'twin-2 was never pruned and recreated');
  const status = await dqrStatus(env, 'twins');
  assert.deepEqual(status.clusters?.map((c) => c.pruned), [0, 0]);
  for (let i = 1; i < 6; i++) assert.ok((await eastObject(`twin-${i}`)) !== undefined, `twin-${i} is there`);
  assert.notEqual(first.one.labels['rowcast.dev/owner'], first.two.labels['rowcast.dev/owner'], 'each target stamps its own owner label');
  assert.equal(refTarget(first.one.annotations), `${env.namespace}/member-1`);
  assert.equal(refTarget(first.two.annotations), `${env.namespace}/member-1-alias`);
  await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'twins'));
  await eventually('twins gone', async () => ((await eastObject('twin-1')) === undefined && (await eastObject('twin-2')) === undefined ? true : undefined));
  await adminRequest(env.state.hub, 'DELETE', `${ctPath}/member-1-alias`);
});

test('a second ClusterTarget with the same server and CA as an older one is refused, with a condition', async () => {
  await putClusterTarget(env, 'member-2-copy', west.info.kubeconfig);
  const ready = await targetReady('member-2-copy');
  assert.equal(ready.status, 'False');
  assert.equal(ready.reason, 'DuplicateCluster');
  assert.match(ready.message, new RegExp(`${env.namespace}/member-2\\b`));
  // The older one is untouched.
  assert.equal((await targetReady('member-2')).status, 'True');
  await adminRequest(env.state.hub, 'DELETE', `${ctPath}/member-2-copy`);
});

test('objects stamped by the previous version (no ClusterTarget in the label) stay owned and are re-stamped', async () => {
  await env.sql('CREATE TABLE legacy (id int PRIMARY KEY)');
  await env.sql('INSERT INTO legacy VALUES (1)');
  const template = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy-{{row.id}}\ndata:\n  v: "new"\n';
  await putDqr(env, 'legacy', { query: 'SELECT id FROM legacy', template, targets: { clusters: ['member-2'] }, pruneLimit: '100%' });
  const dqr = await eventually('legacy synced', async () => {
    const s = await dqrStatus(env, 'legacy');
    return condition(s, 'Synced')?.status === 'True' ? getHub(env, dqrPath(env, 'legacy')) : undefined;
  });
  const uid = (dqr['metadata'] as { uid: string }).uid;
  // What the previous version left on member-1: the row's object, and one of a row that is gone.
  const ownerRef = JSON.stringify({ hub: hubId, namespace: env.namespace, name: 'legacy', uid });
  for (const [name, rowKey] of [
    ['legacy-1', '1'],
    ['legacy-9', '9'],
  ] as const) {
    // Applied as that version applied: server-side, under the DQR's field manager.
    const applied = await adminRequest(
      east.info,
      'PATCH',
      `/api/v1/namespaces/${env.namespace}/configmaps/${name}?fieldManager=rowcast-${env.namespace}-legacy`,
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name, labels: { 'rowcast.dev/owner': legacyLabel('legacy') }, annotations: { 'rowcast.dev/owner-ref': ownerRef, 'rowcast.dev/row-key': rowKey, 'rowcast.dev/hash': 'old' } },
        data: { v: 'old' },
      },
      5000,
      'application/apply-patch+yaml',
    );
    assert.equal(applied.status, 201, applied.body);
  }
  const legacyUid = (await eastObject('legacy-1'))?.uid;
  await putDqr(env, 'legacy', { query: 'SELECT id FROM legacy', template, targets: { clusters: ['member-1', 'member-2'] }, pruneLimit: '100%' });
  const restamped = await eventually('legacy-1 re-stamped', async () => {
    const object = await eastObject('legacy-1');
    return object !== undefined && object.labels['rowcast.dev/owner'] !== legacyLabel('legacy') ? object : undefined;
  });
  assert.equal(restamped.uid, legacyUid, 'updated in place, not taken as a conflict or recreated');
  assert.equal(refTarget(restamped.annotations), `${env.namespace}/member-1`);
  await eventually('legacy-9 pruned as owned', async () => ((await eastObject('legacy-9')) === undefined ? true : undefined));
  const status = await dqrStatus(env, 'legacy');
  assert.equal(condition(status, 'Synced')?.status, 'True', JSON.stringify(status.failingRows));
  await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'legacy'));
  await eventually('legacy gone', async () => ((await getHub(env, dqrPath(env, 'legacy'))) === undefined ? true : undefined));
});
