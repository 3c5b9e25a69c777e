import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  acceptsSourceNamespace,
  allowedPrunes,
  allowsMemberNamespace,
  parseClusterTarget,
  parseDatabaseQueryResource,
  type ClusterTarget,
  type DatabaseQueryResource,
  type FieldError,
  type ParseResult,
} from '../../src/api/index.ts';
import { apiCases, type ApiCase } from '../api-cases.ts';

function parse(c: Pick<ApiCase, 'kind' | 'manifest'>): ParseResult<DatabaseQueryResource | ClusterTarget> {
  return c.kind === 'DatabaseQueryResource' ? parseDatabaseQueryResource(c.manifest) : parseClusterTarget(c.manifest);
}

function names(path: string, field: string): boolean {
  return path === field || path.startsWith(`${field}.`) || path.startsWith(`${field}[`);
}

function describeErrors(errors: readonly FieldError[]): string {
  return errors.map((e) => `${e.path}: ${e.message}`).join('; ');
}

function dqr(manifest: Record<string, unknown>): DatabaseQueryResource {
  const result = parseDatabaseQueryResource(manifest);
  if (!result.ok) assert.fail(describeErrors(result.errors));
  return result.value;
}

function ct(manifest: Record<string, unknown>): ClusterTarget {
  const result = parseClusterTarget(manifest);
  if (!result.ok) assert.fail(describeErrors(result.errors));
  return result.value;
}

function findCase(name: string): ApiCase {
  const found = apiCases.find((c) => c.name === name);
  if (found === undefined) assert.fail(`no case ${name}`);
  return found;
}

function withSpec(base: ApiCase, spec: Record<string, unknown>): Record<string, unknown> {
  return { ...base.manifest, spec: { ...(base.manifest['spec'] as Record<string, unknown>), ...spec } };
}

