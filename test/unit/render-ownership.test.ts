import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  canonicalJson,
  compileTemplate,
  contentHash,
  ownerLabelValue,
  ownerMatcher,
  renderRow,
  type OwnerIdentity,
  type RenderedObject,
} from '../../src/render/index.ts';

const owner: OwnerIdentity = { hubId: 'hub-1', namespace: 'team-a', name: 'users', uid: '0b7e1c52-aaaa-bbbb-cccc-444455556666', target: 'fleet/east' };

function render(source: string, row: Record<string, unknown> = {}, who: OwnerIdentity = owner, rowKey = '42'): RenderedObject {
  const result = renderRow(
    compileTemplate(source),
    { row, metadata: { name: who.name, namespace: who.namespace, labels: {}, annotations: {} }, cluster: { name: 'c', labels: {} } },
    { rowKey, defaultNamespace: who.namespace, owner: who },
  );
  if (!result.ok) assert.fail(`${result.failure.field}: ${result.failure.message}`);
  assert.equal(result.objects.length, 1);
  return result.objects[0] as RenderedObject;
}

const CM = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  labels:\n    app: web\n  annotations:\n    note: hi\ndata:\n  v: {{quote row.v}}\n';

function meta(object: RenderedObject): { labels: Record<string, string>; annotations: Record<string, string>; namespace?: string } {
  return object.body.metadata as { labels: Record<string, string>; annotations: Record<string, string>; namespace?: string };
}

describe('ownership stamping', () => {
  test('owner label, owner-ref, row-key and hash are stamped next to the template\'s own', () => {
    const object = render(CM, { v: 'x' });
    const { labels, annotations } = meta(object);
    assert.deepEqual(labels, { app: 'web', 'rowcast.dev/owner': ownerLabelValue(owner) });
    assert.equal(annotations['note'], 'hi');
    assert.deepEqual(JSON.parse(annotations['rowcast.dev/owner-ref'] ?? ''), {
      hub: 'hub-1',
      namespace: 'team-a',
      name: 'users',
      uid: owner.uid,
      target: 'fleet/east',
    });
    assert.equal(annotations['rowcast.dev/owner-ref'], `{"hub":"hub-1","namespace":"team-a","name":"users","uid":"${owner.uid}","target":"fleet/east"}`);
    assert.equal(annotations['rowcast.dev/row-key'], '42');
    assert.equal(annotations['rowcast.dev/hash'], object.hash);
  });

  test('objects without labels or annotations get them', () => {
    const object = render('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bare\n');
    assert.deepEqual(Object.keys(meta(object).labels), ['rowcast.dev/owner']);
    assert.deepEqual(Object.keys(meta(object).annotations).sort(), ['rowcast.dev/hash', 'rowcast.dev/owner-ref', 'rowcast.dev/row-key']);
  });

  test('the namespace is defaulted into the body, and said so', () => {
    const defaulted = render('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n');
    assert.equal(defaulted.namespace, 'team-a');
    assert.equal(defaulted.namespaceDefaulted, true);
    assert.equal(meta(defaulted).namespace, 'team-a');
    const written = render('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: other\n');
    assert.equal(written.namespace, 'other');
    assert.equal(written.namespaceDefaulted, false);
  });

  test('the row key is stamped as given, whatever characters it holds', () => {
    const object = render(CM, { v: 'x' }, owner, '["eu",42,"a/b c"]');
    assert.equal(meta(object).annotations['rowcast.dev/row-key'], '["eu",42,"a/b c"]');
  });
});

describe('ownerLabelValue', () => {
  test('is a valid label value for the longest names', () => {
    const long = { hubId: 'h'.repeat(253), namespace: 'n'.repeat(63), name: 'x'.repeat(253), target: `${'n'.repeat(63)}/${'t'.repeat(253)}` };
    for (const who of [owner, long, { hubId: '', namespace: '', name: '', target: '' }]) {
      const value = ownerLabelValue(who);
      assert.match(value, /^[a-z0-9]{1,63}$/);
    }
  });

  test('is stable and tells owners apart, even when their parts join to the same text', () => {
    assert.equal(ownerLabelValue(owner), ownerLabelValue({ ...owner }));
    const values = new Set(
      [
        { hubId: 'hub-1', namespace: 'team-a', name: 'users', target: 'fleet/east' },
        { hubId: 'hub-2', namespace: 'team-a', name: 'users', target: 'fleet/east' },
        { hubId: 'hub-1', namespace: 'team-b', name: 'users', target: 'fleet/east' },
        { hubId: 'hub-1', namespace: 'team-a', name: 'users2', target: 'fleet/east' },
        { hubId: 'hub-1', namespace: 'team', name: '-ausers', target: 'fleet/east' },
        { hubId: 'hub-1team-a', namespace: '', name: 'users', target: 'fleet/east' },
        { hubId: 'hub-1', namespace: 'team-a', name: 'users', target: 'fleet/west' },
        { hubId: 'hub-1', namespace: 'team-a', name: 'users', target: 'fleet/east-again' },
      ].map(ownerLabelValue),
    );
    assert.equal(values.size, 8);
  });

  test('does not depend on the uid: a recreated DQR still owns its objects', () => {
    const recreated: OwnerIdentity = { ...owner, uid: 'other' };
    assert.equal(ownerLabelValue(recreated), ownerLabelValue(owner));
  });
});

