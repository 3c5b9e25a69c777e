// npm run demo: a hub, two member clusters and PostgreSQL on loopback, the
// sample tables and DatabaseQueryResources from examples/, and `rowcast controller` as its own process.
// Ctrl-C stops everything.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import yaml from 'js-yaml';
import pg from 'pg';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE } from '../src/api/index.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { adminRequest, type ClusterCredentials } from '../test/harness/kube-apiserver.ts';
import { freePort, waitFor } from '../test/harness/ports.ts';

const root = join(import.meta.dirname, '..');
const namespace = 'rowcast-demo';
const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

async function create(cluster: ClusterCredentials, path: string, body: unknown): Promise<void> {
  const response = await adminRequest(cluster, 'POST', path, body);
  if (response.status >= 300 && response.status !== 409) throw new Error(`POST ${path}: HTTP ${response.status}: ${response.body}`);
}

async function example(file: string): Promise<Record<string, unknown>> {
  return yaml.load(await readFile(join(root, 'examples', file), 'utf8')) as Record<string, unknown>;
}

say('starting etcd, a hub and two member kube-apiservers, and PostgreSQL (the first run builds them: minutes)...');
const plane = await startControlPlane({ members: 2, log: (line) => say(`  ${line}`) });
const { hub, members, postgres, binaries, runDir } = plane.state;

const admin = new pg.Client({ host: postgres.host, port: postgres.port, user: postgres.user, password: postgres.password, database: 'postgres' });
await admin.connect();
await admin.query("CREATE ROLE app LOGIN PASSWORD 'demo-password'");
await admin.query('CREATE DATABASE app OWNER app');
await admin.end();
const app = new pg.Client({ host: postgres.host, port: postgres.port, user: 'app', password: 'demo-password', database: 'app' });
await app.connect();
for (const file of ['user-configmaps.sql', 'tenant-deployments.sql']) await app.query(await readFile(join(root, 'examples', 'sql', file), 'utf8'));
await app.end();

await create(hub, '/api/v1/namespaces', { metadata: { name: namespace } });
const regions = ['east', 'west'];
for (const [i, member] of members.entries()) {
  for (const ns of ['profiles', 'tenants']) await create(member, '/api/v1/namespaces', { metadata: { name: ns } });
  await create(hub, `/api/v1/namespaces/${namespace}/secrets`, {
    metadata: { name: `${member.name}-kubeconfig`, labels: { 'rowcast.dev/watch': 'true' } },
    stringData: { kubeconfig: member.kubeconfig },
  });
  await create(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${CLUSTER_TARGET.plural}`, {
    apiVersion: API_VERSION,
    kind: CLUSTER_TARGET.kind,
    metadata: { name: member.name, labels: { environment: 'production', region: regions[i] ?? 'other', tier: i === 0 ? 'large' : 'small' } },
    spec: { kubeconfigSecretRef: { name: `${member.name}-kubeconfig`, key: 'kubeconfig' } },
  });
}
await create(hub, `/api/v1/namespaces/${namespace}/secrets`, {
  metadata: { name: 'app-db', labels: { 'rowcast.dev/watch': 'true' } },
  stringData: { host: postgres.host, port: String(postgres.port), dbname: 'app', username: 'app', password: 'demo-password', sslmode: 'disable' },
});
const users = await example('user-configmaps.yaml');
const tenants = await example('tenant-deployments.yaml');
// The examples target clusters named in clusters/; the demo's are member-1 and member-2, and it polls faster.
(users['spec'] as Record<string, unknown>)['targets'] = { clusters: members.map((m) => m.name) };
for (const dqr of [users, tenants]) {
  (dqr['spec'] as Record<string, unknown>)['pollInterval'] = '5s';
  await create(hub, `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}`, dqr);
}

// The real `rowcast controller` process, as in production: OTEL_* variables, leader election and its metrics behave as they would there.
const logFile = join(runDir, 'controller.log');
const log = createWriteStream(logFile, { flags: 'a' });
const port = await freePort();
const controller = spawn(process.execPath, [join(root, 'src', 'main.ts'), 'controller', '--kubeconfig', hub.kubeconfigPath, '--namespace', namespace, '--metrics-bind-address', `127.0.0.1:${port}`], {
  stdio: ['ignore', 'pipe', 'pipe'],
  env: process.env,
});
controller.stdout.pipe(log);
controller.stderr.pipe(log);
const exited = once(controller, 'exit');
await waitFor(`the controller's /readyz (log: ${logFile})`, async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok === true, 120_000, 200, () =>
  controller.exitCode === null ? undefined : `it exited with ${String(controller.exitCode)}; see ${logFile}`,
);

const [east, west] = members;
// Short commands: the long paths are said once, as variables for the reader's shell.
const kubectl = (cluster: { name: string }): string => (cluster === hub ? 'kubectl' : `kubectl --kubeconfig $${cluster.name.toUpperCase().replace(/-/g, '_')}`);
say(`
Rowcast demo is running. Hub ${hub.server}; members ${members.map((m) => `${m.name} ${m.server}`).join(', ')}.

In another shell:
  alias kubectl=${binaries.kubectl}
  export KUBECONFIG=${hub.kubeconfigPath}
${members.map((m) => `  export ${m.name.toUpperCase().replace(/-/g, '_')}=${m.kubeconfigPath}`).join('\n')}

Look at:
  ${kubectl(hub)} -n ${namespace} get dqr,ct
  ${kubectl(hub)} -n ${namespace} get dqr user-configmaps -o yaml      # status, conditions, per-cluster counts
  ${kubectl(east ?? hub)} -n profiles get configmaps -L example.com/plan
  ${kubectl(west ?? hub)} -n tenants get deployments,services            # replicas differ per cluster (tier label)
  tail -f ${logFile}                                                     # the controller's JSON log
  curl -s http://127.0.0.1:${port}/metrics | grep -E '^(rowcast_|leader_election)'   # its Prometheus metrics

Change a row and watch it reach both members within the poll interval (5s):
  PGPASSWORD=demo-password psql -h ${postgres.host} -p ${postgres.port} -U app app \\
    -c "INSERT INTO app_users (username, email, plan) VALUES ('hopper', 'grace.h@example.com', 'team')"

Retire a user and see the prune guard: the example allows pruning 20% of its objects per sync,
so the DQR reports PruneBlocked and publishes status.pendingPrune until a person confirms
that prune by its id (the sync runs at once, without waiting for a row to change):
  PGPASSWORD=demo-password psql -h ${postgres.host} -p ${postgres.port} -U app app -c "UPDATE app_users SET active = false WHERE username = 'linus'"
  ${kubectl(hub)} -n ${namespace} get dqr user-configmaps -o jsonpath='{.status.pendingPrune}'
  ${kubectl(hub)} -n ${namespace} annotate dqr user-configmaps --overwrite \\
    rowcast.dev/confirm-prune="$(${kubectl(hub)} -n ${namespace} get dqr user-configmaps -o jsonpath='{.status.pendingPrune.id}')"

Ctrl-C stops everything.`);

await new Promise<void>((resolve) => {
  process.once('SIGINT', resolve);
  process.once('SIGTERM', resolve);
});
say('stopping...');
if (controller.exitCode === null) controller.kill('SIGTERM');
await exited;
log.end();
await plane.stop();
