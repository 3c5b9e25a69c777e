// Row values reach the members as values: never as objects of their own,
// never altered, never refused. Real members, real PostgreSQL.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { configMaps, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('render-escaping');
const [east] = env.members;
assert.ok(east !== undefined);
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

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

const INJECTION = `hello
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: rowcast-injected
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - kind: Group
    name: system:authenticated
    apiGroup: rbac.authorization.k8s.io`;

test('a row value holding a second document reaches the member as one value, and no ClusterRoleBinding is made', async () => {
  await env.sql('CREATE TABLE hostile (id int PRIMARY KEY, v text)');
  await env.sql('INSERT INTO hostile VALUES (1, $1)', [INJECTION]);
  await putDqr(env, 'hostile', {
    query: 'SELECT id, v FROM hostile',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hostile-{{row.id}}\ndata:\n  v: {{row.v}}\n',
  });
  const data = await eventually('hostile-1 on the member', async () => (await configMaps(east, env.namespace)).get('hostile-1'));
  assert.deepEqual(data, { v: INJECTION });
  const status = await dqrStatus(env, 'hostile');
  assert.equal(status.failingRows?.length ?? 0, 0, JSON.stringify(status.failingRows));
  assert.equal((await adminRequest(east.info, 'GET', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rowcast-injected')).status, 404);
  const owned = [...(await configMaps(east, env.namespace)).keys()].filter((name) => name.startsWith('hostile'));
  assert.deepEqual(owned, ['hostile-1'], 'exactly one object');
});

/** One value per class of code point (PostgreSQL text holds no NUL and no lone surrogate). */
const CLASSES: Record<string, string> = {
  c0: Array.from({ length: 31 }, (_, i) => String.fromCharCode(i + 1)).join(''),
  crlf: 'a\r\nb\rc\n',
  del: 'del\u007f',
  c1: Array.from({ length: 32 }, (_, i) => String.fromCharCode(0x80 + i)).join(''),
  nel: 'next\u0085line',
  separators: 'line\u2028para\u2029end',
  bom: '\ufeffbom',
  nonchars: 'x\ufffe\uffffy',
  nbsp: 'no\u00a0break',
  latin1: '\u00a1\u00bf\u00e9\u00ff',
  bidi: 'rtl\u202eoverride\u200dzwj',
  private: '\ue000\uf8ff',
  astral: '🚀𝄞\u{10ffff}\u{1f600}',
  quotes: `'"\\\``,
  yaml: ': - ? # & * ! | > % @ , [ ] { } ---',
  spaces: '  lead and trail  ',
};

test('every class of code point round-trips exactly from row to member object', async () => {
  await env.sql('CREATE TABLE points (id text PRIMARY KEY, v text)');
  for (const [id, v] of Object.entries(CLASSES)) await env.sql('INSERT INTO points VALUES ($1, $2)', [id, v]);
  await putDqr(env, 'points', {
    query: 'SELECT id, v FROM points',
    template:
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: points-{{row.id}}\ndata:\n  plain: {{row.v}}\n  quoted: "{{row.v}}"\n  helper: {{quote row.v}}\n  yaml:{{nindent 4 (toYaml row.v)}}\n',
  });
  // Every row either arrives or is refused: then compare them all at once, so a failure shows every class.
  const ids = Object.keys(CLASSES);
  const actual = await eventually('every row applied or refused', async () => {
    const [maps, status] = await Promise.all([configMaps(east, env.namespace), dqrStatus(env, 'points')]);
    const out: Record<string, unknown> = {};
    for (const id of ids) {
      const refused = status.failingRows?.find((r) => r.rowKey === id);
      out[id] = maps.get(`points-${id}`) ?? (refused === undefined ? undefined : `refused: ${refused.message}`);
    }
    return Object.values(out).every((v) => v !== undefined) ? out : undefined;
  }, 30_000);
  assert.deepEqual(actual, Object.fromEntries(ids.map((id) => [id, { plain: CLASSES[id], quoted: CLASSES[id], helper: CLASSES[id], yaml: CLASSES[id] }])));
});

test('a row can never render a kind outside spec.allowedKinds: that row fails and keeps its objects', async () => {
  await env.sql('CREATE TABLE kinds (id int PRIMARY KEY, kind text, extra text)');
  await env.sql("INSERT INTO kinds VALUES (1, 'ConfigMap', ''), (2, 'ConfigMap', '')");
  // The kind is computed, so it must be listed; the raw column could add a document of its own.
  await putDqr(env, 'kinds', {
    query: 'SELECT id, kind, extra FROM kinds ORDER BY id',
    template: 'apiVersion: v1\nkind: {{row.kind}}\nmetadata:\n  name: kinds-{{row.id}}\n{{{row.extra}}}\n',
    allowedKinds: ['ConfigMap'],
    pruneLimit: '100%',
  });
  await eventually('kinds-1 and kinds-2', async () => {
    const maps = await configMaps(east, env.namespace);
    return maps.has('kinds-1') && maps.has('kinds-2') ? true : undefined;
  });
  await env.sql("UPDATE kinds SET kind = 'Secret' WHERE id = 1");
  await env.sql(
    "UPDATE kinds SET extra = E'---\\napiVersion: rbac.authorization.k8s.io/v1\\nkind: ClusterRoleBinding\\nmetadata:\\n  name: rowcast-raw\\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\\nsubjects: [{kind: Group, name: system:authenticated, apiGroup: rbac.authorization.k8s.io}]' WHERE id = 2",
  );
  await putDqr(env, 'kinds', {
    query: 'SELECT id, kind, extra FROM kinds ORDER BY id',
    template: 'apiVersion: v1\nkind: {{row.kind}}\nmetadata:\n  name: kinds-{{row.id}}\n  labels: {pass: "2"}\n{{{row.extra}}}\n',
    allowedKinds: ['ConfigMap'],
    pruneLimit: '100%',
  });
  const status = await eventually('rows 1 and 2 failing on kind', async () => {
    const s = await dqrStatus(env, 'kinds');
    const keys = new Set(s.failingRows?.filter((r) => r.field === 'kind').map((r) => r.rowKey));
    return keys.has('1') && keys.has('2') ? s : undefined;
  });
  const messages = (status.failingRows ?? []).map((r) => `${r.rowKey} ${r.field ?? ''}: ${r.message}`).join('\n');
  assert.match(messages, /^1 kind: Secret \(core group\) is not an allowed kind \(spec\.allowedKinds: ConfigMap\)/m);
  assert.match(messages, /^2 kind: rbac\.authorization\.k8s\.io\/ClusterRoleBinding is not an allowed kind/m);
  const maps = await configMaps(east, env.namespace);
  assert.ok(maps.has('kinds-1') && maps.has('kinds-2'), 'the failed rows keep their objects');
  assert.equal((await adminRequest(east.info, 'GET', `/api/v1/namespaces/${env.namespace}/secrets/kinds-1`)).status, 404);
  assert.equal((await adminRequest(east.info, 'GET', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/rowcast-raw')).status, 404);
});
