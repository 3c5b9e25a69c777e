import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { parseControllerOptions } from '../src/config/index.ts';
import { hubPolicyRules } from '../src/hub/index.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { freePort } from './harness/ports.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';
import { condition, configMaps, dqrStatus, eventually, getHub, putDatabaseSecret, putDqr, registerMembers } from './helpers/hub-fixture.ts';

const env = await openTestEnv('chart');
failOnLeaks(env);

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..');
const chart = join(repo, 'charts', 'rowcast');
const work = await mkdtemp(join(tmpdir(), 'rowcast-chart-test-'));
env.defer(() => rm(work, { recursive: true, force: true }));

/** The release's own namespace on the hub; the controller watches env.namespace. */
const releaseNamespace = `${env.namespace}-sys`;
await env.hub.core.createNamespace({ body: { metadata: { name: releaseNamespace } } });
env.defer(async () => {
  await env.hub.core.deleteNamespace({ name: releaseNamespace });
});
const suffix = randomBytes(2).toString('hex');

// ---- helm and kubectl ----------------------------------------------------

/** helm with its home folders in the test's temp dir: nothing read from or written to ~. */
async function helm(args: string[]): Promise<string> {
  const home = join(work, 'helm');
  const { stdout } = await run(env.state.binaries.helm, args, {
    // HOME too: helm keeps its discovery cache in $HOME/.kube/cache.
    env: { PATH: process.env['PATH'] ?? '', HOME: home, HELM_CACHE_HOME: `${home}/cache`, HELM_CONFIG_HOME: `${home}/config`, HELM_DATA_HOME: `${home}/data` },
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

async function kubectl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(env.state.binaries.kubectl, ['--kubeconfig', env.state.hub.kubeconfigPath, `--cache-dir=${work}/kube-cache`, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(input ?? '');
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code: code ?? -1, stdout, stderr };
}

let valuesFiles = 0;
async function valuesFile(values: Record<string, unknown>): Promise<string> {
  const path = join(work, `values-${String(++valuesFiles)}.yaml`);
  await writeFile(path, yaml.dump(values));
  return path;
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/** Where a user pushed `npm run image`'s archive: the chart refuses its own placeholder repository. */
const image = { repository: 'registry.test/team/rowcast' };

async function render(release: string, namespace: string, values: Record<string, unknown> = {}): Promise<K8sObject[]> {
  const out = await helm(['template', release, chart, '--namespace', namespace, '-f', await valuesFile({ image, ...values })]);
  return (yaml.loadAll(out) as (K8sObject | null)[]).filter((o): o is K8sObject => o !== null);
}

function only(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(found.length, 1, `one ${kind}${name === undefined ? '' : ` ${name}`}, got ${String(found.length)}`);
  return found[0] as K8sObject;
}

// ---- the Deployment's pod --------------------------------------------------

interface Container {
  args: string[];
  env: { name: string; value?: string; valueFrom?: unknown }[];
  image: string;
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: Record<string, unknown>;
}
interface DeploymentSpec {
  replicas: number;
  strategy: { type: string };
  template: {
    metadata: { labels: Record<string, string> };
    spec: { serviceAccountName: string; terminationGracePeriodSeconds: number; securityContext: Record<string, unknown>; containers: Container[] };
  };
}

function deployment(objects: K8sObject[]): { spec: DeploymentSpec; container: Container } {
  const spec = only(objects, 'Deployment')['spec'] as DeploymentSpec;
  const [container, ...more] = spec.template.spec.containers;
  assert.ok(container !== undefined && more.length === 0, 'one container');
  return { spec, container };
}

/** The controller's own parser must accept every flag the chart renders. */
function controllerOptions(container: Container): Extract<ReturnType<typeof parseControllerOptions>, { ok: true }>['options'] {
  assert.equal(container.args[0], 'controller');
  const envVars = Object.fromEntries(container.env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
  const parsed = parseControllerOptions(container.args.slice(1), envVars);
  assert.ok(parsed.ok, `rowcast controller rejects the rendered args ${JSON.stringify(container.args)}: ${parsed.ok || parsed.help ? '' : parsed.error}`);
  return parsed.options;
}

function assertHardened(spec: DeploymentSpec, container: Container): void {
  const pod = spec.template.spec.securityContext;
  assert.equal(pod['runAsNonRoot'], true);
  assert.equal(pod['runAsUser'], 65532);
  assert.deepEqual(pod['seccompProfile'], { type: 'RuntimeDefault' });
  const c = container.securityContext;
  assert.equal(c['allowPrivilegeEscalation'], false);
  assert.equal(c['readOnlyRootFilesystem'], true);
  assert.equal(c['privileged'], false);
  assert.deepEqual(c['capabilities'], { drop: ['ALL'] });
  for (const kind of ['requests', 'limits'] as const) {
    assert.ok(container.resources[kind]?.['cpu'] !== undefined && container.resources[kind]['memory'] !== undefined, `resources.${kind} has cpu and memory`);
  }
  const metricsPort = container.ports.find((p) => p.name === 'metrics');
  assert.ok(metricsPort !== undefined);
  assert.deepEqual(container.livenessProbe.httpGet, { path: '/healthz', port: 'metrics' });
  assert.deepEqual(container.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' });
  assert.ok(container.args.includes(`--metrics-bind-address=:${String(metricsPort.containerPort)}`), 'the probes hit the port the controller listens on');
}

// ---- RBAC as sets of single grants -----------------------------------------

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}

/** Every (group, resource, name, verb) a list of rules grants: comparison ignores how the rules are grouped and ordered. */
function grants(rules: readonly Rule[]): string[] {
  const out = new Set<string>();
  for (const r of rules) {
    for (const g of r.apiGroups ?? []) for (const res of r.resources ?? []) for (const n of r.resourceNames ?? ['*']) for (const v of r.verbs) out.add(`${g}|${res}|${n}|${v}`);
  }
  return [...out].sort();
}

const leaseGrants = grants(hubPolicyRules.filter((r) => r.resources.includes('leases')));
const namespaceGrants = grants(hubPolicyRules.filter((r) => r.resources.includes('namespaces')));
const without = (all: string[], minus: string[]): string[] => all.filter((g) => !minus.includes(g));

/** Every binding names the chart's ServiceAccount and a role the chart renders; returns all grants by where they apply. */
function rbacOf(objects: K8sObject[], serviceAccount: { name: string; namespace: string }): { clusterWide: string[]; byNamespace: Map<string, string[]> } {
  const roles = new Map(objects.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole').map((o) => [`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]));
  const clusterWide: string[] = [];
  const byNamespace = new Map<string, string[]>();
  const bindings = objects.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding');
  assert.equal(bindings.length, roles.size, 'one binding per role');
  for (const binding of bindings) {
    const roleRef = binding['roleRef'] as { kind: string; name: string };
    const namespace = binding.kind === 'RoleBinding' ? (binding.metadata.namespace ?? '') : '';
    const role = roles.get(`${roleRef.kind}/${roleRef.kind === 'Role' ? namespace : ''}/${roleRef.name}`);
    assert.ok(role !== undefined, `${binding.kind} ${binding.metadata.name} binds a role the chart renders`);
    assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', ...serviceAccount }]);
    const granted = grants(role['rules'] as Rule[]);
    if (binding.kind === 'ClusterRoleBinding') clusterWide.push(...granted);
    else byNamespace.set(namespace, [...(byNamespace.get(namespace) ?? []), ...granted].sort());
  }
  return { clusterWide: clusterWide.sort(), byNamespace };
}

const nonDefault = {
  watchNamespace: env.namespace,
  replicas: 2,
  controller: { logLevel: 'debug', workers: 2, probeInterval: '2s', requestTimeout: '5s', batchSize: 50, shutdownGraceSeconds: 20 },
  metrics: { port: 9090, serviceMonitor: { enabled: true, labels: { release: 'prometheus' } }, prometheusRule: { enabled: true, groups: [{ name: 'rowcast', rules: [] }] } },
  extraArgs: ['--leader-election-id=rowcast-chart-test'],
  maxOldSpaceSizeMiB: 200,
  maxSemiSpaceSizeMiB: 4,
  image: { repository: 'registry.example.com/rowcast', digest: `sha256:${'a'.repeat(64)}` },
};

// ---- tests -----------------------------------------------------------------

test('the chart carries the repository CRDs unchanged', async () => {
  const wanted = (await readdir(join(repo, 'crds'))).filter((f) => f.endsWith('.yaml')).sort();
  assert.deepEqual((await readdir(join(chart, 'crds'))).sort(), wanted);
  for (const file of wanted) {
    assert.equal(await readFile(join(chart, 'crds', file), 'utf8'), await readFile(join(repo, 'crds', file), 'utf8'), `charts/rowcast/crds/${file} differs from crds/${file}: copy it again`);
  }
});

test('with prometheusRule on, the chart ships exactly the alerts of dashboards/alerts.yaml', async () => {
  const shipped = await readFile(join(chart, 'files', 'alerts.yaml'), 'utf8');
  assert.equal(shipped, await readFile(join(repo, 'dashboards', 'alerts.yaml'), 'utf8'), 'charts/rowcast/files/alerts.yaml is a copy of dashboards/alerts.yaml');
  const extra = { name: 'mine', rules: [{ alert: 'Mine', expr: 'vector(1)' }] };
  const objects = await render('rules', 'monitoring', { metrics: { prometheusRule: { enabled: true, groups: [extra] } } });
  const rule = only(objects, 'PrometheusRule') as unknown as { spec: { groups: { name: string; rules: { alert: string; annotations?: Record<string, string> }[] }[] } };
  const expected = (yaml.load(shipped) as { groups: { name: string }[] }).groups.map((g) => g.name);
  assert.deepEqual(
    rule.spec.groups.map((g) => g.name),
    [...expected, 'mine'],
  );
  const annotations = JSON.stringify(rule.spec.groups.flatMap((g) => g.rules.map((r) => r.annotations ?? {})));
  assert.match(annotations, /\{\{ \$labels\./, 'Prometheus templates reach the rule untouched');
  const monitor = only(await render('sm', 'monitoring', { metrics: { serviceMonitor: { enabled: true } } }), 'ServiceMonitor') as unknown as { spec: { endpoints: { honorLabels?: boolean }[] } };
  assert.equal(monitor.spec.endpoints[0]?.honorLabels, true);
});

test('promtool check rules accepts dashboards/alerts.yaml and the groups of the chart\'s PrometheusRule', async () => {
  const extra = { name: 'mine', rules: [{ alert: 'Mine', expr: 'vector(1)', for: '5m' }] };
  const rule = only(await render('rules', 'monitoring', { metrics: { prometheusRule: { enabled: true, groups: [extra] } } }), 'PrometheusRule') as unknown as { spec: { groups: unknown[] } };
  const shipped = join(work, 'prometheusrule-groups.yaml');
  await writeFile(shipped, yaml.dump({ groups: rule.spec.groups }));
  for (const file of [join(repo, 'dashboards', 'alerts.yaml'), shipped]) {
    const { stdout } = await run('promtool', ['check', 'rules', file]);
    assert.match(stdout, /SUCCESS: \d+ rules found/, `promtool check rules ${file}`);
  }
});

test('extra prometheusRule groups named like a shipped group are refused, not rendered twice', async () => {
  const shipped = (yaml.load(await readFile(join(repo, 'dashboards', 'alerts.yaml'), 'utf8')) as { groups: { name: string }[] }).groups;
  const again = shipped[0];
  assert.ok(again !== undefined);
  await assert.rejects(render('rules', 'monitoring', { metrics: { prometheusRule: { enabled: true, groups: [again] } } }), (error: Error & { stderr?: string }) => {
    assert.match(error.stderr ?? '', new RegExp(`metrics\\.prometheusRule\\.groups.*${again.name.replace(/\./g, '\\.')}.*already`));
    return true;
  });
});

test('the chart refuses the placeholder image repository until image.repository is set', async () => {
  for (const args of [['template', 'rc', chart], ['install', `rcp-${suffix}`, chart, '--namespace', releaseNamespace, '--dry-run=server', '--kubeconfig', env.state.hub.kubeconfigPath]]) {
    await assert.rejects(helm(args), (error: Error & { stderr?: string }) => {
      assert.match(error.stderr ?? '', /image\.repository .*registry\.example\.com\/rowcast\/rowcast.*npm run image/);
      return true;
    }, `helm ${args[0] ?? ''} with the placeholder repository`);
  }
  await helm(['template', 'rc', chart, '--set', `image.repository=${image.repository}`]);
});

test('helm lint passes with default and non-default values, and the schema refuses bad ones', async () => {
  await helm(['lint', '--strict', chart, '-f', await valuesFile({ image })]);
  await helm(['lint', '--strict', chart, '--namespace', 'rowcast-system', '-f', await valuesFile(nonDefault)]);
  await helm(['lint', '--strict', chart, '-f', await valuesFile({ image, controller: { hubId: 'hub-a' }, rbac: { inClusterMemberRules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get'] }] } })]);
  for (const bad of [{ controller: { logLevel: 'loud' } }, { controller: { probeInterval: 'soon' } }, { replica: 2 }, { controller: { workers: 0 } }, { maxSemiSpaceSizeMiB: 0 }]) {
    await assert.rejects(helm(['lint', chart, '-f', await valuesFile({ image, ...bad })]), `values ${JSON.stringify(bad)} must be refused`);
  }
});

test('default values: a hardened single controller, cluster-wide RBAC exactly as src/hub/rbac.ts', async () => {
  const objects = await render('rowcast', 'rowcast-system', {});
  assert.deepEqual(objects.map((o) => o.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Service', 'ServiceAccount']);
  const { spec, container } = deployment(objects);
  assertHardened(spec, container);
  assert.equal(spec.replicas, 1);
  assert.equal(spec.strategy.type, 'Recreate', 'no two controllers at once without leader election');
  assert.equal(container.image, `${image.repository}:0.1.0`);
  assert.deepEqual(container.args, [
    'controller',
    '--log-level=info',
    '--workers=4',
    '--probe-interval=30s',
    '--request-timeout=30s',
    '--batch-size=1000',
    '--shutdown-grace=30s',
    '--metrics-bind-address=:8080',
  ]);
  const options = controllerOptions(container);
  assert.equal(options.leaderElect, false);
  assert.equal(options.sharding, false);
  assert.equal(options.namespace, undefined);
  assert.ok(spec.template.spec.terminationGracePeriodSeconds * 1000 > options.shutdownGraceMs, 'Kubernetes waits longer than the shutdown grace');
  assert.deepEqual(container.env.find((e) => e.name === 'NODE_OPTIONS'), { name: 'NODE_OPTIONS', value: '--max-old-space-size=384 --max-semi-space-size=2' });
  assert.deepEqual(container.env.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } });

  const service = only(objects, 'Service');
  const selector = (service['spec'] as { selector: Record<string, string> }).selector;
  for (const [k, v] of Object.entries(selector)) assert.equal(spec.template.metadata.labels[k], v, 'the Service selects the pods');

  const clusterRole = only(objects, 'ClusterRole');
  assert.deepEqual(grants(clusterRole['rules'] as Rule[]), without(grants(hubPolicyRules), leaseGrants), 'the ClusterRole is src/hub/rbac.ts minus the Lease rule');
  const rbac = rbacOf(objects, { name: 'rowcast', namespace: 'rowcast-system' });
  assert.equal(rbac.byNamespace.size, 0, 'no Lease rights without leader election');
});

test('non-default values: one watched namespace, two replicas with leader election, ServiceMonitor', async () => {
  const objects = await render('rc', releaseNamespace, nonDefault);
  assert.deepEqual(objects.map((o) => o.kind).sort(), [
    'ClusterRole',
    'ClusterRoleBinding',
    'Deployment',
    'PrometheusRule',
    'Role',
    'Role',
    'RoleBinding',
    'RoleBinding',
    'Service',
    'ServiceAccount',
    'ServiceMonitor',
  ]);
  const { spec, container } = deployment(objects);
  assertHardened(spec, container);
  assert.equal(spec.replicas, 2);
  assert.equal(spec.strategy.type, 'RollingUpdate');
  assert.equal(container.image, `registry.example.com/rowcast@sha256:${'a'.repeat(64)}`);
  const options = controllerOptions(container);
  assert.equal(options.namespace, env.namespace);
  assert.equal(options.leaderElect, true);
  assert.equal(options.leaderElectionId, 'rowcast-chart-test');
  assert.equal(options.sharding, true, 'two replicas share the DQRs by default');
  assert.equal(options.shardRing, 'rc-rowcast', 'the ring is named after the release');
  assert.equal(options.logLevel, 'debug');
  assert.equal(options.workers, 2);
  assert.equal(options.probeIntervalMs, 2000);
  assert.equal(options.requestTimeoutMs, 5000);
  assert.equal(options.batchSize, 50);
  assert.equal(options.shutdownGraceMs, 20_000);
  assert.equal(options.metricsBindAddress, ':9090');
  assert.ok(spec.template.spec.terminationGracePeriodSeconds > 20);
  assert.equal(container.env.find((e) => e.name === 'NODE_OPTIONS')?.value, '--max-old-space-size=200 --max-semi-space-size=4');

  const rbac = rbacOf(objects, { name: 'rc-rowcast', namespace: releaseNamespace });
  assert.deepEqual(rbac.clusterWide, namespaceGrants, 'cluster-wide: only get on kube-system, for the hub id');
  assert.deepEqual(rbac.byNamespace.get(env.namespace), without(without(grants(hubPolicyRules), leaseGrants), namespaceGrants), 'a Role in the watched namespace');
  assert.deepEqual(rbac.byNamespace.get(releaseNamespace), leaseGrants, 'the Lease rights in the release namespace only');
  assert.deepEqual([...rbac.clusterWide, ...[...rbac.byNamespace.values()].flat()].sort(), grants(hubPolicyRules), 'together exactly src/hub/rbac.ts');

  const monitor = only(objects, 'ServiceMonitor');
  const monitorSpec = monitor['spec'] as { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] };
  const service = only(objects, 'Service');
  for (const [k, v] of Object.entries(monitorSpec.selector.matchLabels)) assert.equal(service.metadata.labels?.[k], v, 'the ServiceMonitor selects the Service');
  assert.deepEqual(
    monitorSpec.endpoints.map((e) => [e.port, e.path]),
    [['metrics', '/metrics']],
  );
  assert.equal(monitor.metadata.labels?.['release'], 'prometheus');
  assert.deepEqual((service['spec'] as { ports: { name: string; targetPort: string }[] }).ports.map((p) => [p.name, p.targetPort]), [['metrics', 'metrics']]);

  const standby = await render('rc', releaseNamespace, { ...nonDefault, sharding: { enabled: false } });
  const standbyOptions = controllerOptions(deployment(standby).container);
  assert.ok(standbyOptions.leaderElect && !standbyOptions.sharding, 'sharding.enabled false: one leader, standbys');
  const shardingGrants = grants(hubPolicyRules.filter((r) => r.resources.includes('leases') && r.verbs.includes('watch')));
  assert.deepEqual(rbacOf(standby, { name: 'rc-rowcast', namespace: releaseNamespace }).byNamespace.get(releaseNamespace), without(leaseGrants, shardingGrants), 'no list, watch or delete of Leases without sharding');
  const single = controllerOptions(deployment(await render('rc', releaseNamespace, { ...nonDefault, replicas: 1, sharding: { enabled: true } })).container);
  assert.ok(single.sharding && single.leaderElect, 'sharding.enabled true with one replica');

  const fixedHubId = await render('rc', releaseNamespace, { ...nonDefault, controller: { hubId: 'hub-a' } });
  assert.ok(!fixedHubId.some((o) => o.kind === 'ClusterRole'), 'with a fixed hub id nothing is granted cluster-wide');
  assert.ok(deployment(fixedHubId).container.args.includes('--hub-id=hub-a'));
});

// ---- on the hub --------------------------------------------------------------

const clusterWideRelease = `rca-${suffix}`;
const namespacedRelease = `rcb-${suffix}`;
const releases = {
  /** Default RBAC (ClusterRole), leader election on, short probe interval for the test. */
  clusterWide: { release: clusterWideRelease, values: { leaderElection: { enabled: true }, controller: { probeInterval: '2s', requestTimeout: '5s' } } },
  /** Roles in the watched namespace, two replicas (leader election). */
  namespaced: { release: namespacedRelease, values: { watchNamespace: env.namespace, replicas: 2, controller: { probeInterval: '2s', requestTimeout: '5s' } } },
};
const notServedHere = new Set(['ServiceMonitor', 'PrometheusRule']);

env.defer(async () => {
  for (const { release } of Object.values(releases)) {
    for (const kind of ['clusterrolebinding', 'clusterrole']) {
      await kubectl(['delete', kind, '--ignore-not-found', '-l', `app.kubernetes.io/instance=${release}`]);
    }
  }
});

test('the rendered chart is accepted by the hub apiserver object by object, and its pod passes the restricted Pod Security level', async () => {
  // Pod Security "restricted" enforced in the release namespace; the Deployment's pod is tried with a server-side dry run.
  const labelled = await kubectl(['label', 'namespace', releaseNamespace, 'pod-security.kubernetes.io/enforce=restricted', '--overwrite']);
  assert.equal(labelled.code, 0, labelled.stderr);
  for (const { release, values } of Object.values(releases)) {
    const objects = await render(release, releaseNamespace, { ...values, metrics: { serviceMonitor: { enabled: true } } });
    const skipped = objects.filter((o) => notServedHere.has(o.kind)).map((o) => o.kind);
    assert.deepEqual(skipped, ['ServiceMonitor'], 'only the Prometheus Operator kinds are left out: the hub has no monitoring.coreos.com CRDs');
    for (const object of objects.filter((o) => !notServedHere.has(o.kind))) {
      const what = `${object.kind} ${object.metadata.namespace ?? ''}/${object.metadata.name}`;
      const applied = await kubectl(['apply', '--server-side', '--field-manager=rowcast-chart-test', '-f', '-'], JSON.stringify(object));
      assert.equal(applied.code, 0, `${what}: ${applied.stderr}`);
      assert.equal(applied.stderr, '', `${what}: no warnings`);
    }
    const { spec } = deployment(objects);
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: `${release}-pod`, namespace: releaseNamespace, labels: spec.template.metadata.labels }, spec: spec.template.spec };
    const tried = await kubectl(['create', '--dry-run=server', '-f', '-'], JSON.stringify(pod));
    assert.equal(tried.code, 0, `the controller pod under Pod Security restricted: ${tried.stderr}`);
    assert.equal(tried.stderr, '', 'no Pod Security warnings');
  }
});

test('with watchNamespace naming a namespace that does not exist, its Roles cannot be created (docs/install.md creates it first)', async () => {
  const missing = `${env.namespace}-missing`;
  const roles = (await render('rcm', releaseNamespace, { watchNamespace: missing })).filter((o) => o.metadata.namespace === missing);
  assert.ok(roles.some((o) => o.kind === 'Role'), 'the chart puts Roles in the watched namespace');
  const tried = await kubectl(['create', '--dry-run=server', '-f', '-'], roles.map((o) => JSON.stringify(o)).join('\n'));
  assert.notEqual(tried.code, 0);
  assert.match(tried.stderr, new RegExp(`namespaces "${missing}" not found`));
  const install = await readFile(join(repo, 'docs', 'install.md'), 'utf8');
  assert.ok(install.includes('kubectl create namespace platform') && install.includes('--set watchNamespace=platform'), 'docs/install.md creates the watched namespace before helm install');
});

test('CRDs Helm installed from crds/ upgrade with kubectl apply --server-side only with --force-conflicts, as docs/install.md says', async () => {
  // A CRD of the test's own, installed the way the chart's are: from a chart's crds/ folder by helm install.
  const group = `w${suffix}.rowcast.test`;
  const crd = (description: string): Record<string, unknown> => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `widgets.${group}` },
    spec: {
      group,
      scope: 'Namespaced',
      names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
      versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', description, 'x-kubernetes-preserve-unknown-fields': true } } }],
    },
  });
  const crdChart = join(work, 'crd-chart');
  await mkdir(join(crdChart, 'crds'), { recursive: true });
  await writeFile(join(crdChart, 'Chart.yaml'), yaml.dump({ apiVersion: 'v2', name: 'crd-only', version: '0.1.0' }));
  await writeFile(join(crdChart, 'crds', 'widgets.yaml'), yaml.dump(crd('first')));
  const release = `rcc-${suffix}`;
  await helm(['install', release, crdChart, '--namespace', releaseNamespace, '--kubeconfig', env.state.hub.kubeconfigPath]);
  try {
    const changed = JSON.stringify(crd('second'));
    const plain = await kubectl(['apply', '--server-side', '-f', '-'], changed);
    assert.notEqual(plain.code, 0, 'a field Helm set is owned by Helm');
    assert.match(plain.stderr, /conflict/i);
    const forced = await kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], changed);
    assert.equal(forced.code, 0, forced.stderr);
  } finally {
    await helm(['uninstall', release, '--namespace', releaseNamespace, '--kubeconfig', env.state.hub.kubeconfigPath]);
    await kubectl(['delete', 'crd', `widgets.${group}`, '--wait=false']);
  }
  const install = await readFile(join(repo, 'docs', 'install.md'), 'utf8');
  assert.ok(install.includes('kubectl apply --server-side --force-conflicts -f crds/'), 'docs/install.md upgrades the CRDs with --force-conflicts');
});

test('helm install --dry-run=server against the hub succeeds, and NOTES.txt says how to register a member', async () => {
  const out = await helm([
    'install', `rcn-${suffix}`, chart, '--namespace', releaseNamespace, '--dry-run=server', '--kubeconfig', env.state.hub.kubeconfigPath,
    '--set', `watchNamespace=${env.namespace}`, '--set', `image.repository=${image.repository}`,
  ]);
  const notes = out.slice(out.indexOf('NOTES:'));
  assert.ok(notes.length > 'NOTES:'.length, `no NOTES in:\n${out}`);
  for (const wanted of ['rowcast cluster add east-1 --context', '--force-conflicts', 'kind: ClusterTarget', 'kubeconfigSecretRef', `kubectl -n ${env.namespace} create secret generic`, 'docs/install.md', 'kubectl apply --server-side -f crds/']) {
    assert.ok(notes.includes(wanted), `NOTES mention ${wanted}:\n${notes}`);
  }
});

/** A token for the chart's ServiceAccount, from the hub's TokenRequest API; a kubeconfig holding it. */
async function serviceAccountKubeconfig(release: string): Promise<string> {
  const response = await adminRequest(env.state.hub, 'POST', `/api/v1/namespaces/${releaseNamespace}/serviceaccounts/${release}-rowcast/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3600 },
  });
  assert.equal(response.status, 201, response.body);
  const token = (JSON.parse(response.body) as { status: { token: string } }).status.token;
  const path = join(work, `${release}.kubeconfig`);
  await writeFile(
    path,
    yaml.dump({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'hub', cluster: { server: env.state.hub.server, 'certificate-authority-data': Buffer.from(env.state.hub.caCert).toString('base64') } }],
      users: [{ name: 'rowcast', user: { token } }],
      contexts: [{ name: 'hub', context: { cluster: 'hub', user: 'rowcast' } }],
      'current-context': 'hub',
    }),
    { mode: 0o600 },
  );
  return path;
}

/** What the apiserver's authorizer says the chart's ServiceAccount may do; `resource` may end in /subresource. */
async function canI(release: string, verb: string, resource: string, namespace?: string): Promise<boolean> {
  const as = `system:serviceaccount:${releaseNamespace}:${release}-rowcast`;
  const [plural = resource, subresource] = resource.split('/');
  const scoped = plural === 'namespaces' ? [resource] : [plural, ...(subresource === undefined ? [] : [`--subresource=${subresource}`])];
  const result = await kubectl(['auth', 'can-i', verb, ...scoped, `--as=${as}`, ...(namespace === undefined ? [] : ['-n', namespace])]);
  const answer = result.stdout.trim();
  assert.ok(answer === 'yes' || answer === 'no', `kubectl auth can-i ${verb} ${resource}: ${result.stdout}${result.stderr}`);
  return answer === 'yes';
}

interface RunningProcess {
  child: ChildProcess;
  output: string[];
  port: number;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Runs `node src/main.ts` with the rendered Deployment's args and env, as the
 * chart's ServiceAccount: the image's entrypoint, outside a container. Only
 * the metrics address moves to a free loopback port and the kubeconfig
 * replaces the in-cluster account.
 */
async function runAsDeployment(release: string, values: Record<string, unknown>, extraArgs: string[] = []): Promise<RunningProcess> {
  const { container } = deployment(await render(release, releaseNamespace, values));
  const port = await freePort();
  const args = [
    ...container.args.map((a) => (a.startsWith('--metrics-bind-address=') ? `--metrics-bind-address=127.0.0.1:${String(port)}` : a)),
    `--kubeconfig=${await serviceAccountKubeconfig(release)}`,
    ...extraArgs,
  ];
  const podEnv: Record<string, string> = { PATH: process.env['PATH'] ?? '' };
  for (const e of container.env) {
    if (e.value !== undefined) podEnv[e.name] = e.value;
    else if (JSON.stringify(e.valueFrom) === JSON.stringify({ fieldRef: { fieldPath: 'metadata.namespace' } })) podEnv[e.name] = releaseNamespace;
  }
  // setpriv ties the controller's life to this test process, as the harness does for its servers.
  const child = spawn('setpriv', ['--pdeathsig=KILL', '--', process.execPath, 'src/main.ts', ...args], { cwd: repo, env: podEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const collect = (chunk: Buffer): void => {
    output.push(...chunk.toString().split('\n').filter((l) => l !== ''));
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [code] = await exited;
    clearTimeout(timer);
    return code;
  };
  env.defer(async () => {
    await stop();
  });
  return { child, output, port, stop };
}

async function endpoint(port: number, path: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${String(port)}${path}`);
  await response.body?.cancel();
  return response.status;
}

function assertNoForbidden(output: string[]): void {
  const denied = output.filter((l) => /\b403\b|forbidden/i.test(l));
  assert.deepEqual(denied, [], 'the controller was refused something on the hub');
}

const template = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{metadata.name}}-{{row.id}}
data:
  name: {{quote row.name}}
`;

/** The ConfigMaps one DQR made (named after it) on every member, by name → data.name. */
const wantConfigMaps = async (dqr: string, want: Record<string, string>): Promise<void> => {
  await Promise.all(
    env.members.map((member) =>
      eventually(`ConfigMaps of ${dqr} ${JSON.stringify(want)} on ${member.info.name}`, async () => {
        const maps = await configMaps(member, env.namespace);
        const got = Object.fromEntries([...maps].filter(([n]) => n.startsWith(`${dqr}-`)).map(([n, d]) => [n, d['name'] ?? '']));
        return isSame(got, want) ? true : undefined;
      }, 30_000),
    ),
  );
};

function isSame(a: Record<string, string>, b: Record<string, string>): boolean {
  return JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
}

async function leaseHolder(id: string): Promise<string | undefined> {
  const lease = await getHub(env, `/apis/coordination.k8s.io/v1/namespaces/${releaseNamespace}/leases/${id}`);
  return (lease?.['spec'] as { holderIdentity?: string } | undefined)?.holderIdentity;
}

test("the default chart's ServiceAccount and ClusterRole are enough: rows reach both members, status and Events are written, no 403", async () => {
  const { release, values } = releases.clusterWide;
  // The grants, as the apiserver's authorizer sees them, and one that is not there.
  for (const [verb, resource] of [
    ['watch', 'databasequeryresources.rowcast.dev'],
    ['patch', 'databasequeryresources.rowcast.dev'],
    ['patch', 'clustertargets.rowcast.dev/status'],
    ['list', 'secrets'],
    ['create', 'events'],
  ] as const) {
    assert.ok(await canI(release, verb, resource, env.namespace), `${verb} ${resource}`);
  }
  assert.ok(await canI(release, 'get', 'namespaces/kube-system'));
  assert.ok(!(await canI(release, 'get', 'namespaces/default')), 'get on kube-system only');
  assert.ok(!(await canI(release, 'update', 'leases', 'kube-system')), 'no other Leases');
  assert.ok(!(await canI(release, 'delete', 'secrets', env.namespace)));
  assert.ok(!(await canI(release, 'get', 'secrets', env.namespace)), 'Secrets are only listed and watched, by label, never read one by one');
  assert.ok(!(await canI(release, 'patch', 'clustertargets.rowcast.dev', env.namespace)));

  await env.sql('CREATE TABLE chart_rows (id int PRIMARY KEY, name text NOT NULL)');
  await env.sql("INSERT INTO chart_rows VALUES (1, 'one'), (2, 'two')");
  await registerMembers(env);
  await putDatabaseSecret(env);
  // Cluster-wide RBAC, but the test's controller keeps to the test's namespace (other files' leftovers live elsewhere).
  const controller = await runAsDeployment(release, values, [`--namespace=${env.namespace}`]);
  try {
    await putDqr(env, 'chart', { query: 'SELECT id, name FROM chart_rows ORDER BY id', template });
    await wantConfigMaps('chart', { 'chart-1': 'one', 'chart-2': 'two' });
    const status = await eventually('DQR Ready', async () => {
      const s = await dqrStatus(env, 'chart');
      return condition(s, 'Ready')?.status === 'True' ? s : undefined;
    });
    assert.equal(status.rowCount, 2);
    await eventually('ClusterTargets Ready', async () => {
      for (const member of env.members) {
        const ct = await getHub(env, `/apis/rowcast.dev/v1alpha1/namespaces/${env.namespace}/clustertargets/${member.info.name}`);
        const conditions = ((ct?.['status'] as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []);
        if (!conditions.some((c) => c.type === 'Ready' && c.status === 'True')) return undefined;
      }
      return true;
    });
    const dqr = await getHub(env, `/apis/rowcast.dev/v1alpha1/namespaces/${env.namespace}/databasequeryresources/chart`);
    assert.ok(((dqr?.['metadata'] as { finalizers?: string[] }).finalizers ?? []).length > 0, 'the finalizer was patched on');
    const events = await env.hub.core.listNamespacedEvent({ namespace: env.namespace });
    assert.ok(events.items.some((e) => e.source?.component === 'rowcast'), 'Events were created');
    assert.ok(((await leaseHolder('rowcast-controller')) ?? '') !== '', 'the leader Lease is held, in the release namespace');
    assert.equal(await endpoint(controller.port, '/healthz'), 200);
    assert.equal(await eventually('/readyz', async () => ((await endpoint(controller.port, '/readyz')) === 200 ? 200 : undefined)), 200);

    await env.sql("UPDATE chart_rows SET name = 'uno' WHERE id = 1");
    await wantConfigMaps('chart', { 'chart-1': 'uno', 'chart-2': 'two' });
  } finally {
    assert.equal(await controller.stop(), 0, `clean exit; output:\n${controller.output.slice(-20).join('\n')}`);
  }
  assert.equal((await leaseHolder('rowcast-controller')) ?? '', '', 'the Lease is released on stop');
  assertNoForbidden(controller.output);
});

test("with watchNamespace the chart's Roles are enough: a new DQR syncs and a deleted one is finalized, no 403", async () => {
  const { release, values } = releases.namespaced;
  assert.ok(await canI(release, 'list', 'secrets', env.namespace));
  assert.ok(!(await canI(release, 'list', 'secrets', 'default')), 'no Secrets outside the watched namespace');
  assert.ok(!(await canI(release, 'list', 'secrets')), 'no Secrets cluster-wide');
  assert.ok(await canI(release, 'update', 'leases', releaseNamespace));
  assert.ok(!(await canI(release, 'update', 'leases', env.namespace)), 'Leases only in the release namespace');

  // On its own: the members, Secrets and table may or may not be there from the test before.
  await env.sql('CREATE TABLE IF NOT EXISTS chart_more (id int PRIMARY KEY, name text NOT NULL)');
  await env.sql("INSERT INTO chart_more VALUES (10, 'ten'), (20, 'twenty') ON CONFLICT DO NOTHING");
  await registerMembers(env);
  await putDatabaseSecret(env);
  const controller = await runAsDeployment(release, values);
  try {
    await putDqr(env, 'more', { query: 'SELECT id, name FROM chart_more WHERE id = 10', template });
    await putDqr(env, 'gone', { query: 'SELECT id, name FROM chart_more WHERE id = 20', template });
    await wantConfigMaps('more', { 'more-10': 'ten' });
    await wantConfigMaps('gone', { 'gone-20': 'twenty' });
    await eventually('DQR more Ready', async () => (condition(await dqrStatus(env, 'more'), 'Ready')?.status === 'True' ? true : undefined));
    // A deleted DQR: its objects leave both members, then the finalizer is patched off.
    await env.hub.custom.deleteNamespacedCustomObject({ group: 'rowcast.dev', version: 'v1alpha1', namespace: env.namespace, plural: 'databasequeryresources', name: 'gone' });
    await wantConfigMaps('gone', {});
    await eventually('DQR gone finalized', async () => ((await getHub(env, `/apis/rowcast.dev/v1alpha1/namespaces/${env.namespace}/databasequeryresources/gone`)) === undefined ? true : undefined));
    await wantConfigMaps('more', { 'more-10': 'ten' });
    assert.ok(((await leaseHolder('rowcast-controller')) ?? '') !== '', 'the leader Lease is held');
    // Two replicas: sharded, so the one process holds a shard Lease and is the sharder, with the chart's Role alone.
    const more = await getHub(env, `/apis/rowcast.dev/v1alpha1/namespaces/${env.namespace}/databasequeryresources/more`);
    const shard = (more?.['metadata'] as { labels?: Record<string, string> } | undefined)?.labels?.['rowcast.dev/shard'] ?? '';
    assert.notEqual(shard, '', 'the DQR is assigned to a shard');
    assert.equal(await leaseHolder(shard), shard, 'the shard holds its own Lease in the release namespace');
  } finally {
    assert.equal(await controller.stop(), 0, `clean exit; output:\n${controller.output.slice(-20).join('\n')}`);
  }
  assertNoForbidden(controller.output);
});
