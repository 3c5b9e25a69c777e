// One table of manifests with the verdict both judges must give: the in-process
// parser (test/unit/api-parse.test.ts) and a real kube-apiserver with the CRDs
// from crds/ installed. Every sample under examples/ and clusters/ is a valid
// case, so a sample that drifts from the API fails here first.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';

export interface ApiCase {
  name: string;
  kind: 'DatabaseQueryResource' | 'ClusterTarget';
  manifest: Record<string, unknown>; // full object: apiVersion, kind, metadata.name (no namespace), spec
  valid: boolean;
  field?: string; // invalid cases: the field path the apiserver's error and the parser's errors must both name
}

type Spec = Record<string, unknown>;
type Kind = ApiCase['kind'];

const API_VERSION = 'rowcast.dev/v1alpha1';
const REPO = join(import.meta.dirname, '..');

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isKind(value: unknown): value is Kind {
  return value === 'DatabaseQueryResource' || value === 'ClusterTarget';
}

// Secrets that travel with a ClusterTarget are skipped; a file without any
// Rowcast object is a mistake in the samples, not something to skip quietly.
function sampleCases(dir: string): ApiCase[] {
  const files = readdirSync(join(REPO, dir))
    .filter((f) => f.endsWith('.yaml'))
    .sort();
  return files.flatMap((file) => {
    const docs = yaml.loadAll(readFileSync(join(REPO, dir, file), 'utf8'));
    const cases: ApiCase[] = [];
    for (const doc of docs) {
      if (!isRecord(doc) || !isKind(doc['kind'])) continue;
      cases.push({ name: `${dir}/${file}`, kind: doc['kind'], manifest: doc, valid: true });
    }
    if (cases.length === 0) throw new Error(`${dir}/${file} holds no DatabaseQueryResource or ClusterTarget`);
    return cases;
  });
}

function manifest(kind: Kind, name: string, spec: Spec | undefined): Record<string, unknown> {
  return { apiVersion: API_VERSION, kind, metadata: { name }, ...(spec === undefined ? {} : { spec }) };
}

function without(spec: Spec, key: string): Spec {
  return Object.fromEntries(Object.entries(spec).filter(([k]) => k !== key));
}

const dqrBase: Spec = {
  database: { connectionSecretRef: { name: 'app-db' } },
  query: 'SELECT id, name FROM items ORDER BY id',
  template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: item-{{row.id}}\ndata:\n  name: {{quote row.name}}\n',
  targets: { clusters: ['east-1'] },
};

const ctBase: Spec = { kubeconfigSecretRef: { name: 'east-1-kubeconfig' } };

function valid(kind: Kind, name: string, spec: Spec): ApiCase {
  return { name, kind, manifest: manifest(kind, name, spec), valid: true };
}

function invalid(kind: Kind, name: string, field: string, spec: Spec | undefined): ApiCase {
  return { name, kind, manifest: manifest(kind, name, spec), valid: false, field };
}

const DQR = 'DatabaseQueryResource';
const CT = 'ClusterTarget';

function dqrDatabase(extra: Spec): Spec {
  return { ...dqrBase, database: { connectionSecretRef: { name: 'app-db' }, ...extra } };
}

function dqrPool(pool: Spec): Spec {
  return dqrDatabase({ pool });
}

function dqrSelector(selector: Spec): Spec {
  return { ...dqrBase, targets: { clusterSelector: selector } };
}

