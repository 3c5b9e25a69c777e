import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileTemplate, renderRow, valueAt, withValuesFrom, withoutPointers, type RenderedObject } from '../../src/render/index.ts';

const owner = { hubId: 'hub-1', namespace: 'team-a', name: 'apps', uid: '0b7e1c52-1111-2222-3333-444455556666', target: 'fleet/c' };
const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{{row.id}}
spec:
  replicas: {{row.replicas}}
  selector:
    matchLabels:
      app: a
  template:
    metadata:
      labels:
        app: a
    spec:
      containers:
        - name: app
          image: "{{row.image}}"
`;

function render(row: Record<string, unknown>, ignoreFields?: ReadonlyMap<string, readonly string[]>): RenderedObject {
  const result = renderRow(compileTemplate(deployment), { row, metadata: { name: 'apps', namespace: 'team-a', labels: {}, annotations: {} }, cluster: { name: 'c', labels: {} } }, {
    rowKey: String(row['id']),
    defaultNamespace: 'team-a',
    owner,
    ...(ignoreFields === undefined ? {} : { ignoreFields }),
  });
  if (!result.ok) assert.fail(result.failure.message);
  const [object] = result.objects;
  assert.ok(object !== undefined);
  return object;
}

const replicas = new Map([['apps/Deployment', ['/spec/replicas']]]);

test('a field left to others is in the create body only, and not in the hash', () => {
  const three = render({ id: 1, replicas: 3, image: 'app:1' }, replicas);
  const five = render({ id: 1, replicas: 5, image: 'app:1' }, replicas);
  assert.equal(valueAt(three.createBody, '/spec/replicas'), 3, 'created as rendered');
  assert.equal(valueAt(three.body, '/spec/replicas'), undefined, 'an update does not send it');
  assert.deepEqual(three.ignoredPointers, ['/spec/replicas']);
  assert.equal(three.hash, five.hash, 'a change of the template there re-applies nothing');
  assert.notEqual(render({ id: 1, replicas: 3, image: 'app:2' }, replicas).hash, three.hash, 'any other change does');
  assert.equal((three.createBody?.['metadata'] as { annotations: Record<string, string> }).annotations['rowcast.dev/hash'], three.hash);
  assert.equal((three.body['metadata'] as { annotations: Record<string, string> }).annotations['rowcast.dev/hash'], three.hash);
  assert.equal(valueAt(three.body, '/spec/template/spec/containers/0/image'), 'app:1', 'the rest of the object is untouched');
});

test('without ignoreFields, or for another kind, nothing changes', () => {
  const plain = render({ id: 1, replicas: 3, image: 'app:1' });
  assert.equal(plain.createBody, undefined);
  assert.equal(valueAt(plain.body, '/spec/replicas'), 3);
  const other = render({ id: 1, replicas: 3, image: 'app:1' }, new Map([['/ConfigMap', ['/spec/replicas']]]));
  assert.equal(other.createBody, undefined);
  assert.equal(other.hash, plain.hash);
});

test('JSON pointers: escapes, arrays, missing paths; the input is never changed', () => {
  const doc = { spec: { 'a/b': { 'c~d': 1 }, list: [{ x: 1 }, { x: 2 }], keep: true } };
  const before = JSON.stringify(doc);
  assert.equal(valueAt(doc, '/spec/a~1b/c~0d'), 1);
  assert.equal(valueAt(doc, '/spec/list/1/x'), 2);
  assert.equal(valueAt(doc, '/spec/list/01/x'), undefined, 'a leading zero is no index');
  assert.equal(valueAt(doc, '/spec/nothing/here'), undefined);
  const stripped = withoutPointers(doc, ['/spec/a~1b/c~0d', '/spec/list/0', '/spec/missing']);
  assert.equal(stripped.removed, true);
  assert.deepEqual(stripped.value, { spec: { 'a/b': {}, list: [{ x: 2 }], keep: true } });
  assert.equal(withoutPointers(doc, ['/spec/missing']).removed, false);
  assert.equal(JSON.stringify(doc), before, 'copy on write');
  const filled = withValuesFrom({ spec: { keep: true } }, { spec: { replicas: 7, deep: { a: 1 } } }, ['/spec/replicas', '/spec/deep/a', '/spec/absent']);
  assert.deepEqual(filled, { spec: { keep: true, replicas: 7, deep: { a: 1 } } }, 'what the member holds goes in; what it lacks stays out');
});
