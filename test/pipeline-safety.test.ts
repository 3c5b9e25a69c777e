import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import yaml from 'js-yaml';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import {
  applyHub,
  condition,
  configMaps,
  dqrPath,
  dqrStatus,
  eventually,
  getHub,
  putDatabaseSecret,
  putDqr,
  putSecret,
  registerMembers,
  startController,
  type RunningController,
} from './helpers/hub-fixture.ts';
import { adminRequest } from './harness/kube-apiserver.ts';

const env = await openTestEnv('pipeline-safety');
const [east, west] = env.members;
assert.ok(east !== undefined && west !== undefined);
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

/** Each DQR of this file renders ConfigMaps named <dqr>-<id> from its own table. */
function template(extra = ''): string {
  return `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{metadata.name}}-{{row.id}}
data:
  v: {{quote row.v}}
${extra}`;
}

async function table(name: string, rows: [number, string][]): Promise<void> {
  await env.sql(`CREATE TABLE ${name} (id int PRIMARY KEY, v text)`);
  for (const [id, v] of rows) await env.sql(`INSERT INTO ${name} VALUES ($1, $2)`, [id, v]);
}

async function names(cluster: TestCluster, prefix: string): Promise<string[]> {
  return [...(await configMaps(cluster, env.namespace)).keys()].filter((n) => n.startsWith(`${prefix}-`)).sort();
}

async function waitNames(cluster: TestCluster, prefix: string, want: string[], timeoutMs?: number): Promise<void> {
  await eventually(`${want.join(',')} on ${cluster.info.name}`, async () => (JSON.stringify(await names(cluster, prefix)) === JSON.stringify([...want].sort()) ? true : undefined), timeoutMs);
}