describe('the shared case table', () => {
  test('has unique case names and metadata names', () => {
    const metadataNames = apiCases.map((c) => (c.manifest['metadata'] as { name: string }).name);
    assert.equal(new Set(apiCases.map((c) => c.name)).size, apiCases.length);
    assert.equal(new Set(metadataNames).size, apiCases.length);
    for (const name of metadataNames) assert.match(name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  });

  test('includes the samples and names a field for every invalid case', () => {
    const samples = apiCases.filter((c) => c.name.startsWith('examples/') || c.name.startsWith('clusters/'));
    assert.ok(samples.length >= 5, `only ${samples.length} samples`);
    assert.ok(samples.every((c) => c.valid));
    for (const c of apiCases.filter((x) => !x.valid)) assert.ok(c.field !== undefined, c.name);
  });
});

describe('parser verdicts match the table', () => {
  for (const c of apiCases) {
    test(`${c.name} is ${c.valid ? 'valid' : `invalid at ${c.field ?? '?'}`}`, () => {
      const result = parse(c);
      if (c.valid) {
        assert.ok(result.ok, result.ok ? '' : describeErrors(result.errors));
        return;
      }
      assert.ok(!result.ok, 'accepted an invalid manifest');
      const field = c.field ?? '';
      assert.ok(
        result.errors.some((e) => names(e.path, field)),
        `no error names ${field}: ${describeErrors(result.errors)}`,
      );
    });
  }
});

describe('DatabaseQueryResource defaults', () => {
  test('a minimal spec gets every default', () => {
    const { spec, metadata } = dqr(findCase('dqr-minimal').manifest);
    assert.equal(metadata.name, 'dqr-minimal');
    assert.equal(metadata.namespace, undefined);
    assert.deepEqual(spec.database, {
      type: 'postgres',
      connectionSecretRef: {
        name: 'app-db',
        hostKey: 'host',
        portKey: 'port',
        userKey: 'username',
        passwordKey: 'password',
        dbNameKey: 'dbname',
        sslModeKey: 'sslmode',
      },
      pool: { max: 5, idleTimeoutMs: 30_000, statementTimeoutMs: 60_000 },
    });
    assert.equal(spec.rowKey, undefined);
    assert.equal(spec.pollIntervalMs, 30_000);
    assert.deepEqual(spec.changeDetection, { mode: 'none' });
    assert.equal(spec.prune, true);
    assert.deepEqual(spec.pruneLimit, { kind: 'percent', percent: 50 });
    assert.equal(spec.deletionPolicy, 'Delete');
    assert.equal(spec.statusUpdateQueryTemplate, undefined);
    assert.equal(spec.ledger, undefined);
    assert.deepEqual(spec.targets, {
      clusters: [{ namespace: undefined, name: 'east-1' }],
      clusterSelector: undefined,
      rowClusterColumn: undefined,
    });
  });

  test('null counts as absent, as the apiserver prunes it before defaulting', () => {
    assert.equal(dqr(findCase('dqr-null-poll-interval').manifest).spec.pollIntervalMs, 30_000);
  });

  test('given values win and are converted', () => {
    const { spec } = dqr(findCase('dqr-every-field').manifest);
    assert.deepEqual(spec.database.pool, { max: 10, idleTimeoutMs: 120_000, statementTimeoutMs: 15_000 });
    assert.equal(spec.database.connectionSecretRef.passwordKey, 'PGPASSWORD');
    assert.deepEqual(spec.rowKey, ['tenant', 'region']);
    assert.equal(spec.pollIntervalMs, 5_400_000);
    assert.deepEqual(spec.changeDetection, { mode: 'timestamp', tableName: 'app.items', timestampColumn: 'updated_at' });
    assert.deepEqual(spec.targets.clusters, [
      { namespace: undefined, name: 'east-1' },
      { namespace: 'platform', name: 'west-2.example' },
    ]);
    assert.deepEqual(spec.targets.clusterSelector, {
      matchLabels: { environment: 'production' },
      matchExpressions: [
        { key: 'region', operator: 'In', values: ['us-east', 'us-west'] },
        { key: 'rowcast.dev/quarantined', operator: 'DoesNotExist', values: [] },
      ],
    });
    assert.equal(spec.targets.rowClusterColumn, 'clusters');
    assert.equal(spec.prune, false);
    assert.deepEqual(spec.pruneLimit, { kind: 'count', count: 25 });
    assert.equal(spec.deletionPolicy, 'Orphan');
    assert.deepEqual(spec.ledger, { table: 'rowcast_ledger' });
    assert.match(spec.statusUpdateQueryTemplate ?? '', /\{\{param resource\.status\.readyReplicas\}\}/);
  });

  test('durations keep Go semantics, and "0" switches the statement timeout off', () => {
    const { spec } = dqr(findCase('dqr-fractional-durations').manifest);
    assert.equal(spec.pollIntervalMs, 150_000);
    assert.equal(spec.database.pool.idleTimeoutMs, 1500);
    assert.equal(spec.database.pool.statementTimeoutMs, 0);
    assert.equal(dqr(findCase('dqr-micro-sign-duration').manifest).spec.pollIntervalMs, 1000);
  });

  test('the samples parse to what their comments promise', () => {
    const tenants = dqr(findCase('examples/tenant-deployments.yaml').manifest).spec;
    assert.equal(tenants.deletionPolicy, 'Orphan');
    assert.deepEqual(tenants.targets.clusterSelector?.matchLabels, { environment: 'production' });
    const rollouts = dqr(findCase('examples/app-rollouts.yaml').manifest).spec;
    assert.deepEqual(rollouts.changeDetection, { mode: 'notify', channel: 'rowcast_apps' });
    assert.equal(rollouts.targets.rowClusterColumn, 'target_clusters');
    const users = dqr(findCase('examples/user-configmaps.yaml').manifest).spec;
    assert.deepEqual(users.pruneLimit, { kind: 'percent', percent: 20 });
    assert.equal(users.changeDetection.mode, 'timestamp');
  });

  test('the input object is not modified', () => {
    const manifest = findCase('dqr-minimal').manifest;
    const before = structuredClone(manifest);
    dqr(manifest);
    assert.deepEqual(manifest, before);
  });
});

describe('DatabaseQueryResource errors', () => {
  test('every error is collected, not only the first', () => {
    const base = findCase('dqr-minimal');
    const result = parseDatabaseQueryResource(
      withSpec(base, { query: '', pollInterval: '5 minutes', deletionPolicy: 'Retain', targets: {} }),
    );
    assert.ok(!result.ok);
    const paths = new Set(result.errors.map((e) => e.path));
    for (const path of ['spec.query', 'spec.pollInterval', 'spec.deletionPolicy']) assert.ok(paths.has(path), path);
  });

  test('cross-field rules are skipped when a type or enum error makes them moot, as on the apiserver', () => {
    const base = findCase('dqr-minimal');
    const result = parseDatabaseQueryResource(withSpec(base, { prune: 'yes', targets: {} }));
    assert.ok(!result.ok);
    assert.deepEqual(
      result.errors.map((e) => e.path),
      ['spec.prune'],
    );
  });

  test('unknown fields are refused, like kubectl apply does', () => {
    const base = findCase('dqr-minimal');
    const result = parseDatabaseQueryResource({
      ...withSpec(base, { polInterval: '10s' }),
      extra: true,
    });
    assert.ok(!result.ok);
    assert.deepEqual(result.errors.map((e) => e.path).sort(), ['extra', 'spec.polInterval']);
  });

  test('the envelope is checked: apiVersion, kind and metadata.name', () => {
    const base = findCase('dqr-minimal');
    const result = parseDatabaseQueryResource({
      ...base.manifest,
      apiVersion: 'rowcast.dev/v1',
      kind: 'ClusterTarget',
      metadata: { labels: { a: 1 } },
    });
    assert.ok(!result.ok);
    assert.deepEqual(result.errors.map((e) => e.path).sort(), ['apiVersion', 'kind', 'metadata.labels.a', 'metadata.name']);
  });

  test('anything at all is answered with errors, never a throw', () => {
    for (const input of [undefined, null, 42, 'spec', [], {}, { spec: [] }, { metadata: 'x', spec: null }]) {
      const result = parseDatabaseQueryResource(input);
      assert.ok(!result.ok, JSON.stringify(input));
      assert.ok(result.errors.length > 0);
      assert.ok(!parseClusterTarget(input).ok);
    }
  });

  test('a huge malformed duration is refused quickly', () => {
    const base = findCase('dqr-minimal');
    const started = performance.now();
    const result = parseDatabaseQueryResource(withSpec(base, { pollInterval: `${'1'.repeat(200_000)}x` }));
    assert.ok(!result.ok);
    assert.ok(performance.now() - started < 1000);
  });
});

describe('ClusterTarget defaults', () => {
  test('absent and zero rate limits both mean the defaults', () => {
    for (const name of ['ct-minimal', 'ct-zero-rate-limit']) {
      assert.deepEqual(ct(findCase(name).manifest).spec.rateLimit, { qps: 50, burst: 100, concurrency: 8 }, name);
    }
  });

  test('a kubeconfig Secret gets the default key and the rest is empty', () => {
    const { spec } = ct(findCase('ct-minimal').manifest);
    assert.equal(spec.inCluster, false);
    assert.deepEqual(spec.kubeconfigSecretRef, { name: 'east-1-kubeconfig', key: 'kubeconfig' });
    assert.deepEqual(spec.allowedNamespaces, []);
    assert.deepEqual(spec.allowedSourceNamespaces, []);
    assert.equal(spec.paused, false);
  });

  test('inCluster targets carry no Secret reference', () => {
    const { spec } = ct(findCase('clusters/hub.yaml').manifest);
    assert.equal(spec.inCluster, true);
    assert.equal(spec.kubeconfigSecretRef, undefined);
    assert.deepEqual(spec.allowedNamespaces, ['profiles', 'apps']);
  });

  test('the east-1 sample keeps its own rate limit', () => {
    assert.deepEqual(ct(findCase('clusters/east-1.yaml').manifest).spec.rateLimit, { qps: 20, burst: 40, concurrency: 4 });
  });
});

describe('field semantics', () => {
  test('a percentage prune limit rounds down, so one object of one needs a confirmation at 50%', () => {
    assert.equal(allowedPrunes({ kind: 'percent', percent: 50 }, 1), 0);
    assert.equal(allowedPrunes({ kind: 'percent', percent: 50 }, 3), 1);
    assert.equal(allowedPrunes({ kind: 'percent', percent: 100 }, 7), 7);
    assert.equal(allowedPrunes({ kind: 'percent', percent: 0 }, 7), 0);
    assert.equal(allowedPrunes({ kind: 'count', count: 10 }, 3), 10);
  });

  test('source namespaces: own namespace always, others when listed or "*"', () => {
    const base = ct(findCase('clusters/east-1.yaml').manifest);
    const target: ClusterTarget = { ...base, metadata: { ...base.metadata, namespace: 'fleet' } };
    assert.equal(acceptsSourceNamespace(target, 'fleet'), true);
    assert.equal(acceptsSourceNamespace(target, 'platform'), true);
    assert.equal(acceptsSourceNamespace(target, 'team-a'), false);
    const open = ct(findCase('ct-every-field').manifest);
    assert.equal(acceptsSourceNamespace(open, 'team-a'), true);
  });

  test('member namespaces: a list refuses other namespaces and cluster-scoped objects', () => {
    const limited = ct(findCase('clusters/east-1.yaml').manifest);
    assert.equal(allowsMemberNamespace(limited, 'tenants'), true);
    assert.equal(allowsMemberNamespace(limited, 'kube-system'), false);
    assert.equal(allowsMemberNamespace(limited, undefined), false);
    const open = ct(findCase('ct-minimal').manifest);
    assert.equal(allowsMemberNamespace(open, 'kube-system'), true);
    assert.equal(allowsMemberNamespace(open, undefined), true);
  });
});
