// A row can never render a kind outside spec.allowedKinds (default: the
// kinds the template names literally); such a document fails its row.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileTemplate, renderRow, type RenderContext, type RenderFailure, type RenderOptions, type RowRenderResult } from '../../src/render/index.ts';

const owner = { hubId: 'hub-1', namespace: 'team-a', name: 'users', uid: 'uid-1', target: 'fleet/eu-1' };

function context(row: Record<string, unknown>): RenderContext {
  return { row, metadata: { name: 'users', namespace: 'team-a', labels: {}, annotations: {} }, cluster: { name: 'eu-1', labels: {} } };
}

function run(source: string, row: Record<string, unknown>, extra: Partial<RenderOptions> = {}): RowRenderResult {
  return renderRow(compileTemplate(source), context(row), { rowKey: 'k1', defaultNamespace: 'team-a', owner, ...extra });
}

function failureOf(result: RowRenderResult): RenderFailure {
  if (result.ok) assert.fail('expected the row to fail');
  return result.failure;
}

const computed = 'apiVersion: {{row.api}}\nkind: {{row.kind}}\nmetadata:\n  name: x-{{row.id}}\n';

test('by default only the kinds the template names literally: a raw value that renders another kind fails the row', () => {
  const source = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{{row.id}}\ndata:\n  v: "{{row.v}}"\n{{{row.extra}}}\n';
  const ok = run(source, { id: 1, v: 'a', extra: '' });
  assert.equal(ok.ok, true);
  const failure = failureOf(run(source, { id: 1, v: 'a', extra: '---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: pwned\n' }));
  assert.equal(failure.rowKey, 'k1');
  assert.equal(failure.field, 'kind');
  assert.equal(failure.document, 1);
  assert.match(failure.message, /rbac\.authorization\.k8s\.io\/ClusterRoleBinding is not an allowed kind/);
  assert.match(failure.message, /spec\.allowedKinds/);
});

test('a template that computes its kind renders nothing until spec.allowedKinds lists it', () => {
  assert.match(failureOf(run(computed, { id: 1, api: 'v1', kind: 'ConfigMap' })).message, /ConfigMap \(core group\) is not an allowed kind.*names no kind literally/);
  const allowed = new Set(['/ConfigMap', 'apps/Deployment']);
  assert.equal(run(computed, { id: 1, api: 'v1', kind: 'ConfigMap' }, { allowedKinds: allowed }).ok, true);
  assert.equal(run(computed, { id: 1, api: 'apps/v1', kind: 'Deployment' }, { allowedKinds: allowed }).ok, true);
  assert.match(failureOf(run(computed, { id: 1, api: 'v1', kind: 'Secret' }, { allowedKinds: allowed })).message, /^Secret \(core group\) is not an allowed kind \(spec\.allowedKinds: ConfigMap, apps\/Deployment\)/);
  // The group is part of the kind: an apps ConfigMap is not a core one.
  assert.equal(run(computed, { id: 1, api: 'example.com/v1', kind: 'ConfigMap' }, { allowedKinds: allowed }).ok, false);
});
