import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { promisify } from 'node:util';
import { parsePatch } from 'diff';
import yaml from 'js-yaml';
import { vetKubeconfig } from '../src/clusters/index.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { expectNoLeaks, openTestEnv, type LeakCount } from './harness/test-env.ts';
import { condition, dqrStatus, eventually, getHub, putDatabaseSecret, putDqr, registerMembers, startController, type RunningController } from './helpers/hub-fixture.ts';

const env = await openTestEnv('cli');
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
const dir = await mkdtemp(join(tmpdir(), 'rowcast-cli-test-'));
let running: RunningController | undefined;
let baseline: LeakCount | undefined;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function rowcast(...args: string[]): Promise<Run> {
  return promisify(execFile)(process.execPath, [main, ...args], { maxBuffer: 16 * 1024 * 1024 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: unknown) => {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    },
  );
}

const template = `apiVersion: v1
kind: ConfigMap
metadata:
  name: cli-{{row.id}}
data:
  email: {{quote row.email}}
  region: {{quote cluster.labels.region}}
`;

async function dqrFile(name: string, spec: Record<string, unknown>): Promise<string> {
  const path = join(dir, `${name}.yaml`);
  await writeFile(
    path,
    yaml.dump({
      apiVersion: 'rowcast.dev/v1alpha1',
      kind: 'DatabaseQueryResource',
      metadata: { name, namespace: env.namespace },
      spec: { database: { connectionSecretRef: { name: 'db' } }, query: 'SELECT id, email FROM people ORDER BY id', template, targets: { clusterSelector: {} }, pollInterval: '1h', ...spec },
    }),
  );
  return path;
}

before(async () => {
  await env.sql('CREATE TABLE people (id int PRIMARY KEY, email text)');
  await env.sql("INSERT INTO people VALUES (1, 'ada@example.com'), (2, 'bob@example.com')");
  await registerMembers(env);
  await putDatabaseSecret(env);
  baseline = await env.leaks();
});

env.defer(async () => {
  await running?.stop();
  if (baseline !== undefined) await expectNoLeaks(env, baseline);
});

test('rowcast render prints each row per cluster, and names a failing row and its field', async () => {
  const file = await dqrFile('rendered', {});
  const ok = await rowcast('render', '-f', file, '--database-url', `${env.db.url}?sslmode=disable`, '--cluster', 'east:region=east', '--cluster', 'west:region=west');
  assert.equal(ok.code, 0, ok.stderr);
  const docs = yaml.loadAll(ok.stdout) as { metadata: { name: string }; data: Record<string, string> }[];
  assert.deepEqual(
    docs.map((d) => `${d.metadata.name}/${d.data['region'] ?? ''}`),
    ['cli-1/east', 'cli-2/east', 'cli-1/west', 'cli-2/west'],
  );
  assert.match(ok.stdout, /# cluster: west, row: 2/);
  assert.ok(!ok.stdout.includes(env.db.password) && !ok.stderr.includes(env.db.password));
  const asJson = await rowcast('render', '-f', file, '--database-url', `${env.db.url}?sslmode=disable`, '--cluster', 'west:region=west', '-o', 'json');
  assert.equal(asJson.code, 0, asJson.stderr);
  const rendered = JSON.parse(asJson.stdout) as { clusters: { name: string; objects: { row: string; manifest: { data: Record<string, string> } }[] }[]; failures: unknown[] };
  assert.deepEqual(
    rendered.clusters.map((c) => [c.name, c.objects.map((o) => `${o.row}/${o.manifest.data['region'] ?? ''}`)]),
    [['west', ['1/west', '2/west']]],
  );
  assert.deepEqual(rendered.failures, []);
  const asYaml = await rowcast('render', '-f', file, '--database-url', `${env.db.url}?sslmode=disable`, '--cluster', 'west:region=west', '-o', 'yaml');
  assert.deepEqual(yaml.load(asYaml.stdout), rendered);

  const broken = await dqrFile('broken', { template: template.replace('{{quote row.email}}', '{{quote row.emial}}') });
  const bad = await rowcast('render', '-f', broken, '--database-url', `${env.db.url}?sslmode=disable`, '--cluster', 'east');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /row "1" on cluster east: row\.emial: .*line 6/);

  const invalid = await dqrFile('invalid', { pollInterval: 'soon' });
  const usage = await rowcast('render', '-f', invalid, '--database-url', env.db.url);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /spec\.pollInterval/);
});

