import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileTemplate, renderRow, type RenderFailure, type RowRenderResult } from '../../src/render/index.ts';

const owner = { hubId: 'hub-1', namespace: 'team-a', name: 'users', uid: 'uid-1', target: 'fleet/c' };

/** Every kind these outputs render: allowed kinds are not what this file tests. */
const allowedKinds = new Set(['/ConfigMap', '/Secret', 'apps/Deployment', 'example.com/ConfigMap', 'networking.k8s.io/NetworkPolicy']);

/** Renders a fixed output (the row carries the text) through the whole pipeline. */
function run(output: string): RowRenderResult {
  return renderRow(
    compileTemplate('{{{row.text}}}'),
    {
      row: { text: output },
      metadata: { name: 'users', namespace: 'team-a', labels: {}, annotations: {} },
      cluster: { name: 'eu-1', labels: {} },
    },
    { rowKey: 'k', defaultNamespace: 'team-a', owner, allowedKinds },
  );
}

function failures(output: string): RenderFailure[] {
  const result = run(output);
  if (result.ok) assert.fail('expected validation to fail');
  return result.failures;
}

/** The single failure's field, document and message of an output that must fail. */
function only(output: string): RenderFailure {
  const all = failures(output);
  assert.equal(all.length, 1, `expected one failure, got ${JSON.stringify(all)}`);
  return all[0] as RenderFailure;
}

function ok(output: string): void {
  const result = run(output);
  if (!result.ok) assert.fail(`${result.failure.field}: ${result.failure.message}`);
}