const validCases: ApiCase[] = [
  valid(DQR, 'dqr-minimal', dqrBase),
  valid(DQR, 'dqr-every-field', {
    database: {
      type: 'postgres',
      connectionSecretRef: {
        name: 'app-db',
        hostKey: 'PGHOST',
        portKey: 'PGPORT',
        userKey: 'PGUSER',
        passwordKey: 'PGPASSWORD',
        dbNameKey: 'PGDATABASE',
        sslModeKey: 'PGSSLMODE',
      },
      pool: { max: 10, idleTimeout: '2m', statementTimeout: '15s' },
    },
    query: "SET LOCAL work_mem = '8MB'; SELECT tenant, region, name FROM items",
    rowKey: ['tenant', 'region'],
    pollInterval: '1h30m',
    changeDetection: { mode: 'timestamp', tableName: 'app.items', timestampColumn: 'updated_at' },
    template: dqrBase['template'],
    targets: {
      clusters: ['east-1', 'platform/west-2.example'],
      clusterSelector: {
        matchLabels: { environment: 'production' },
        matchExpressions: [
          { key: 'region', operator: 'In', values: ['us-east', 'us-west'] },
          { key: 'rowcast.dev/quarantined', operator: 'DoesNotExist' },
        ],
      },
      rowClusterColumn: 'clusters',
    },
    prune: false,
    pruneLimit: 25,
    deletionPolicy: 'Orphan',
    driftPolicy: 'Report',
    ignoreFields: [{ kind: 'apps/Deployment', jsonPointers: ['/spec/replicas', '/spec/template/metadata/annotations/a~1b'] }],
    statusUpdateQueryTemplate: 'UPDATE items SET ready = {{param resource.status.readyReplicas}} WHERE id = {{param row.id}}',
    ledger: { table: 'rowcast_ledger' },
  }),
  valid(DQR, 'dqr-fractional-durations', { ...dqrPool({ idleTimeout: '1.5s', statementTimeout: '0' }), pollInterval: '2.5m' }),
  valid(DQR, 'dqr-micro-sign-duration', { ...dqrBase, pollInterval: '1000000\u00b5s' }),
  valid(DQR, 'dqr-allowed-kinds', { ...dqrBase, allowedKinds: ['ConfigMap', 'apps/Deployment', 'rbac.authorization.k8s.io/ClusterRoleBinding'] }),
  valid(DQR, 'dqr-status-update-settings', { ...dqrBase, statusUpdate: { kinds: ['Deployment', 'StatefulSet'], minInterval: '10s' } }),
  valid(DQR, 'dqr-greek-mu-duration', { ...dqrBase, pollInterval: '1500000\u03bcs' }),
  valid(DQR, 'dqr-statement-timeout-1ms', dqrPool({ statementTimeout: '1ms' })),
  valid(DQR, 'dqr-poll-interval-exactly-1s', { ...dqrBase, pollInterval: '1000ms' }),
  valid(DQR, 'dqr-null-poll-interval', { ...dqrBase, pollInterval: null }),
  valid(DQR, 'dqr-prune-limit-zero', { ...dqrBase, pruneLimit: 0 }),
  valid(DQR, 'dqr-prune-limit-zero-percent', { ...dqrBase, pruneLimit: '0%' }),
  valid(DQR, 'dqr-prune-limit-100-percent', { ...dqrBase, pruneLimit: '100%' }),
  valid(DQR, 'dqr-notify', { ...dqrBase, changeDetection: { mode: 'notify', channel: 'items_changed' } }),
  valid(DQR, 'dqr-row-cluster-column-only', { ...dqrBase, targets: { rowClusterColumn: 'cluster_names' } }),
  valid(DQR, 'dqr-select-every-cluster', dqrSelector({})),
  valid(CT, 'ct-minimal', ctBase),
  valid(CT, 'ct-in-cluster', { inCluster: true, allowedNamespaces: ['tenants'] }),
  valid(CT, 'ct-secret-with-in-cluster-false', { ...ctBase, inCluster: false }),
  valid(CT, 'ct-zero-rate-limit', { ...ctBase, rateLimit: { qps: 0, burst: 0, concurrency: 0 } }),
  valid(CT, 'ct-every-field', {
    kubeconfigSecretRef: { name: 'east-1-kubeconfig', key: 'value' },
    rateLimit: { qps: 10000, burst: 10000, concurrency: 256 },
    allowedNamespaces: ['profiles', 'tenants'],
    allowedSourceNamespaces: ['*'],
    paused: true,
  }),
];