test('rowcast plan shows creates, updates with a diff and prunes, and changes nothing', async () => {
  running = await startController(env);
  const file = await dqrFile('planned', {});
  const fresh = await rowcast('plan', '-f', file, '--kubeconfig', env.hub.info.kubeconfigPath, '--hub-id', `hub-${env.namespace}`, '--detailed-exitcode');
  assert.equal(fresh.code, 3, fresh.stdout + fresh.stderr);
  assert.match(fresh.stdout, new RegExp(`\\+ create ConfigMap ${env.namespace}/cli-1`));

  await putDqr(env, 'planned', { query: 'SELECT id, email FROM people ORDER BY id', template, pollInterval: '1h' });
  await eventually('synced', async () => (condition(await dqrStatus(env, 'planned'), 'Synced')?.status === 'True' ? true : undefined));
  const member = env.members[0];
  assert.ok(member !== undefined);
  const before = await member.core.readNamespacedConfigMap({ name: 'cli-1', namespace: env.namespace });

  await env.sql("UPDATE people SET email = 'ada@new.example' WHERE id = 1");
  await env.sql('INSERT INTO people VALUES (3, $1)', ['cy@example.com']);
  await env.sql('DELETE FROM people WHERE id = 2');
  const plan = await rowcast('plan', '-f', file, '--kubeconfig', env.hub.info.kubeconfigPath, '--hub-id', `hub-${env.namespace}`, '--detailed-exitcode');
  assert.equal(plan.code, 3, plan.stdout + plan.stderr);
  assert.match(plan.stdout, /cluster member-1:/);
  assert.match(plan.stdout, new RegExp(`~ update ConfigMap ${env.namespace}/cli-1`));
  assert.match(plan.stdout, /-\s+email: ada@example\.com/);
  assert.match(plan.stdout, /\+\s+email: ada@new\.example/);
  assert.match(plan.stdout, new RegExp(`\\+ create ConfigMap ${env.namespace}/cli-3`));
  assert.match(plan.stdout, new RegExp(`- prune ConfigMap ${env.namespace}/cli-2`));
  const after = await member.core.readNamespacedConfigMap({ name: 'cli-1', namespace: env.namespace });
  assert.equal(after.metadata?.resourceVersion, before.metadata?.resourceVersion, 'plan changed nothing');
  const stillThere = await member.core.readNamespacedConfigMap({ name: 'cli-2', namespace: env.namespace });
  assert.equal(stillThere.metadata?.name, 'cli-2');

  // A rival DQR holds cli-9 on the members: row 9 appearing here is a conflict that names it.
  await putDqr(env, 'rival', { query: "SELECT 9 AS id, 'rival@example.com' AS email", template, pollInterval: '1h' });
  await eventually('rival synced', async () => (condition(await dqrStatus(env, 'rival'), 'Synced')?.status === 'True' ? true : undefined));
  await env.sql('INSERT INTO people VALUES (9, $1), (10, $2), (4, $3)', ['nine@example.com', 'ten@example.com', 'four@example.com']);
  const json = await rowcast('plan', '-f', file, '--kubeconfig', env.hub.info.kubeconfigPath, '--hub-id', `hub-${env.namespace}`, '-o', 'json');
  assert.equal(json.code, 1, `a conflict is a problem\n${json.stderr}`);
  interface Entry {
    row: string;
    object: string;
    diff: string;
    message: string;
  }
  const report = JSON.parse(json.stdout) as { dqr: string; clusters: { name: string; creates: Entry[]; updates: Entry[]; prunes: Entry[]; conflicts: Entry[]; failures: Entry[] }[] };
  assert.equal(report.dqr, `${env.namespace}/planned`);
  const east = report.clusters.find((c) => c.name === 'member-1');
  assert.ok(east !== undefined);
  assert.deepEqual(east.creates.map((c) => c.row), ['3', '4', '10'], 'rows sorted');
  assert.deepEqual(east.prunes.map((p) => p.row), ['2']);
  assert.deepEqual(east.failures, []);
  const update = east.updates.find((u) => u.row === '1');
  assert.ok(update !== undefined);
  assert.match(update.diff, /^--- live\n\+\+\+ planned\n@@ -\d+,\d+ \+\d+,\d+ @@\n/);
  assert.equal(parsePatch(update.diff).length, 1, 'one well-formed file patch');
  assert.ok(!update.diff.includes('rowcast.dev/hash'), update.diff);
  assert.match(update.diff, /^-  email: ada@example\.com$/m);
  assert.match(update.diff, /^\+  email: ada@new\.example$/m);
  assert.equal(east.conflicts.length, 1, JSON.stringify(east.conflicts));
  assert.equal(east.conflicts[0]?.row, '9');
  assert.match(east.conflicts[0].message, new RegExp(`DatabaseQueryResource ${env.namespace}/rival`));
  const asYaml = await rowcast('plan', '-f', file, '--kubeconfig', env.hub.info.kubeconfigPath, '--hub-id', `hub-${env.namespace}`, '-o', 'yaml');
  assert.deepEqual(yaml.load(asYaml.stdout), report);
  const badFormat = await rowcast('plan', '-f', file, '-o', 'wide');
  assert.equal(badFormat.code, 2);
});

