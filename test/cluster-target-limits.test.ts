import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { before, test } from 'node:test';
import yaml from 'js-yaml';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE } from '../src/api/index.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { freePort, waitFor } from './harness/ports.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { applyHub, configMaps, dqrStatus, eventually, getHub, putDatabaseSecret, putDqr, putSecret } from './helpers/hub-fixture.ts';
import { kubeconfigWithAliasBomb } from './helpers/hostile-yaml.ts';

// Hostile ClusterTargets against a real controller process with the chart's
// heap cap: a bad kubeconfig must fail its own target, never the hub.
const env = await openTestEnv('cluster-target-limits');
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
const member = env.members[0];
assert.ok(member !== undefined);
let baseline: LeakCount | undefined;

interface Controller {
  child: ChildProcess;
  output: string[];
}

async function startProcess(extra: string[] = [], extraEnv: Record<string, string> = {}): Promise<Controller> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['--max-old-space-size=384', main, 'controller', '--kubeconfig', env.hub.info.kubeconfigPath, '--namespace', env.namespace, '--metrics-bind-address', `127.0.0.1:${port}`, '--probe-interval', '2s', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...extraEnv } },
  );
  const output: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  await waitFor('the metrics port', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 20_000, 100);
  return { child, output };
}

function running(c: Controller): boolean {
  return c.child.exitCode === null && c.child.signalCode === null;
}

