import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { before, test } from 'node:test';
import { ANNOTATIONS, API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { adminRequest, type RunningApiserver } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { startAuditedMember } from './helpers/audited-member.ts';
import { applyHub, condition, dqrStatus, eventually, putDatabaseSecret, putDqr, putSecret, startController, type RunningController } from './helpers/hub-fixture.ts';

// A member of this file's own, with an audit log of every request made to
// it: what a resync asks of a member is counted where it is served.
const env = await openTestEnv('member-cache');
let audited: RunningApiserver | undefined;
let auditLog = '';
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

before(async () => {
  ({ apiserver: audited, auditLog } = await startAuditedMember(env, `cache-${env.namespace}`, false));
  await putSecret(env, 'audited-kubeconfig', { kubeconfig: audited.info.kubeconfig });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'audited' },
    spec: { kubeconfigSecretRef: { name: 'audited-kubeconfig', key: 'kubeconfig' } },
  });
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)');
  await env.sql("INSERT INTO items SELECT i, 'v' || i FROM generate_series(1, 25) AS i");
  baseline = await env.leaks();
});

env.defer(async () => {
  await running?.stop();
  await audited?.process.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

interface Served {
  at: number;
  verb: string;
  uri: string;
}

/** Microseconds since the epoch, from an audit event's RFC 3339 micro time. */
function micros(time: string): number {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(time);
  assert.ok(match?.[1] !== undefined, `audit time ${time}`);
  return Date.parse(`${match[1]}Z`) * 1000 + Number((match[2] ?? '').padEnd(6, '0').slice(0, 6));
}

/**
 * Requests the audited member served between two moments (ms since the
 * epoch), but for watches (the cache's own, reopened as they end) and the
 * ClusterTarget probe (/version, /readyz).
 */
async function served(from: number, to: number): Promise<Served[]> {
  const text = await readFile(auditLog, 'utf8');
  const found: Served[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const event = JSON.parse(line) as { stage?: string; verb?: string; requestURI?: string; requestReceivedTimestamp?: string };
    if (event.stage === 'ResponseStarted' || event.requestReceivedTimestamp === undefined) continue;
    const at = micros(event.requestReceivedTimestamp);
    if (at < from * 1000 || at > to * 1000) continue;
    const uri = event.requestURI ?? '';
    if (event.verb === 'watch' || uri === '/version' || uri.startsWith('/readyz')) continue;
    found.push({ at, verb: event.verb ?? '', uri });
  }
  return found;
}

/** Polls that ran the DQR's query: the members' items run only when it found something new for them. */
const queries = (name: string): number => running?.logs.filter((l) => l.includes('"msg":"query read;') && l.includes(`"dqr":"${env.namespace}/${name}"`)).length ?? 0;

async function waitForQueries(name: string, count: number): Promise<void> {
  const start = queries(name);
  await eventually(`${count} more queries of ${name}`, () => Promise.resolve(queries(name) >= start + count ? true : undefined), 30_000);
}

async function memberObject(name: string): Promise<{ uid: string; annotations: Record<string, string> } | undefined> {
  assert.ok(audited !== undefined);
  const got = await adminRequest(audited.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps/${name}`);
  if (got.status !== 200) return undefined;
  const metadata = (JSON.parse(got.body) as { metadata: { uid: string; annotations?: Record<string, string> } }).metadata;
  return { uid: metadata.uid, annotations: metadata.annotations ?? {} };
}

test('polls with nothing to change send no request to the member; a changed row sends its one apply: planning reads the watch cache', async () => {
  running = await startController(env);
  await putDqr(env, 'items', {
    query: 'SELECT id, v FROM items ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: item-{{row.id}}\ndata:\n  v: {{quote row.v}}\n',
    targets: { clusters: ['audited'] },
  });
  await eventually('the items on the audited member, Ready', async () => (condition(await dqrStatus(env, 'items'), 'Ready')?.status === 'True' && (await memberObject('item-25')) !== undefined ? true : undefined), 60_000);
  // The cache lists once, on the DQR's first use of the kind; from then on it only watches.
  await waitForQueries('items', 2);
  const from = Date.now();
  await waitForQueries('items', 3);
  const to = Date.now();
  assert.deepEqual(await served(from, to), [], 'requests to the member during three polls with nothing to change');

  // A row changes: the member plans all 25 objects again, from the cache, and sends the one apply.
  const changeFrom = Date.now();
  await env.sql("UPDATE items SET v = 'changed' WHERE id = 3");
  await eventually('item-3 updated', async () => {
    assert.ok(audited !== undefined);
    const got = await adminRequest(audited.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps/item-3`);
    return (JSON.parse(got.body) as { data?: Record<string, string> }).data?.['v'] === 'changed' ? true : undefined;
  });
  await waitForQueries('items', 2);
  const requests = await served(changeFrom, Date.now());
  assert.deepEqual(
    // The GETs are this test's own, reading item-3; the apiserver renews its own Lease in kube-system.
    requests.filter((r) => r.verb !== 'get' && !r.uri.includes('/namespaces/kube-system/')).map((r) => `${r.verb} ${r.uri.split('?')[0] ?? ''}`),
    [`patch /api/v1/namespaces/${env.namespace}/configmaps/item-3`],
    'one apply, no list',
  );
});

