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
import { configMaps, dqrStatus, eventually, getHub, putClusterTarget, putDatabaseSecret, putDqr, startController, type RunningController } from './helpers/hub-fixture.ts';

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
/**
 * 'calls': /version and /readyz answer as an apiserver's do, every other call is endless; 'all': the probe's too.
 * 'pages': discovery answers, and a list of ConfigMaps is 1 MiB pages with a continue token, without end.
 * 'flood': the list is empty, and its watch streams new objects of 64 KiB each, without end.
 */
let endless: 'calls' | 'all' | 'pages' | 'flood' = 'calls';
/** The most bytes one list (a chain of continue tokens) or one watch sent before the hub stopped asking. */
let longestList = 0;
let longestWatch = 0;
let lists = 0;
let watches = 0;
const CACHE_LIMIT_MIB = 8;
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
    if (endless === 'pages' || endless === 'flood') {
      kubernetesLike(req.url ?? '/', res);
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

const PAD = 'p'.repeat(16 * 1024);
const json = (res: import('node:http').ServerResponse, body: unknown): void => {
  res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
};

/** Just enough of an apiserver for a sync to list and watch ConfigMaps; then pages or events without end. */
function kubernetesLike(url: string, res: import('node:http').ServerResponse): void {
  const { pathname, searchParams } = new URL(url, 'https://hostile');
  if (pathname === '/version') {
    json(res, { major: '1', minor: '34', gitVersion: 'v1.34.0' });
    return;
  }
  if (pathname === '/readyz') {
    res.writeHead(200).end('ok');
    return;
  }
  if (pathname === '/api/v1') {
    const configmaps = { name: 'configmaps', singularName: 'configmap', namespaced: true, kind: 'ConfigMap', verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'] };
    json(res, { kind: 'APIResourceList', groupVersion: 'v1', resources: [configmaps] });
    return;
  }
  const item = (name: string, resourceVersion: number): Record<string, unknown> => ({
    apiVersion: 'meta.k8s.io/v1',
    kind: 'PartialObjectMetadata',
    metadata: { name, namespace: env.namespace, uid: name, resourceVersion: String(resourceVersion), labels: { 'rowcast.dev/owner': 'x' }, annotations: { pad: PAD } },
  });
  if (pathname.endsWith('/configmaps') && searchParams.get('watch') !== 'true') {
    if (endless === 'flood') {
      json(res, { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata: { resourceVersion: '1' }, items: [] });
      return;
    }
    const page = Number(/^next-(\d+)$/.exec(searchParams.get('continue') ?? '')?.[1] ?? '0');
    if (page === 0) lists++;
    const items = Array.from({ length: 64 }, (_, i) => item(`page-${page}-${i}`, 1));
    const body = JSON.stringify({ kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata: { resourceVersion: '1', continue: `next-${page + 1}` }, items });
    longestList = Math.max(longestList, (page + 1) * body.length);
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
    return;
  }
  if (pathname.endsWith('/configmaps') && endless === 'flood') {
    watches++;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    let n = 0;
    let sent = 0;
    const pump = (): void => {
      while (!res.destroyed && sent < 256 * MiB) {
        const line = `${JSON.stringify({ type: 'ADDED', object: item(`flood-${n}`, n + 2) })}\n`;
        n++;
        sent += line.length;
        if (!res.write(line)) return;
      }
    };
    res.on('drain', pump);
    res.on('close', () => {
      longestWatch = Math.max(longestWatch, (res.socket?.bytesWritten ?? sent) - (res.socket?.writableLength ?? 0));
    });
    pump();
    return;
  }
  res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 }));
}

async function targetCondition(name: string, type: string): Promise<{ status: string; message: string } | undefined> {
  const target = await getHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}/${name}`);
  return ((target?.['status'] as { conditions?: { type: string; status: string; message: string }[] } | undefined)?.conditions ?? []).find((c) => c.type === type);
}

before(async () => {
  await putClusterTarget(env, 'east', east.info.kubeconfig);
  await putClusterTarget(env, 'hostile', await startHostileMember());
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE rows3 (id int PRIMARY KEY)');
  await env.sql('INSERT INTO rows3 VALUES (1), (2), (3)');
  baseline = await env.leaks();
  running = await startController(env, ['--member-cache-limit', String(CACHE_LIMIT_MIB)]);
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

test('a member that lists pages or streams objects without end is held no further than --member-cache-limit; the other member syncs on', async (t) => {
  endless = 'pages';
  await env.sql('INSERT INTO rows3 VALUES (4)');
  const failed = await eventually(
    "the hostile member's endless list in the DQR status",
    async () => {
      const found = (await dqrStatus(env, 'spread')).clusters?.find((c) => c.name === 'hostile')?.lastError;
      return found !== undefined && found.includes('--member-cache-limit') ? found : undefined;
    },
    60_000,
  );
  t.diagnostic(`hostile member's lastError: ${failed}`);
  await eventually('the healthy member took the new row', async () => ((await configMaps(east, env.namespace)).has('spread-4') ? true : undefined), 60_000);
  t.diagnostic(`the longest list the hub read: ${(longestList / MiB).toFixed(1)} MiB over ${lists} lists`);
  // The limit, and the page that passed it.
  assert.ok(longestList > 0 && longestList <= (CACHE_LIMIT_MIB + 2) * MiB, `the hub read ${(longestList / MiB).toFixed(1)} MiB of one list`);

  endless = 'flood';
  await eventually('a watch of the flood', () => Promise.resolve(watches > 0 ? true : undefined), 60_000);
  assert.ok(running !== undefined);
  const logs = running.logs;
  await eventually('the cache stops taking the flood', () => Promise.resolve(logs.some((l) => l.includes('informer failed') && l.includes('a watch event of') && l.includes('--member-cache-limit')) ? true : undefined), 60_000);
  // Every watch of the flood has ended by now, or waits on a backoff.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  t.diagnostic(`the most the hub took of one watch: ${(longestWatch / MiB).toFixed(1)} MiB over ${watches} watches`);
  assert.ok(longestWatch <= (CACHE_LIMIT_MIB + 16) * MiB, `the hub took ${(longestWatch / MiB).toFixed(1)} MiB of one watch`);
  await env.sql('INSERT INTO rows3 VALUES (5)');
  await eventually('the healthy member still takes new rows', async () => ((await configMaps(east, env.namespace)).has('spread-5') ? true : undefined), 60_000);
});