describe('ownerMatcher', () => {
  const stamped = (who: OwnerIdentity): { labels: Record<string, string>; annotations: Record<string, string> } => meta(render(CM, { v: 'x' }, who));

  test('owns what it stamped for its ClusterTarget, and not what the same DQR stamped for another', () => {
    const east = ownerMatcher(owner);
    const mine = stamped(owner);
    assert.equal(east.match(mine.labels, mine.annotations), 'current');
    const west = stamped({ ...owner, target: 'fleet/west' });
    assert.equal(east.match(west.labels, west.annotations), undefined);
    const otherDqr = stamped({ ...owner, name: 'orders' });
    assert.equal(east.match(otherDqr.labels, otherDqr.annotations), undefined);
  });

  test('owns what the previous version stamped (no ClusterTarget), on whichever target lists it', () => {
    // The previous version's stamp, as it was written: label over hub, namespace, name; owner-ref without target.
    const labels = { 'rowcast.dev/owner': createHash('sha256').update(JSON.stringify(['hub-1', 'team-a', 'users'])).digest('hex').slice(0, 32) };
    const annotations = { 'rowcast.dev/owner-ref': JSON.stringify({ hub: 'hub-1', namespace: 'team-a', name: 'users', uid: owner.uid }) };
    assert.equal(ownerMatcher(owner).match(labels, annotations), 'legacy');
    assert.equal(ownerMatcher({ ...owner, target: 'fleet/west' }).match(labels, annotations), 'legacy');
    assert.equal(ownerMatcher({ ...owner, uid: 'recreated' }).match(labels, annotations), undefined, 'another DQR of the same name');
    assert.match(ownerMatcher(owner).selector, new RegExp(`^rowcast\\.dev/owner in \\(${ownerLabelValue(owner)},${labels['rowcast.dev/owner']}\\)$`));
  });

  test('a label that collides with another owner-ref is not ownership', () => {
    const mine = stamped(owner);
    const forged = { ...mine.annotations, 'rowcast.dev/owner-ref': JSON.stringify({ hub: 'hub-1', namespace: 'team-a', name: 'users', uid: 'x', target: 'fleet/east' }) };
    assert.equal(ownerMatcher(owner).match(mine.labels, forged), undefined);
  });
});

describe('content hash', () => {
  test('is the hash of the body as stamped, before the hash annotation', () => {
    const object = render(CM, { v: 'x' });
    const annotations = { ...meta(object).annotations };
    delete annotations['rowcast.dev/hash'];
    const withoutHash = { ...object.body, metadata: { ...meta(object), annotations } };
    assert.equal(object.hash, contentHash(withoutHash));
    assert.match(object.hash, /^[0-9a-f]{32}$/);
  });

  test('does not change with key order in the template', () => {
    const a = render('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  labels:\n    a: "1"\n    b: "2"\ndata:\n  x: "1"\n  y: "2"\n');
    const b = render('kind: ConfigMap\ndata:\n  y: "2"\n  x: "1"\nmetadata:\n  labels:\n    b: "2"\n    a: "1"\n  name: cm\napiVersion: v1\n');
    assert.equal(a.hash, b.hash);
  });

  test('changes when the content, the row key or the owner changes', () => {
    const base = render(CM, { v: 'x' });
    assert.notEqual(render(CM, { v: 'y' }).hash, base.hash);
    assert.notEqual(render(CM, { v: 'x' }, owner, '43').hash, base.hash);
    assert.notEqual(render(CM, { v: 'x' }, { ...owner, uid: 'new-uid' }).hash, base.hash);
    assert.equal(render(CM, { v: 'x' }).hash, base.hash, 'and only then');
  });

  test('the JSON and YAML forms of one object hash the same', () => {
    const yaml = render('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: v\n');
    const json = render('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"data":{"k":"v"}}');
    assert.equal(json.hash, yaml.hash);
  });
});

describe('canonicalJson', () => {
  test('sorts keys at every depth and keeps arrays in order', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } }), '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
  });

  test('follows JSON.stringify for dates, undefined and non-finite numbers', () => {
    assert.equal(canonicalJson({ when: new Date(0), gone: undefined, list: [undefined, Number.NaN] }), '{"list":[null,null],"when":"1970-01-01T00:00:00.000Z"}');
    assert.equal(canonicalJson(undefined), 'null');
    assert.equal(canonicalJson('a"b'), '"a\\"b"');
  });

  test('keeps a "__proto__" key as data', () => {
    const value = JSON.parse('{"__proto__": {"x": 1}, "a": 2}') as unknown;
    assert.equal(canonicalJson(value), '{"__proto__":{"x":1},"a":2}');
  });

  test('refuses circular values and bigints', () => {
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    assert.throws(() => canonicalJson(circular), /circular/);
    assert.throws(() => canonicalJson({ n: 1n }), /bigint/);
  });

  test('contentHash is stable across key order', () => {
    assert.equal(contentHash({ a: 1, b: [1, 2] }), contentHash({ b: [1, 2], a: 1 }));
    assert.notEqual(contentHash({ a: 1, b: [1, 2] }), contentHash({ a: 1, b: [2, 1] }));
  });
});