test('rowcast cluster add registers a member from a kubeconfig context, inlining its files; exec is refused', async () => {
  const member = env.members[1];
  assert.ok(member !== undefined);
  await writeFile(join(dir, 'ca.crt'), member.info.caCert);
  await writeFile(join(dir, 'admin.crt'), member.info.adminCert);
  await writeFile(join(dir, 'admin.key'), member.info.adminKey);
  const source = join(dir, 'source-kubeconfig');
  await writeFile(
    source,
    yaml.dump({
      apiVersion: 'v1',
      kind: 'Config',
      // As localhost: the same server URL and CA as the registered member-2 would be refused as a duplicate.
      clusters: [{ name: 'far', cluster: { server: member.info.server.replace('127.0.0.1', 'localhost'), 'certificate-authority': 'ca.crt' } }],
      users: [
        { name: 'far-admin', user: { 'client-certificate': 'admin.crt', 'client-key': 'admin.key' } },
        { name: 'plugin', user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'gke-gcloud-auth-plugin' } } },
      ],
      contexts: [
        { name: 'far', context: { cluster: 'far', user: 'far-admin' } },
        { name: 'cloud', context: { cluster: 'far', user: 'plugin' } },
      ],
      'current-context': 'far',
    }),
  );
  const added = await rowcast('cluster', 'add', 'far-away', '--context', 'far', '--source-kubeconfig', source, '--kubeconfig', env.hub.info.kubeconfigPath, '-n', env.namespace, '--label', 'region=far');
  assert.equal(added.code, 0, added.stderr);
  const target = await getHub(env, `/apis/rowcast.dev/v1alpha1/namespaces/${env.namespace}/clustertargets/far-away`);
  assert.equal((target?.['metadata'] as { labels: Record<string, string> }).labels['region'], 'far');
  const secret = await adminRequest(env.state.hub, 'GET', `/api/v1/namespaces/${env.namespace}/secrets/far-away-kubeconfig`);
  const stored = Buffer.from((JSON.parse(secret.body) as { data: { kubeconfig: string } }).data.kubeconfig, 'base64').toString();
  assert.ok(vetKubeconfig(stored, { allowExecAuth: false, allowFilePaths: false, allowInsecure: false }).ok, 'the stored kubeconfig is self-contained');
  await eventually('the controller connects it', async () => {
    const ct = await getHub(env, `/apis/rowcast.dev/v1alpha1/namespaces/${env.namespace}/clustertargets/far-away`);
    const conditions = (ct?.['status'] as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? [];
    return conditions.some((c) => c.type === 'Ready' && c.status === 'True') ? true : undefined;
  });

  const refused = await rowcast('cluster', 'add', 'cloud', '--context', 'cloud', '--source-kubeconfig', source, '--kubeconfig', env.hub.info.kubeconfigPath, '-n', env.namespace);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /users\[0\]\.user\.exec: exec plugins are refused/);
  assert.equal(await getHub(env, `/apis/rowcast.dev/v1alpha1/namespaces/${env.namespace}/clustertargets/cloud`), undefined);
});