/** SIGTERM, then SIGKILL: a controller stuck expanding a bomb never runs its signal handler. */
async function stopProcess(c: Controller): Promise<void> {
  if (!running(c)) return;
  const exited = once(c.child, 'exit');
  c.child.kill('SIGTERM');
  const timer = setTimeout(() => c.child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

function alive(c: Controller): void {
  if (!running(c)) {
    assert.fail(`the controller exited (${c.child.exitCode ?? c.child.signalCode ?? ''}):\n${c.output.join('').slice(-2000)}`);
  }
}

type Condition = { type: string; status: string; reason: string; message: string };

async function targetCondition(name: string, type: string): Promise<Condition | undefined> {
  const target = await getHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}/${name}`);
  return ((target?.['status'] as { conditions?: Condition[] } | undefined)?.conditions ?? []).find((c) => c.type === type);
}

async function putTarget(name: string, secret: string, spec: Record<string, unknown> = {}): Promise<void> {
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name },
    spec: { kubeconfigSecretRef: { name: secret, key: 'kubeconfig' }, ...spec },
  });
}

before(async () => {
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE things (id int PRIMARY KEY)');
  await env.sql('INSERT INTO things VALUES (1)');
  await putSecret(env, 'good-kubeconfig', { kubeconfig: member.info.kubeconfig });
  await putTarget('good', 'good-kubeconfig');
  baseline = await env.leaks();
});

env.defer(async () => {
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('the apiserver refuses a 10 MB Secret: 1 MiB of data is the most a kubeconfig Secret can hold', async () => {
  const body = (size: number): Record<string, unknown> => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `size-${size}` },
    data: { kubeconfig: Buffer.alloc(size, 'x').toString('base64') },
  });
  const tooLarge = await adminRequest(env.state.hub, 'POST', `/api/v1/namespaces/${env.namespace}/secrets`, body(10 * 1024 * 1024));
  assert.ok(tooLarge.status === 413 || tooLarge.status === 422, `HTTP ${tooLarge.status}`);
  const justOver = await adminRequest(env.state.hub, 'POST', `/api/v1/namespaces/${env.namespace}/secrets`, body(1024 * 1024 + 1));
  assert.equal(justOver.status, 422);
  const largest = await adminRequest(env.state.hub, 'POST', `/api/v1/namespaces/${env.namespace}/secrets`, body(1024 * 1024));
  assert.equal(largest.status, 201);
  await adminRequest(env.state.hub, 'DELETE', `/api/v1/namespaces/${env.namespace}/secrets/size-${1024 * 1024}`);
});

test('an alias bomb, a deeply nested and a 1 MiB kubeconfig fail only their own ClusterTarget; the controller stays up and the good target syncs', async () => {
  const c = await startProcess();
  try {
    await putDqr(env, 'things', { query: 'SELECT id FROM things ORDER BY id', template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: thing-{{row.id}}\n' });
    await eventually('the good target syncs', async () => ((await configMaps(member, env.namespace)).has('thing-1') ? true : undefined));

    const bomb = kubeconfigWithAliasBomb(member.info.kubeconfig);
    assert.ok(bomb.length < 8192, `the bomb is ${bomb.length} bytes`);
    const deep = `${member.info.kubeconfig}\nextensions: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`;
    const padding = 1024 * 1024 - member.info.kubeconfig.length - 20;
    const huge = `${member.info.kubeconfig}\nextensions: ["${'x'.repeat(padding)}"]\n`;
    assert.ok(Buffer.byteLength(huge) <= 1024 * 1024);
    const hostile = { bomb, deep, huge };
    for (const [name, kubeconfig] of Object.entries(hostile)) {
      await putSecret(env, `${name}-kubeconfig`, { kubeconfig });
      await putTarget(name, `${name}-kubeconfig`);
    }
    const expected = { bomb: /aliases expand it past/, deep: /nested deeper than the limit of 32/, huge: /more than the limit of 262144/ };
    for (const [name, pattern] of Object.entries(expected)) {
      const ready = await eventually(`${name} refused`, async () => {
        alive(c);
        const condition = await targetCondition(name, 'Ready');
        return condition?.reason === 'KubeconfigTooLarge' ? condition : undefined;
      });
      assert.equal(ready.status, 'False');
      assert.match(ready.message, new RegExp(`^kubeconfig in Secret ${env.namespace}/${name}-kubeconfig key kubeconfig: YAML refused: `));
      assert.match(ready.message, pattern);
    }
    // The controller keeps running and keeps syncing through the good target.
    await env.sql('INSERT INTO things VALUES (2)');
    await eventually('a new row reaches the good target', async () => {
      alive(c);
      return (await configMaps(member, env.namespace)).has('thing-2') ? true : undefined;
    });
    assert.equal((await targetCondition('good', 'Ready'))?.status, 'True');
    assert.equal((await dqrStatus(env, 'things')).rowCount, 2);
    alive(c);
  } finally {
    // The DQR's finalizer needs the controller: delete it while one runs.
    const dqr = `/apis/${API_VERSION}/namespaces/${env.namespace}/${DATABASE_QUERY_RESOURCE.plural}/things`;
    await adminRequest(env.state.hub, 'DELETE', dqr);
    if (running(c)) await eventually('the DQR is gone', async () => ((await getHub(env, dqr)) === undefined ? true : undefined)).catch(() => undefined);
    await stopProcess(c);
    for (const name of ['bomb', 'deep', 'huge']) await adminRequest(env.state.hub, 'DELETE', `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}/${name}`);
  }
});

test('inCluster targets outside the controller namespace and insecure kubeconfigs are refused until a flag allows them', async () => {
  const secure = yaml.load(member.info.kubeconfig) as { clusters: { cluster: Record<string, unknown> }[] };
  for (const entry of secure.clusters) {
    Reflect.deleteProperty(entry.cluster, 'certificate-authority-data');
    entry.cluster['insecure-skip-tls-verify'] = true;
  }
  await putSecret(env, 'insecure-kubeconfig', { kubeconfig: yaml.dump(secure) });
  await putTarget('insecure', 'insecure-kubeconfig');
  await applyHub(env, `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'hub-itself' },
    spec: { inCluster: true, allowedNamespaces: [env.namespace] },
  });
  const refusedIn = await applyHubStatus(`/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: 'hub-everywhere' },
    spec: { inCluster: true },
  });
  assert.equal(refusedIn.status, 422, 'inCluster without allowedNamespaces is refused by the apiserver');
  assert.match(refusedIn.body, /spec\.allowedNamespaces/);

  // The controller's own namespace is another one: the test's is not privileged.
  const strict = await startProcess([], { POD_NAMESPACE: 'rowcast-system' });
  try {
    const inCluster = await eventually('inCluster refused', async () => {
      alive(strict);
      const condition = await targetCondition('hub-itself', 'Ready');
      return condition?.reason === 'InClusterRefused' ? condition : undefined;
    });
    assert.equal(inCluster.status, 'False');
    assert.match(inCluster.message, /^spec\.inCluster: true is refused in namespace \S+: only the controller's namespace rowcast-system may hold inCluster targets unless --allow-in-cluster-namespaces names it$/);
    const insecure = await eventually('insecure refused', async () => {
      const condition = await targetCondition('insecure', 'Ready');
      return condition?.reason === 'KubeconfigRefused' ? condition : undefined;
    });
    assert.equal(insecure.status, 'False');
    assert.match(insecure.message, /clusters\[0\]\.cluster\.insecure-skip-tls-verify: .*--allow-insecure-kubeconfigs/);
    assert.match(insecure.message, new RegExp(`Secret ${env.namespace}/insecure-kubeconfig key kubeconfig`));
  } finally {
    await stopProcess(strict);
  }

  const allowing = await startProcess(['--allow-in-cluster-namespaces', env.namespace, '--allow-insecure-kubeconfigs'], { POD_NAMESPACE: 'rowcast-system' });
  try {
    for (const name of ['hub-itself', 'insecure']) {
      await eventually(`${name} ready once allowed`, async () => {
        alive(allowing);
        return (await targetCondition(name, 'Ready'))?.status === 'True' ? true : undefined;
      });
    }
  } finally {
    await stopProcess(allowing);
    for (const name of ['hub-itself', 'insecure']) await adminRequest(env.state.hub, 'DELETE', `/apis/${API_VERSION}/namespaces/${env.namespace}/${CLUSTER_TARGET.plural}/${name}`);
  }
});

async function applyHubStatus(path: string, body: Record<string, unknown>): Promise<{ status: number; body: string }> {
  return adminRequest(env.state.hub, 'POST', path, body);
}