test('an object deleted on the member behind Rowcast is seen through the cache and re-created by the next sync', async () => {
  const before = await memberObject('item-7');
  assert.ok(before !== undefined && audited !== undefined);
  const from = Date.now();
  assert.equal((await adminRequest(audited.info, 'DELETE', `/api/v1/namespaces/${env.namespace}/configmaps/item-7`)).status, 200);
  const recreated = await eventually('item-7 back', async () => {
    const now = await memberObject('item-7');
    return now !== undefined && now.uid !== before.uid ? now : undefined;
  });
  assert.equal(recreated.annotations[ANNOTATIONS.rowKey], '7');
  const requests = await served(from, Date.now());
  assert.deepEqual(
    requests.filter((r) => r.verb === 'list'),
    [],
    'the sync planned from the cache, not from a LIST',
  );
  assert.ok(requests.some((r) => r.verb === 'patch' && r.uri.includes('/configmaps/item-7')), 'the sync applied item-7');
});

test('an owned object whose hash annotation is removed behind Rowcast is applied again by the next sync, from the cache', async () => {
  assert.ok(audited !== undefined);
  const from = Date.now();
  // Removing a field Rowcast applied takes it from no one: the apply puts it back without a conflict.
  const patched = await adminRequest(audited.info, 'PATCH', `/api/v1/namespaces/${env.namespace}/configmaps/item-8`, { metadata: { annotations: { [ANNOTATIONS.hash]: null } } });
  assert.equal(patched.status, 200);
  await eventually('item-8 applied again', async () => ((await memberObject('item-8'))?.annotations[ANNOTATIONS.hash] === undefined ? undefined : true));
  assert.deepEqual(
    (await served(from, Date.now())).filter((r) => r.verb === 'list'),
    [],
    'the sync planned from the cache, not from a LIST',
  );
  await running?.stop();
  running = undefined;
});

test('status write-back limited by statusUpdate.kinds keeps full objects of those kinds only: no full watch of the other kinds', async () => {
  await env.sql('CREATE TABLE apps (id int PRIMARY KEY, ready int)');
  await env.sql('INSERT INTO apps (id) VALUES (1)');
  running = await startController(env);
  await putDqr(env, 'mixed', {
    query: 'SELECT id FROM apps ORDER BY id',
    template: `apiVersion: v1
kind: ConfigMap
metadata:
  name: mixed-{{row.id}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mixed-{{row.id}}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: mixed-{{row.id}}
  template:
    metadata:
      labels:
        app: mixed-{{row.id}}
    spec:
      containers:
        - name: app
          image: example.com/app:1
`,
    targets: { clusters: ['audited'] },
    statusUpdateQueryTemplate: 'UPDATE apps SET ready = {{param resource.status.readyReplicas}} WHERE id = {{param row.id}}',
    statusUpdate: { kinds: ['Deployment'] },
  });
  await eventually('mixed Ready', async () => (condition(await dqrStatus(env, 'mixed'), 'Ready')?.status === 'True' ? true : undefined), 60_000);
  assert.ok(audited !== undefined);
  assert.equal((await adminRequest(audited.info, 'PATCH', `/apis/apps/v1/namespaces/${env.namespace}/deployments/mixed-1/status`, { status: { replicas: 1, readyReplicas: 1 } })).status, 200);
  await eventually('the Deployment status written back', async () => ((await env.sql<{ ready: number | null }>('SELECT ready FROM apps WHERE id = 1')).rows[0]?.ready === 1 ? true : undefined), 60_000);
  await waitForQueries('mixed', 2);
  // What the status watches hold in full, by kind, as the controller exports it: the watch cache holds every kind, metadata only.
  const exported = await running.metrics.registry.getSingleMetricAsString('rowcast_status_watch_objects');
  assert.match(exported, /rowcast_status_watch_objects\{cluster="[^"]*audited",kind="apps\/v1\/Deployment"\} 1$/m, 'the Deployment is watched in full, for its status');
  assert.doesNotMatch(exported, /ConfigMap/, 'no ConfigMap is held in full: statusUpdate.kinds names only Deployment');
  await running.stop();
  running = undefined;
});
