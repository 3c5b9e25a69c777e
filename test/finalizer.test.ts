import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { before, test } from 'node:test';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE, GROUP } from '../src/api/index.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { condition, dqrPath, dqrStatus, eventually, getHub, putClusterTarget, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('finalizer');
const [east, west] = env.members;
assert.ok(east !== undefined && west !== undefined);
let running: RunningController | undefined;
let baseline: LeakCount | undefined;
const ctPath = `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`;
const crdPath = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${DATABASE_QUERY_RESOURCE.plural}.${GROUP}`;

function template(prefix: string): string {
  return `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${prefix}-{{row.id}}\ndata:\n  v: "x"\n`;
}

const objectOn = async (cluster: TestCluster, name: string): Promise<{ labels: Record<string, string>; annotations: Record<string, string> } | undefined> => {
  const response = await adminRequest(cluster.info, 'GET', `/api/v1/namespaces/${env.namespace}/configmaps/${name}`);
  if (response.status === 404) return undefined;
  const metadata = (JSON.parse(response.body) as { metadata: { labels?: Record<string, string>; annotations?: Record<string, string> } }).metadata;
  return { labels: metadata.labels ?? {}, annotations: metadata.annotations ?? {} };
};

async function present(cluster: TestCluster, name: string): Promise<void> {
  await eventually(`${name} on ${cluster.info.name}`, async () => ((await objectOn(cluster, name)) === undefined ? undefined : true));
}

async function gone(cluster: TestCluster, name: string): Promise<void> {
  await eventually(`${name} gone from ${cluster.info.name}`, async () => ((await objectOn(cluster, name)) === undefined ? true : undefined));
}

async function dqrGone(name: string): Promise<void> {
  await eventually(`${name} deleted`, async () => ((await getHub(env, dqrPath(env, name))) === undefined ? true : undefined));
}

async function deleting(name: string): Promise<{ status: string; reason: string; message: string }> {
  return eventually(`${name} reports why it waits`, async () => {
    const ready = condition(await dqrStatus(env, name), 'Ready');
    return ready?.reason === 'Deleting' ? ready : undefined;
  });
}

async function targetReady(name: string, status: string): Promise<void> {
  await eventually(`${name} Ready=${status}`, async () => {
    const ct = await getHub(env, `${ctPath}/${name}`);
    const conditions = (ct?.['status'] as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? [];
    return conditions.some((c) => c.type === 'Ready' && c.status === status) ? true : undefined;
  });
}

/** A loopback port of the test's own that forwards to a member until closed. */
async function proxyTo(target: TestCluster): Promise<{ url: string; close(): Promise<void> }> {
  const upstream = new URL(target.info.server);
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const remote = connect(Number(upstream.port), upstream.hostname);
    sockets.add(client).add(remote);
    client.pipe(remote).pipe(client);
    const drop = (): void => {
      client.destroy();
      remote.destroy();
    };
    client.on('error', drop).on('close', drop);
    remote.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function crdJsonPatch(ops: unknown[]): Promise<void> {
  const response = await adminRequest(env.state.hub, 'PATCH', crdPath, ops, 10_000, 'application/json-patch+json');
  assert.equal(response.status, 200, response.body);
}

before(async () => {
  await registerMembers(env);
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE items (id int PRIMARY KEY)');
  await env.sql('INSERT INTO items VALUES (1)');
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('a spec this controller cannot parse never means Delete; an unknown deletionPolicy keeps the finalizer and says why', async () => {
  // A newer CRD than this controller knows (version skew): one more field, one more policy.
  const original = JSON.parse((await adminRequest(env.state.hub, 'GET', crdPath)).body) as { spec: { versions: { schema: unknown }[] } };
  const specPath = '/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties';
  await crdJsonPatch([
    { op: 'add', path: `${specPath}/futureField`, value: { type: 'string' } },
    { op: 'add', path: `${specPath}/deletionPolicy/enum/-`, value: 'Retain' },
  ]);
  try {
    await putDqr(env, 'skew', { query: 'SELECT id FROM items', template: template('skew'), deletionPolicy: 'Orphan' });
    await putDqr(env, 'retain', { query: 'SELECT id FROM items', template: template('retain'), deletionPolicy: 'Delete' });
    for (const cluster of [east, west]) {
      await present(cluster, 'skew-1');
      await present(cluster, 'retain-1');
    }
    // Merge patches keep the finalizer the controller added (a PUT without it would drop it).
    await eventually('the newer CRD is served', async () => {
      await adminRequest(env.state.hub, 'PATCH', dqrPath(env, 'skew'), { spec: { futureField: 'x' } });
      const spec = (await getHub(env, dqrPath(env, 'skew')))?.['spec'] as { futureField?: string } | undefined;
      return spec?.futureField === 'x' ? true : undefined;
    });
    const retain = await adminRequest(env.state.hub, 'PATCH', dqrPath(env, 'retain'), { spec: { deletionPolicy: 'Retain' } });
    assert.equal(retain.status, 200, retain.body);
    // The write that stored futureField may have reached the controller's watch through the old schema, which
    // drops the field; a later change of the object comes through the new one, as after any CRD upgrade.
    let touch = 0;
    for (const name of ['skew', 'retain']) {
      await eventually(`${name} reported as a spec this controller cannot parse`, async () => {
        if (condition(await dqrStatus(env, name), 'Ready')?.reason === 'InvalidSpec') return true;
        await adminRequest(env.state.hub, 'PATCH', dqrPath(env, name), { metadata: { annotations: { 'example.com/touched': String(++touch) } } });
        return undefined;
      });
    }

    await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'skew'));
    await dqrGone('skew');
    for (const cluster of [east, west]) {
      const kept = await objectOn(cluster, 'skew-1');
      assert.ok(kept !== undefined, `skew-1 kept on ${cluster.info.name}: deletionPolicy Orphan was read from the spec it could not parse`);
      assert.equal(kept.labels['rowcast.dev/owner'], undefined);
    }

    await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'retain'));
    const waiting = await deleting('retain');
    assert.equal(waiting.status, 'False');
    assert.match(waiting.message, /spec\.deletionPolicy "Retain"/);
    for (const cluster of [east, west]) assert.ok((await objectOn(cluster, 'retain-1')) !== undefined, 'nothing deleted for a policy it cannot read');
    assert.ok((await getHub(env, dqrPath(env, 'retain'))) !== undefined, 'the finalizer is kept');
    await adminRequest(env.state.hub, 'PATCH', dqrPath(env, 'retain'), { spec: { deletionPolicy: 'Delete' } });
    for (const cluster of [east, west]) await gone(cluster, 'retain-1');
    await dqrGone('retain');
  } finally {
    await crdJsonPatch([{ op: 'replace', path: '/spec/versions/0/schema', value: original.spec.versions[0]?.schema }]);
  }
});

test('a dead ClusterTarget the DQR never used does not hold its deletion hostage', async () => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  await putClusterTarget(env, 'dead', east.info.kubeconfig.replace(new URL(east.info.server).host, `127.0.0.1:${port}`));
  await targetReady('dead', 'False');
  await putDqr(env, 'alone', { query: 'SELECT id FROM items', template: template('alone'), targets: { clusters: ['member-1'] } });
  await present(east, 'alone-1');
  await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'alone'));
  await gone(east, 'alone-1');
  await dqrGone('alone');
  await adminRequest(env.state.hub, 'DELETE', `${ctPath}/dead`);
});

test('an unreachable member keeps the finalizer with a condition; rowcast.dev/orphan-unreachable releases it', async () => {
  const proxy = await proxyTo(west);
  let open = true;
  try {
    await putClusterTarget(env, 'via-proxy', west.info.kubeconfig.replace(west.info.server, proxy.url));
    await targetReady('via-proxy', 'True');
    await putDqr(env, 'far', { query: 'SELECT id FROM items', template: template('far'), targets: { clusters: ['member-1', 'via-proxy'] } });
    await present(east, 'far-1');
    await present(west, 'far-1');
    await proxy.close();
    open = false;
    await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'far'));
    await gone(east, 'far-1');
    const waiting = await deleting('far');
    assert.match(waiting.message, /via-proxy/);
    assert.match(waiting.message, /rowcast\.dev\/orphan-unreachable/);
    assert.ok((await getHub(env, dqrPath(env, 'far'))) !== undefined, 'the finalizer is kept');
    await adminRequest(env.state.hub, 'PATCH', dqrPath(env, 'far'), { metadata: { annotations: { 'rowcast.dev/orphan-unreachable': 'true' } } });
    await dqrGone('far');
    assert.ok((await objectOn(west, 'far-1')) !== undefined, 'what is on the unreachable member is left there');
  } finally {
    if (open) await proxy.close();
    await adminRequest(env.state.hub, 'DELETE', `${ctPath}/via-proxy`);
  }
});

test('deletion never touches a paused ClusterTarget', async () => {
  await putDqr(env, 'paused', { query: 'SELECT id FROM items', template: template('paused'), targets: { clusters: ['member-1', 'member-2'] } });
  await present(east, 'paused-1');
  await present(west, 'paused-1');
  await adminRequest(env.state.hub, 'PATCH', `${ctPath}/member-2`, { spec: { paused: true } });
  try {
    await targetReady('member-2', 'False');
    await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'paused'));
    await gone(east, 'paused-1');
    const waiting = await deleting('paused');
    assert.match(waiting.message, /member-2 is paused/);
    assert.ok((await objectOn(west, 'paused-1')) !== undefined);
    await adminRequest(env.state.hub, 'PATCH', dqrPath(env, 'paused'), { metadata: { annotations: { 'rowcast.dev/orphan-unreachable': 'true' } } });
    await dqrGone('paused');
    const left = await objectOn(west, 'paused-1');
    assert.ok(left !== undefined, 'the paused member was not touched');
    assert.notEqual(left.labels['rowcast.dev/owner'], undefined, 'not even unmarked');
  } finally {
    await adminRequest(env.state.hub, 'PATCH', `${ctPath}/member-2`, { spec: { paused: false } });
  }
});

test('a cluster that leaves a DQR gets its deletionPolicy: Delete under the prune limit, Orphan unmarks; a paused one waits', async () => {
  const both = { clusters: ['member-1', 'member-2'] };
  const eastOnly = { clusters: ['member-1'] };
  await putDqr(env, 'leave-del', { query: 'SELECT id FROM items', template: template('leave-del'), targets: both, pruneLimit: '100%' });
  await putDqr(env, 'leave-orphan', { query: 'SELECT id FROM items', template: template('leave-orphan'), targets: both, deletionPolicy: 'Orphan' });
  await putDqr(env, 'leave-limit', { query: 'SELECT id FROM items', template: template('leave-limit'), targets: both });
  await putDqr(env, 'leave-paused', { query: 'SELECT id FROM items', template: template('leave-paused'), targets: both, pruneLimit: '100%' });
  for (const name of ['leave-del', 'leave-orphan', 'leave-limit', 'leave-paused']) for (const cluster of [east, west]) await present(cluster, `${name}-1`);

  for (const name of ['leave-del', 'leave-orphan', 'leave-limit']) await adminRequest(env.state.hub, 'PATCH', dqrPath(env, name), { spec: { targets: eastOnly } });
  await gone(west, 'leave-del-1');
  await eventually('member-2 leaves the status of leave-del', async () => ((await dqrStatus(env, 'leave-del')).clusters?.map((c) => c.name).join() === 'member-1' ? true : undefined));
  const orphaned = await eventually('leave-orphan-1 unmarked on member-2', async () => {
    const object = await objectOn(west, 'leave-orphan-1');
    return object !== undefined && object.labels['rowcast.dev/owner'] === undefined ? object : undefined;
  });
  assert.equal(orphaned.annotations['rowcast.dev/owner-ref'], undefined);
  const blocked = await eventually('leave-limit blocked', async () => {
    const synced = condition(await dqrStatus(env, 'leave-limit'), 'Synced');
    return synced?.reason === 'PruneBlocked' ? synced : undefined;
  });
  assert.match(blocked.message, /member-2/);
  assert.ok((await objectOn(west, 'leave-limit-1')) !== undefined, 'the prune limit holds a leaving cluster too');
  for (const name of ['leave-del', 'leave-orphan', 'leave-limit']) assert.ok((await objectOn(east, `${name}-1`)) !== undefined);

  await adminRequest(env.state.hub, 'PATCH', `${ctPath}/member-2`, { spec: { paused: true } });
  try {
    await targetReady('member-2', 'False');
    await adminRequest(env.state.hub, 'PATCH', dqrPath(env, 'leave-paused'), { spec: { targets: eastOnly } });
    await eventually('leave-paused synced without member-2', async () => ((await dqrStatus(env, 'leave-paused')).observedGeneration === 2 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const untouched = await objectOn(west, 'leave-paused-1');
    assert.ok(untouched !== undefined && untouched.labels['rowcast.dev/owner'] !== undefined, 'a paused target is left untouched');
    assert.ok((await dqrStatus(env, 'leave-paused')).clusters?.some((c) => c.name === 'member-2'), 'and still remembered');
  } finally {
    await adminRequest(env.state.hub, 'PATCH', `${ctPath}/member-2`, { spec: { paused: false } });
  }
  await gone(west, 'leave-paused-1');
});

test('deletion also reaches the clusters and kinds the ledger records, when status has lost them', async () => {
  await putDqr(env, 'ledgered', { query: 'SELECT id FROM items', template: template('ledgered'), targets: { clusters: ['member-1'] }, ledger: { table: 'finalizer_ledger' } });
  await present(east, 'ledgered-1');
  await eventually('the ledger row', async () => {
    const { rows } = await env.sql<{ n: number }>('SELECT count(*)::int AS n FROM finalizer_ledger WHERE name = $1', ['ledgered-1']);
    return rows[0]?.n === 1 ? true : undefined;
  });
  // Status is not a record to rely on alone (restored from a backup, written by an older version):
  // stop the controller so nothing rewrites it, empty what it says was written, and delete.
  await running?.stop();
  const cleared = await adminRequest(env.state.hub, 'PATCH', `${dqrPath(env, 'ledgered')}/status`, { status: { clusters: [], managedResources: [] } }, 10_000, 'application/merge-patch+json');
  assert.equal(cleared.status, 200, cleared.body);
  await adminRequest(env.state.hub, 'DELETE', dqrPath(env, 'ledgered'));
  running = await startController(env);
  await gone(east, 'ledgered-1');
  await dqrGone('ledgered');
});
