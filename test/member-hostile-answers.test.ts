import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import yaml from 'js-yaml';
import { API_VERSION, CLUSTER_TARGET } from '../src/api/index.ts';
import { createClusterPki } from './harness/pki.ts';
import { expectNoLeaks, openTestEnv, type LeakCount, type TestCluster } from './harness/test-env.ts';
import { applyHub, configMaps, dqrStatus, eventually, getHub, putDatabaseSecret, putDqr, putSecret, startController, type RunningController } from './helpers/hub-fixture.ts';

// Anyone who may create a ClusterTarget can point it at a server of their
// own. That server answers every call with a body that never ends. The hub
// runs every tenant's syncs, so it must read no more than a bounded amount
// from any one answer. It fails that member's calls with a clear reason and
// goes on with the other members.
const env = await openTestEnv('member-hostile-answers');
const [east] = env.members as [TestCluster, TestCluster];
let running: RunningController | undefined;
let baseline: LeakCount | undefined;
let server: Server | undefined;
let pkiDir = '';
/** 'calls': /version and /readyz answer as an apiserver's do, every other call is endless; 'all': the probe's too. */
let endless: 'calls' | 'all' = 'calls';
/** The most bytes the hub took of one answer before it hung up. */
let mostTaken = 0;
let endlessAnswers = 0;
const MiB = 1024 * 1024;

async function startHostileMember(): Promise<string> {
  pkiDir = await mkdtemp(join(tmpdir(), 'rowcast-hostile-'));
  const pki = await createClusterPki(pkiDir, 'hostile');
  const chunk = Buffer.from(`"${'x'.repeat(64 * 1024 - 3)}",`);
  server = createServer({ cert: pki.servingCert, key: pki.servingKey }, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://hostile').pathname;
    if (endless === 'calls' && path === '/version') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ major: '1', minor: '34', gitVersion: 'v1.34.0' }));
      return;
    }
    if (endless === 'calls' && path === '/readyz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
      return;
    }
    endlessAnswers++;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('{"kind":"APIResourceList","items":[');
    let sent = 0;
    const pump = (): void => {
      while (!res.destroyed && sent < 4096 * MiB) {
        sent += chunk.length;
        if (!res.write(chunk)) return;
      }
    };
    res.on('drain', pump);
    res.on('close', () => {
      // What the hub's end took: written, less what is still queued on this side.
      mostTaken = Math.max(mostTaken, (res.socket?.bytesWritten ?? sent) - (res.socket?.writableLength ?? 0));
    });
    pump();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return yaml.dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'hostile', cluster: { server: `https://127.0.0.1:${port}`, 'certificate-authority-data': Buffer.from(pki.caCert).toString('base64') } }],
    users: [{ name: 'anonymous', user: {} }],
    contexts: [{ name: 'hostile', context: { cluster: 'hostile', user: 'anonymous' } }],
    'current-context': 'hostile',
  });
}

async function putTarget(name: string, kubeconfig: string): Promise<void> {
  await putSecret(env, `${name}-kubeconfig`, { kubeconfig });
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name },
    spec: { kubeconfigSecretRef: { name: `${name}-kubeconfig`, key: 'kubeconfig' } },
  });
}

async function targetCondition(name: string, type: string): Promise<{ status: string; message: string } | undefined> {
  const target = await getHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}/${name}`);
  return ((target?.['status'] as { conditions?: { type: string; status: string; message: string }[] } | undefined)?.conditions ?? []).find((c) => c.type === type);
}

before(async () => {
  await putTarget('east', east.info.kubeconfig);
  await putTarget('hostile', await startHostileMember());
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE rows3 (id int PRIMARY KEY)');
  await env.sql('INSERT INTO rows3 VALUES (1), (2), (3)');
  baseline = await env.leaks();
  running = await startController(env);
});

env.defer(async () => {
  await running?.stop();
  server?.closeAllConnections();
  server?.close();
  await rm(pkiDir, { recursive: true, force: true });
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('a member whose answers never end is read no further than the size limit; its calls fail saying so and the other member syncs', async (t) => {
  await putDqr(env, 'spread', {
    query: 'SELECT id FROM rows3 ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: spread-{{row.id}}\n',
    targets: { clusters: ['east', 'hostile'] },
  });
  await eventually('the healthy member synced', async () => ((await configMaps(east, env.namespace)).size === 3 ? true : undefined), 60_000);
  const failed = await eventually(
    "the hostile member's failure in the DQR status",
    async () => (await dqrStatus(env, 'spread')).clusters?.find((c) => c.name === 'hostile' && c.lastError !== undefined)?.lastError,
    60_000,
  );
  t.diagnostic(`hostile member's lastError: ${failed}; most taken so far: ${(mostTaken / MiB).toFixed(1)} MiB`);
  assert.match(failed, /over 16 MiB/);
  assert.ok(endlessAnswers > 0, 'the hub called the hostile member beyond its probe');

  endless = 'all';
  const reachable = await eventually(
    'the probe fails on the size limit',
    async () => {
      const found = await targetCondition('hostile', 'Reachable');
      return found?.status === 'False' && /over 16 MiB/.test(found.message) ? found : undefined;
    },
    60_000,
  );
  t.diagnostic(`hostile ClusterTarget Reachable=False: ${reachable.message}`);
  t.diagnostic(`most bytes the hub took of one answer: ${(mostTaken / MiB).toFixed(1)} MiB over ${endlessAnswers} endless answers`);
  // The limit, plus what the sockets' buffers hold on both sides of loopback.
  assert.ok(mostTaken < 16 * MiB + 16 * MiB, `the hub took ${(mostTaken / MiB).toFixed(1)} MiB of one answer`);
  assert.equal((await targetCondition('east', 'Ready'))?.status, 'True');
});