const doc = (metadata: string, extra = ''): string => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n${metadata}\n${extra}`;

describe('shape', () => {
  test('a document must be a mapping', () => {
    const failure = only('just text');
    assert.equal(failure.field, '.');
    assert.equal(failure.document, 0);
    assert.match(failure.message, /must be a mapping, not a string/);
    assert.deepEqual(
      failures('[1, 2]').map((f) => f.document),
      [0, 1],
      'items of a top-level list are documents of their own',
    );
  });

  test('apiVersion and kind must be non-empty strings of the right form', () => {
    assert.equal(only('kind: ConfigMap\nmetadata:\n  name: x').field, 'apiVersion');
    assert.equal(only('apiVersion: ""\nkind: ConfigMap\nmetadata:\n  name: x').field, 'apiVersion');
    assert.equal(only('apiVersion: 1\nkind: ConfigMap\nmetadata:\n  name: x').field, 'apiVersion');
    assert.equal(only('apiVersion: Apps/V1\nkind: Deployment\nmetadata:\n  name: x').field, 'apiVersion');
    assert.equal(only('apiVersion: v1\nmetadata:\n  name: x').field, 'kind');
    assert.equal(only('apiVersion: v1\nkind: "Config Map"\nmetadata:\n  name: x').field, 'kind');
    ok('apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: x');
  });

  test('metadata must be a mapping with a name', () => {
    assert.equal(only('apiVersion: v1\nkind: ConfigMap').field, 'metadata.name');
    assert.equal(only('apiVersion: v1\nkind: ConfigMap\nmetadata: [a]').field, 'metadata');
    assert.equal(only(doc('  namespace: x')).field, 'metadata.name');
  });

  test('status must not be set', () => {
    const failure = only(doc('  name: x', 'status:\n  phase: Ready'));
    assert.equal(failure.field, 'status');
  });

  test('every problem of a document is reported, each with its document', () => {
    const all = failures('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\napiVersion: ""\nkind: ""\nmetadata:\n  name: Bad_Name\n  uid: x\n');
    assert.deepEqual(
      all.map((f) => [f.document, f.field]),
      [
        [1, 'apiVersion'],
        [1, 'kind'],
        [1, 'metadata.name'],
        [1, 'metadata.uid'],
      ],
    );
  });
});

describe('names', () => {
  test('metadata.name is a DNS-1123 subdomain', () => {
    ok(doc('  name: a.b-c.123'));
    ok(doc(`  name: ${'a'.repeat(253)}`));
    for (const bad of ['Upper', 'under_score', '-leading', 'trailing-', 'a'.repeat(254), '"has space"', '"a..b"', '""', '5']) {
      const failure = only(doc(`  name: ${bad}`));
      assert.equal(failure.field, 'metadata.name', bad);
    }
  });

  test('the invalid name is shown so a person can see what was wrong', () => {
    assert.match(only(doc('  name: Acme_Corp')).message, /"Acme_Corp": must be a DNS-1123 subdomain/);
  });

  test('metadata.namespace, when present, is a DNS-1123 label', () => {
    ok(doc('  name: x\n  namespace: team-b'));
    for (const bad of ['a.b', 'Team', 'a'.repeat(64), '""', 'null', '7']) {
      assert.equal(only(doc(`  name: x\n  namespace: ${bad}`)).field, 'metadata.namespace', bad);
    }
  });
});

describe('labels and annotations', () => {
  test('valid keys and values pass', () => {
    ok(doc(`  name: x\n  labels:\n    app.kubernetes.io/name: web\n    tier: ""\n    v: ${'a'.repeat(63)}\n  annotations:\n    example.com/Note: "any text: at all\\n"`));
    ok(doc('  name: x\n  labels:\n  annotations:'));
  });

  test('label values follow Kubernetes rules', () => {
    for (const bad of ['a'.repeat(64), '-x', 'x-', '"has space"', 'a/b']) {
      const failure = only(doc(`  name: x\n  labels:\n    app: ${bad}`));
      assert.equal(failure.field, 'metadata.labels[app]', bad);
    }
  });

  test('label values must be strings: unquoted true and 1 are not', () => {
    const failure = only(doc('  name: x\n  labels:\n    enabled: true'));
    assert.equal(failure.field, 'metadata.labels[enabled]');
    assert.match(failure.message, /must be a string, not a boolean \(quote it/);
    assert.equal(only(doc('  name: x\n  annotations:\n    n: 1')).field, 'metadata.annotations[n]');
  });

  test('label and annotation keys are qualified names', () => {
    for (const bad of ['"/name"', '"Example.com/name"', '"a/b/c"', 'k'.repeat(64), '"-k"', '"prefix/"']) {
      assert.match(only(doc(`  name: x\n  labels:\n    ${bad}: v`)).field, /^metadata\.labels\[/, bad);
    }
    assert.match(only(doc('  name: x\n  annotations:\n    "bad key": v')).field, /^metadata\.annotations\[/);
  });

  test('labels and annotations must be mappings', () => {
    assert.equal(only(doc('  name: x\n  labels: [a]')).field, 'metadata.labels');
    assert.equal(only(doc('  name: x\n  annotations: text')).field, 'metadata.annotations');
  });

  test('templates may not set rowcast.dev keys', () => {
    for (const key of ['rowcast.dev/owner', 'rowcast.dev/hash', 'rowcast.dev/row-key', 'rowcast.dev/owner-ref', 'rowcast.dev/other']) {
      assert.equal(only(doc(`  name: x\n  labels:\n    ${key}: v`)).field, `metadata.labels[${key}]`);
      assert.match(only(doc(`  name: x\n  annotations:\n    ${key}: v`)).message, /set by Rowcast/);
    }
  });

  test('annotations may not exceed 256 KiB in total', () => {
    const big = 'x'.repeat(200 * 1024);
    ok(doc(`  name: x\n  annotations:\n    a: ${big}`));
    const failure = only(doc(`  name: x\n  annotations:\n    a: ${big}\n    b: ${big}`));
    assert.equal(failure.field, 'metadata.annotations');
    assert.match(failure.message, /more than the 262144 allowed/);
  });
});

describe('fields the member cluster owns', () => {
  for (const field of [
    'managedFields',
    'resourceVersion',
    'uid',
    'generation',
    'creationTimestamp',
    'deletionTimestamp',
    'deletionGracePeriodSeconds',
    'selfLink',
    'ownerReferences',
    'generateName',
  ]) {
    test(`metadata.${field} is refused`, () => {
      const failure = only(doc(`  name: x\n  ${field}: "1"`));
      assert.equal(failure.field, `metadata.${field}`);
    });
  }

  test('owner references are refused because they cannot cross clusters', () => {
    assert.match(only(doc('  name: x\n  ownerReferences: []')).message, /cannot cross clusters/);
  });
});

describe('duplicate identities', () => {
  const cm = (name: string, namespace?: string, apiVersion = 'v1', kind = 'ConfigMap'): string =>
    `---\napiVersion: ${apiVersion}\nkind: ${kind}\nmetadata:\n  name: ${name}\n${namespace === undefined ? '' : `  namespace: ${namespace}\n`}`;

  test('the same group, kind, namespace and name twice in a row fails that row', () => {
    const failure = only(cm('a') + cm('b') + cm('a'));
    assert.equal(failure.field, 'metadata.name');
    assert.equal(failure.document, 2);
    assert.match(failure.message, /also rendered by document 0/);
  });

  test('a defaulted namespace is the DQR namespace for this check', () => {
    assert.equal(only(cm('a') + cm('a', 'team-a')).document, 1);
  });

  test('the version does not make a different object; group, kind or namespace do', () => {
    assert.equal(only(cm('a', undefined, 'apps/v1', 'Deployment') + cm('a', undefined, 'apps/v1beta1', 'Deployment')).document, 1);
    ok(cm('a') + cm('a', 'other') + cm('a', undefined, 'v1', 'Secret') + cm('a', undefined, 'example.com/v1', 'ConfigMap'));
  });
});