async function waitCondition(dqr: string, type: string, predicate: (c: { status: string; reason: string; message: string }) => boolean): Promise<{ status: string; reason: string; message: string }> {
  return eventually(`${dqr} ${type}`, async () => {
    const c = condition(await dqrStatus(env, dqr), type);
    return c !== undefined && predicate(c) ? c : undefined;
  });
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

test('one bad row fails alone: template error, invalid manifest and duplicate names are named; the rest apply', async () => {
  await table('mixed', [
    [1, 'good'],
    [2, 'good'],
    [3, 'dup'],
    [4, 'dup'],
  ]);
  const dupTemplate = `{{#if (eq row.v "dup")}}apiVersion: v1
kind: ConfigMap
metadata:
  name: mixed-dup
data: {}
{{else}}${template()}{{/if}}`;
  await putDqr(env, 'mixed', { query: 'SELECT id, v FROM mixed ORDER BY id', template: dupTemplate });
  await waitNames(east, 'mixed', ['mixed-1', 'mixed-2']);
  // The objects can appear before the sync that made them writes its status.
  let status = await eventually('mixed reported', async () => {
    const s = await dqrStatus(env, 'mixed');
    return condition(s, 'Synced') === undefined ? undefined : s;
  });
  assert.equal(condition(status, 'Synced')?.status, 'False');
  assert.equal(condition(status, 'Synced')?.reason, 'PartiallySynced');
  assert.deepEqual([...new Set(status.failingRows?.map((r) => r.rowKey))].sort(), ['3', '4']);
  assert.ok(status.failingRows?.every((r) => r.field === 'metadata.name' && /more than one row/.test(r.message)));

  // Row 2 goes bad (a name that is no DNS name): its existing object is kept, and the status names it.
  // The template first: a sync between the two with the old template would apply v = 'BAD NAME' as a valid value.
  await putDqr(env, 'mixed', {
    query: 'SELECT id, v FROM mixed ORDER BY id',
    template: template().replace('{{metadata.name}}-{{row.id}}', '{{#if (eq row.v "BAD NAME")}}{{row.v}}{{else}}{{metadata.name}}-{{row.id}}{{/if}}'),
  });
  await env.sql("UPDATE mixed SET v = 'BAD NAME' WHERE id = 2");
  status = await eventually('row 2 failing', async () => {
    const s = await dqrStatus(env, 'mixed');
    return s.failingRows?.some((r) => r.rowKey === '2' && r.field === 'metadata.name') === true ? s : undefined;
  });
  await waitNames(east, 'mixed', ['mixed-1', 'mixed-2', 'mixed-3', 'mixed-4']);
  assert.equal((await configMaps(east, env.namespace)).get('mixed-2')?.['v'], 'good', 'the failed row keeps its object as it was');

  // A missing field is an error naming the field, not an empty string.
  await putDqr(env, 'mixed', { query: 'SELECT id, v FROM mixed ORDER BY id', template: template('  x: {{row.nope}}') });
  status = await eventually('missing field named', async () => {
    const s = await dqrStatus(env, 'mixed');
    return s.failingRows?.some((r) => r.field === 'row.nope') === true ? s : undefined;
  });
  await waitNames(west, 'mixed', ['mixed-1', 'mixed-2', 'mixed-3', 'mixed-4']);
  assert.equal(condition(status, 'Ready')?.status, 'False');
});

test('an object that exists without Rowcast is a conflict: reported, never taken', async () => {
  await east.core.createNamespacedConfigMap({ namespace: env.namespace, body: { metadata: { name: 'alien-1' }, data: { v: 'theirs' } } });
  await table('alien', [
    [1, 'ours'],
    [2, 'ours'],
  ]);
  await putDqr(env, 'alien', { query: 'SELECT id, v FROM alien ORDER BY id', template: template() });
  await waitNames(west, 'alien', ['alien-1', 'alien-2']);
  await waitNames(east, 'alien', ['alien-1', 'alien-2']);
  const status = await eventually('conflict reported', async () => {
    const s = await dqrStatus(env, 'alien');
    return s.failingRows?.some((r) => r.rowKey === '1' && r.cluster === 'member-1' && /not managed by Rowcast/.test(r.message)) === true ? s : undefined;
  });
  assert.equal(condition(status, 'Synced')?.status, 'False');
  const theirs = await east.core.readNamespacedConfigMap({ name: 'alien-1', namespace: env.namespace });
  assert.equal(theirs.data?.['v'], 'theirs');
  assert.equal(theirs.metadata?.labels?.['rowcast.dev/owner'], undefined);
});

test('a failed query, an unreachable database and a stopped member prune nothing', async () => {
  await table('guarded', [
    [1, 'a'],
    [2, 'b'],
  ]);
  await putDqr(env, 'guarded', { query: 'SELECT id, v FROM guarded ORDER BY id', template: template(), pruneLimit: '100%' });
  await waitNames(east, 'guarded', ['guarded-1', 'guarded-2']);
  await waitNames(west, 'guarded', ['guarded-1', 'guarded-2']);

  await putDqr(env, 'guarded', { query: 'SELECT id, v FROM no_such_table', template: template(), pruneLimit: '100%' });
  const failed = await waitCondition('guarded', 'Synced', (c) => c.reason === 'QueryFailed');
  assert.match(failed.message, /no_such_table/);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.deepEqual(await names(east, 'guarded'), ['guarded-1', 'guarded-2']);

  await putDatabaseSecret(env, 'db-dead', { port: '1' });
  await putDqr(env, 'guarded', {
    database: { connectionSecretRef: { name: 'db-dead' } },
    query: 'SELECT id, v FROM guarded WHERE false',
    template: template(),
    pruneLimit: '100%',
  });
  await waitCondition('guarded', 'DatabaseConnected', (c) => c.status === 'False' && c.reason === 'ConnectionFailed');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.deepEqual(await names(west, 'guarded'), ['guarded-1', 'guarded-2']);

  // West is frozen (SIGSTOP): east gets the change at once, nothing is pruned on west.
  await putDqr(env, 'guarded', { query: 'SELECT id, v FROM guarded ORDER BY id', template: template(), pruneLimit: '100%' });
  await waitCondition('guarded', 'Synced', (c) => c.status === 'True');
  process.kill(west.info.pid, 'SIGSTOP');
  try {
    await env.sql('DELETE FROM guarded WHERE id = 2');
    await env.sql("UPDATE guarded SET v = 'changed' WHERE id = 1");
    const started = Date.now();
    await eventually('east updated', async () => ((await configMaps(east, env.namespace)).get('guarded-1')?.['v'] === 'changed' ? true : undefined), 10_000);
    assert.ok(Date.now() - started < 8000, `east waited ${Date.now() - started} ms behind a frozen member`);
    await waitNames(east, 'guarded', ['guarded-1']);
  } finally {
    process.kill(west.info.pid, 'SIGCONT');
  }
  await waitNames(west, 'guarded', ['guarded-1'], 30_000);
});

test('a prune above spec.pruneLimit waits for a person to confirm it', async () => {
  await table('limited', [
    [1, 'a'],
    [2, 'b'],
    [3, 'c'],
    [4, 'd'],
  ]);
  await putDqr(env, 'limited', { query: 'SELECT id, v FROM limited ORDER BY id', template: template(), pruneLimit: '50%' });
  await waitNames(east, 'limited', ['limited-1', 'limited-2', 'limited-3', 'limited-4']);
  await env.sql('DELETE FROM limited WHERE id > 1');
  const blocked = await waitCondition('limited', 'Synced', (c) => c.reason === 'PruneBlocked');
  assert.match(blocked.message, /would prune 6 of 8/);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal((await names(east, 'limited')).length, 4, 'nothing pruned while blocked');
  const dqr = await getHub(env, dqrPath(env, 'limited'));
  const id = (dqr?.['status'] as { pendingPrune: { id: string } }).pendingPrune.id;
  await adminRequest(env.state.hub, 'PATCH', dqrPath(env, 'limited'), { metadata: { annotations: { 'rowcast.dev/confirm-prune': id } } });
  await waitNames(east, 'limited', ['limited-1']);
  await waitNames(west, 'limited', ['limited-1']);
  await eventually('confirmation removed', async () => {
    const after = await getHub(env, dqrPath(env, 'limited'));
    return (after?.['metadata'] as { annotations?: Record<string, string> }).annotations?.['rowcast.dev/confirm-prune'] === undefined ? true : undefined;
  });
});

test('a kubeconfig with an exec plugin is refused and the ClusterTarget says why', async () => {
  const parsed = yaml.load(east.info.kubeconfig) as { users: { user: Record<string, unknown> }[] };
  const first = parsed.users[0];
  assert.ok(first !== undefined);
  first.user = { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: '/bin/sh', args: ['-c', 'echo pwned'] } };
  await putSecret(env, 'exec-kubeconfig', { kubeconfig: yaml.dump(parsed) });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'exec-member' },
    spec: { kubeconfigSecretRef: { name: 'exec-kubeconfig', key: 'kubeconfig' } },
  });
  const ready = await eventually('exec refused', async () => {
    const ct = await getHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}/exec-member`);
    const conditions = ((ct?.['status'] as { conditions?: { type: string; status: string; reason: string; message: string }[] } | undefined)?.conditions ?? []);
    return conditions.find((c) => c.type === 'Ready' && c.reason === 'KubeconfigRefused');
  });
  assert.equal(ready.status, 'False');
  assert.match(ready.message, /users\[0\]\.user\.exec/);
  await adminRequest(env.state.hub, 'DELETE', `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}/exec-member`);
});

test('deleting a DQR deletes its objects (Delete) or leaves them unmarked (Orphan)', async () => {
  await table('gone', [[1, 'a']]);
  await table('kept', [[1, 'a']]);
  await putDqr(env, 'gone', { query: 'SELECT id, v FROM gone', template: template(), deletionPolicy: 'Delete' });
  await putDqr(env, 'kept', { query: 'SELECT id, v FROM kept', template: template(), deletionPolicy: 'Orphan' });
  for (const cluster of [east, west]) {
    await waitNames(cluster, 'gone', ['gone-1']);
    await waitNames(cluster, 'kept', ['kept-1']);
  }
  await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'gone'));
  await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'kept'));
  for (const cluster of [east, west]) await waitNames(cluster, 'gone', []);
  await eventually('both DQRs gone', async () => ((await getHub(env, dqrPath(env, 'gone'))) === undefined && (await getHub(env, dqrPath(env, 'kept'))) === undefined ? true : undefined));
  for (const cluster of [east, west]) {
    const kept = await cluster.core.readNamespacedConfigMap({ name: 'kept-1', namespace: env.namespace });
    assert.equal(kept.metadata?.labels?.['rowcast.dev/owner'], undefined);
    assert.equal(kept.metadata?.annotations?.['rowcast.dev/owner-ref'], undefined);
  }
});

test('a Secret without rowcast.dev/watch=true is never read; the condition names the label', async () => {
  await table('unwatched', [[1, 'a']]);
  // A complete, correct connection Secret, but not labelled for Rowcast.
  const created = await adminRequest(env.state.hub, 'POST', `/api/v1/namespaces/${env.namespace}/secrets`, {
    metadata: { name: 'db-unlabelled' },
    stringData: { host: env.db.host, port: String(env.db.port), username: env.db.user, password: env.db.password, dbname: env.db.database, sslmode: 'disable' },
  });
  assert.equal(created.status, 201, created.body);
  await putDqr(env, 'unwatched', { database: { connectionSecretRef: { name: 'db-unlabelled' } }, query: 'SELECT id, v FROM unwatched', template: template() });
  const connected = await waitCondition('unwatched', 'DatabaseConnected', (c) => c.status === 'False');
  assert.equal(connected.reason, 'SecretNotFound');
  assert.match(connected.message, /db-unlabelled/);
  assert.match(connected.message, /rowcast\.dev\/watch=true/);
  assert.deepEqual(await names(east, 'unwatched'), []);
  // Labelled, it is read at once.
  await adminRequest(env.state.hub, 'PATCH', `/api/v1/namespaces/${env.namespace}/secrets/db-unlabelled`, { metadata: { labels: { 'rowcast.dev/watch': 'true' } } });
  await waitNames(east, 'unwatched', ['unwatched-1']);
});

test('a rotated database password keeps everything working', async () => {
  await table('rotated', [[1, 'a']]);
  await putDqr(env, 'rotated', { query: 'SELECT id, v FROM rotated', template: template() });
  await waitNames(east, 'rotated', ['rotated-1']);
  const password = 'rotated-Pa55word-xyz';
  await env.sql(`ALTER ROLE "${env.db.user}" PASSWORD '${password}'`);
  await putDatabaseSecret(env, 'db', { password });
  await env.sql('INSERT INTO rotated VALUES (2, $1)', ['b']);
  await waitNames(east, 'rotated', ['rotated-1', 'rotated-2']);
  await waitNames(west, 'rotated', ['rotated-1', 'rotated-2']);
  await waitCondition('rotated', 'DatabaseConnected', (c) => c.status === 'True');
});

test('no password, token or private key appears in logs, events or status', async () => {
  assert.ok(running !== undefined && running.logs.length > 50, 'the controller logged');
  const events = await adminRequest(env.state.hub, 'GET', `/api/v1/namespaces/${env.namespace}/events`);
  const dqrs = await adminRequest(env.state.hub, 'GET', `/apis/${API_VERSION}/namespaces/${env.namespace}/databasequeryresources`);
  const cts = await adminRequest(env.state.hub, 'GET', `/apis/${API_VERSION}/namespaces/${env.namespace}/clustertargets`);
  const haystack = [...running.logs, events.body, dqrs.body, cts.body].join('\n');
  assert.match(events.body, /PruneBlocked|RowFailed|ObjectConflict/, 'events were written');
  const secrets = [env.db.password, 'rotated-Pa55word-xyz', env.state.postgres.password];
  for (const member of env.members) {
    const user = (yaml.load(member.info.kubeconfig) as { users: { user: Record<string, string> }[] }).users[0]?.user ?? {};
    secrets.push(user['client-key-data'] ?? '', member.info.adminKey.split('\n')[1] ?? '');
  }
  for (const secret of secrets) {
    assert.ok(secret.length > 8);
    assert.ok(!haystack.includes(secret), `a secret leaked: ${secret.slice(0, 4)}…`);
  }
});
