import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { load } from 'js-yaml';
import { literalKinds } from '../../src/render/literal-kinds.ts';

const kinds = (source: string): string[] => [...literalKinds(source)].sort();

test('the apiVersion and kind of each YAML document, core group as /Kind', () => {
  assert.deepEqual(kinds('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n---\napiVersion: apps/v1\nkind: "Deployment"\n'), ['/ConfigMap', 'apps/Deployment']);
});

test('nested kinds without an apiVersion of their own are not kinds the template renders', () => {
  const source = 'apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\nsubjects:\n  - kind: Group\n    name: x\n';
  assert.deepEqual(kinds(source), ['rbac.authorization.k8s.io/RoleBinding']);
});

test('a computed kind or apiVersion names nothing', () => {
  assert.deepEqual(kinds('apiVersion: v1\nkind: {{row.kind}}\n'), []);
  assert.deepEqual(kinds('apiVersion: {{row.api}}\nkind: Secret\n'), []);
  assert.deepEqual(kinds('apiVersion: v1\nkind: Config{{row.x}}\n'), []);
});

test('alternatives in blocks all count; items of a top-level list pair within their item', () => {
  assert.deepEqual(kinds('apiVersion: v1\n{{#if row.a}}\nkind: ConfigMap\n{{else}}\nkind: Secret\n{{/if}}\nmetadata: {name: x}\n'), ['/ConfigMap', '/Secret']);
  assert.deepEqual(kinds('{{#if (eq row.v "dup")}}apiVersion: v1\nkind: ConfigMap\n{{else}}apiVersion: v1\nkind: Secret\n{{/if}}'), ['/ConfigMap', '/Secret']);
  assert.deepEqual(kinds('- apiVersion: v1\n  kind: ConfigMap\n- apiVersion: apps/v1\n  kind: Deployment\n'), ['/ConfigMap', 'apps/Deployment']);
});

test('JSON templates pair keys of the same object', () => {
  assert.deepEqual(kinds('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"kind":"Secret"}}'), ['/ConfigMap']);
  assert.deepEqual(kinds('[{"apiVersion": "v1", "kind": "ConfigMap"}, {"apiVersion": "batch/v1", "kind": "Job", "spec": {"apiVersion": "x/v1"}}]'), ['/ConfigMap', 'batch/Job']);
});

test('every example names the kinds it renders', () => {
  const found: Record<string, string[]> = {};
  for (const file of readdirSync(new URL('../../examples/', import.meta.url)).filter((f) => f.endsWith('.yaml')).sort()) {
    const dqr = load(readFileSync(new URL(`../../examples/${file}`, import.meta.url), 'utf8')) as { spec: { template: string } };
    found[file] = kinds(dqr.spec.template);
  }
  assert.deepEqual(found, {
    'app-rollouts.yaml': ['apps/Deployment'],
    'tenant-deployments.yaml': ['/Service', 'apps/Deployment'],
    'user-configmaps.yaml': ['/ConfigMap'],
  });
});