const invalidCases: ApiCase[] = [
  invalid(DQR, 'dqr-missing-spec', 'spec', undefined),
  invalid(DQR, 'dqr-missing-query', 'spec.query', without(dqrBase, 'query')),
  invalid(DQR, 'dqr-empty-query', 'spec.query', { ...dqrBase, query: '' }),
  invalid(DQR, 'dqr-allowed-kinds-lowercase', 'spec.allowedKinds[0]', { ...dqrBase, allowedKinds: ['configmap'] }),
  invalid(DQR, 'dqr-allowed-kinds-version', 'spec.allowedKinds[1]', { ...dqrBase, allowedKinds: ['ConfigMap', 'apps/v1/Deployment'] }),
  invalid(DQR, 'dqr-allowed-kinds-empty', 'spec.allowedKinds', { ...dqrBase, allowedKinds: [] }),
  invalid(DQR, 'dqr-status-update-lowercase-kind', 'spec.statusUpdate.kinds[0]', { ...dqrBase, statusUpdate: { kinds: ['deployment'] } }),
  invalid(DQR, 'dqr-status-update-short-interval', 'spec.statusUpdate.minInterval', { ...dqrBase, statusUpdate: { minInterval: '10ms' } }),
  invalid(DQR, 'dqr-missing-template', 'spec.template', without(dqrBase, 'template')),
  invalid(DQR, 'dqr-empty-template', 'spec.template', { ...dqrBase, template: '' }),
  invalid(DQR, 'dqr-missing-database', 'spec.database', without(dqrBase, 'database')),
  invalid(DQR, 'dqr-missing-connection-secret', 'spec.database.connectionSecretRef', { ...dqrBase, database: {} }),
  invalid(DQR, 'dqr-bad-secret-name', 'spec.database.connectionSecretRef.name', {
    ...dqrBase,
    database: { connectionSecretRef: { name: 'App_DB' } },
  }),
  invalid(DQR, 'dqr-bad-secret-key', 'spec.database.connectionSecretRef.passwordKey', {
    ...dqrBase,
    database: { connectionSecretRef: { name: 'app-db', passwordKey: 'pass word' } },
  }),
  invalid(DQR, 'dqr-database-type-mysql', 'spec.database.type', dqrDatabase({ type: 'mysql' })),
  invalid(DQR, 'dqr-pool-max-zero', 'spec.database.pool.max', dqrPool({ max: 0 })),
  invalid(DQR, 'dqr-idle-timeout-no-unit', 'spec.database.pool.idleTimeout', dqrPool({ idleTimeout: '10' })),
  invalid(DQR, 'dqr-idle-timeout-below-1s', 'spec.database.pool.idleTimeout', dqrPool({ idleTimeout: '999ms' })),
  invalid(DQR, 'dqr-statement-timeout-below-1ms', 'spec.database.pool.statementTimeout', dqrPool({ statementTimeout: '500us' })),
  invalid(DQR, 'dqr-poll-interval-words', 'spec.pollInterval', { ...dqrBase, pollInterval: '5 minutes' }),
  invalid(DQR, 'dqr-poll-interval-negative', 'spec.pollInterval', { ...dqrBase, pollInterval: '-1s' }),
  invalid(DQR, 'dqr-poll-interval-plus-sign', 'spec.pollInterval', { ...dqrBase, pollInterval: '+5s' }),
  invalid(DQR, 'dqr-poll-interval-below-1s', 'spec.pollInterval', { ...dqrBase, pollInterval: '500ms' }),
  invalid(DQR, 'dqr-poll-interval-zero', 'spec.pollInterval', { ...dqrBase, pollInterval: '0' }),
  invalid(DQR, 'dqr-poll-interval-days', 'spec.pollInterval', { ...dqrBase, pollInterval: '1d' }),
  invalid(DQR, 'dqr-poll-interval-overflow', 'spec.pollInterval', { ...dqrBase, pollInterval: '9999999999999h' }),
  invalid(DQR, 'dqr-poll-interval-number', 'spec.pollInterval', { ...dqrBase, pollInterval: 30 }),
  invalid(DQR, 'dqr-unknown-change-detection', 'spec.changeDetection.mode', {
    ...dqrBase,
    changeDetection: { mode: 'trigger' },
  }),
  invalid(DQR, 'dqr-timestamp-without-column', 'spec.changeDetection.timestampColumn', {
    ...dqrBase,
    changeDetection: { mode: 'timestamp', tableName: 'items' },
  }),
  invalid(DQR, 'dqr-timestamp-without-table', 'spec.changeDetection.tableName', {
    ...dqrBase,
    changeDetection: { mode: 'timestamp', timestampColumn: 'updated_at' },
  }),
  invalid(DQR, 'dqr-notify-without-channel', 'spec.changeDetection.channel', {
    ...dqrBase,
    changeDetection: { mode: 'notify' },
  }),
  invalid(DQR, 'dqr-table-name-not-identifier', 'spec.changeDetection.tableName', {
    ...dqrBase,
    changeDetection: { mode: 'timestamp', tableName: 'items; DROP TABLE items', timestampColumn: 'updated_at' },
  }),
  invalid(DQR, 'dqr-bad-deletion-policy', 'spec.deletionPolicy', { ...dqrBase, deletionPolicy: 'Retain' }),
  invalid(DQR, 'dqr-bad-drift-policy', 'spec.driftPolicy', { ...dqrBase, driftPolicy: 'Fight' }),
  invalid(DQR, 'dqr-ignore-field-not-a-pointer', 'spec.ignoreFields[0].jsonPointers[0]', { ...dqrBase, ignoreFields: [{ kind: 'apps/Deployment', jsonPointers: ['spec.replicas'] }] }),
  invalid(DQR, 'dqr-ignore-field-bad-escape', 'spec.ignoreFields[0].jsonPointers[0]', { ...dqrBase, ignoreFields: [{ kind: 'ConfigMap', jsonPointers: ['/data/a~2b'] }] }),
  invalid(DQR, 'dqr-ignore-field-metadata', 'spec.ignoreFields[0].jsonPointers', { ...dqrBase, ignoreFields: [{ kind: 'ConfigMap', jsonPointers: ['/metadata/labels'] }] }),
  invalid(DQR, 'dqr-ignore-field-without-kind', 'spec.ignoreFields[0].kind', { ...dqrBase, ignoreFields: [{ jsonPointers: ['/data'] }] }),
  invalid(DQR, 'dqr-missing-targets', 'spec.targets', without(dqrBase, 'targets')),
  invalid(DQR, 'dqr-empty-targets', 'spec.targets', { ...dqrBase, targets: {} }),
  invalid(DQR, 'dqr-targets-empty-cluster-list', 'spec.targets', { ...dqrBase, targets: { clusters: [] } }),
  invalid(DQR, 'dqr-duplicate-cluster', 'spec.targets.clusters[1]', {
    ...dqrBase,
    targets: { clusters: ['east-1', 'east-1'] },
  }),
  invalid(DQR, 'dqr-bad-cluster-name', 'spec.targets.clusters[0]', { ...dqrBase, targets: { clusters: ['East_1'] } }),
  invalid(
    DQR,
    'dqr-selector-in-without-values',
    'spec.targets.clusterSelector.matchExpressions[0].values',
    dqrSelector({ matchExpressions: [{ key: 'region', operator: 'In' }] }),
  ),
  invalid(
    DQR,
    'dqr-selector-exists-with-values',
    'spec.targets.clusterSelector.matchExpressions[0].values',
    dqrSelector({ matchExpressions: [{ key: 'region', operator: 'Exists', values: ['us-east'] }] }),
  ),
  invalid(
    DQR,
    'dqr-selector-bad-operator',
    'spec.targets.clusterSelector.matchExpressions[0].operator',
    dqrSelector({ matchExpressions: [{ key: 'region', operator: 'Equals', values: ['us-east'] }] }),
  ),
  invalid(
    DQR,
    'dqr-selector-bad-label-value',
    'spec.targets.clusterSelector.matchLabels.region',
    dqrSelector({ matchLabels: { region: 'us east' } }),
  ),
  invalid(DQR, 'dqr-prune-limit-over-100-percent', 'spec.pruneLimit', { ...dqrBase, pruneLimit: '150%' }),
  invalid(DQR, 'dqr-prune-limit-negative', 'spec.pruneLimit', { ...dqrBase, pruneLimit: -1 }),
  invalid(DQR, 'dqr-prune-limit-word', 'spec.pruneLimit', { ...dqrBase, pruneLimit: 'half' }),
  invalid(DQR, 'dqr-prune-limit-fraction', 'spec.pruneLimit', { ...dqrBase, pruneLimit: '12.5%' }),
  invalid(DQR, 'dqr-prune-limit-bare-number-string', 'spec.pruneLimit', { ...dqrBase, pruneLimit: '10' }),
  invalid(DQR, 'dqr-prune-not-boolean', 'spec.prune', { ...dqrBase, prune: 'yes' }),
  invalid(DQR, 'dqr-row-key-empty', 'spec.rowKey', { ...dqrBase, rowKey: [] }),
  invalid(DQR, 'dqr-row-key-duplicate', 'spec.rowKey', { ...dqrBase, rowKey: ['id', 'id'] }),
  invalid(DQR, 'dqr-row-key-string', 'spec.rowKey', { ...dqrBase, rowKey: 'id' }),
  invalid(DQR, 'dqr-ledger-without-table', 'spec.ledger.table', { ...dqrBase, ledger: {} }),
  invalid(DQR, 'dqr-empty-status-update-query', 'spec.statusUpdateQueryTemplate', {
    ...dqrBase,
    statusUpdateQueryTemplate: '',
  }),
  invalid(CT, 'ct-missing-spec', 'spec', undefined),
  invalid(CT, 'ct-secret-and-in-cluster', 'spec.inCluster', { ...ctBase, inCluster: true, allowedNamespaces: ['tenants'] }),
  invalid(CT, 'ct-in-cluster-without-allowed-namespaces', 'spec.allowedNamespaces', { inCluster: true }),
  invalid(CT, 'ct-in-cluster-with-empty-allowed-namespaces', 'spec.allowedNamespaces', { inCluster: true, allowedNamespaces: [] }),
  invalid(CT, 'ct-neither-secret-nor-in-cluster', 'spec.kubeconfigSecretRef', { paused: false }),
  invalid(CT, 'ct-in-cluster-false-alone', 'spec.kubeconfigSecretRef', { inCluster: false }),
  invalid(CT, 'ct-secret-ref-without-name', 'spec.kubeconfigSecretRef.name', { kubeconfigSecretRef: { key: 'value' } }),
  invalid(CT, 'ct-negative-qps', 'spec.rateLimit.qps', { ...ctBase, rateLimit: { qps: -1 } }),
  invalid(CT, 'ct-fractional-qps', 'spec.rateLimit.qps', { ...ctBase, rateLimit: { qps: 2.5 } }),
  invalid(CT, 'ct-burst-string', 'spec.rateLimit.burst', { ...ctBase, rateLimit: { burst: '100' } }),
  invalid(CT, 'ct-concurrency-too-high', 'spec.rateLimit.concurrency', { ...ctBase, rateLimit: { concurrency: 1000 } }),
  invalid(CT, 'ct-bad-allowed-namespace', 'spec.allowedNamespaces[0]', { ...ctBase, allowedNamespaces: ['Team_A'] }),
  invalid(CT, 'ct-star-allowed-namespace', 'spec.allowedNamespaces[0]', { ...ctBase, allowedNamespaces: ['*'] }),
  invalid(CT, 'ct-duplicate-source-namespace', 'spec.allowedSourceNamespaces[1]', {
    ...ctBase,
    allowedSourceNamespaces: ['platform', 'platform'],
  }),
  invalid(CT, 'ct-paused-string', 'spec.paused', { ...ctBase, paused: 'true' }),
];

export const apiCases: readonly ApiCase[] = [
  ...sampleCases('examples'),
  ...sampleCases('clusters'),
  ...validCases,
  ...invalidCases,
];
