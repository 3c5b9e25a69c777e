import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  TemplateError,
  compileTemplate,
  renderRow,
  type RenderContext,
  type RenderFailure,
  type RenderedObject,
} from '../../src/render/index.ts';

const owner = { hubId: 'hub-1', namespace: 'team-a', name: 'users', uid: '0b7e1c52-1111-2222-3333-444455556666', target: 'fleet/c' };

function context(row: Record<string, unknown>, cluster: RenderContext['cluster'] = { name: 'eu-1', labels: { region: 'eu' } }): RenderContext {
  return { row, metadata: { name: 'users', namespace: 'team-a', labels: { team: 'a' }, annotations: {} }, cluster };
}

function objects(source: string, row: Record<string, unknown> = {}, cluster?: RenderContext['cluster']): RenderedObject[] {
  const result = renderRow(compileTemplate(source), context(row, cluster), { rowKey: 'k1', defaultNamespace: 'team-a', owner });
  if (!result.ok) assert.fail(`${result.failure.field}: ${result.failure.message}`);
  return result.objects;
}

function failureOf(source: string, row: Record<string, unknown> = {}): RenderFailure {
  const result = renderRow(compileTemplate(source), context(row), { rowKey: 'k1', defaultNamespace: 'team-a', owner });
  if (result.ok) assert.fail('expected the row to fail');
  assert.equal(result.failure, result.failures[0]);
  return result.failure;
}

const configMap = (data: string): string => `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{{row.id}}
data:
${data}`;

test('HTML is not escaped: "acme & co" stays as it is', () => {
  const [object] = objects(configMap('  plain: {{row.company}}\n  quoted: {{quote row.company}}'), { id: 1, company: 'acme & co <b>' });
  assert.deepEqual(object?.body.data, { plain: 'acme & co <b>', quoted: 'acme & co <b>' });
});

describe('missing fields', () => {
  test('a misspelt column fails the row, naming the path and the template line', () => {
    const failure = failureOf('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{row.nmae}}\n', { name: 'x' });
    assert.equal(failure.field, 'row.nmae');
    assert.equal(failure.rowKey, 'k1');
    assert.match(failure.message, /template line 4, column 11/);
    assert.match(failure.message, /"row\.nmae" is not defined/);
    assert.equal(failure.document, undefined);
  });

  test('a missing field is an error in helper arguments and block conditions too', () => {
    assert.equal(failureOf('{{lower row.nmae}}', { name: 'x' }).field, 'row.nmae');
    assert.equal(failureOf('{{#if row.flag}}x{{/if}}', {}).field, 'row.flag');
    assert.equal(failureOf('{{#each row.items as |item|}}{{item.nmae}}{{/each}}', { items: [{ name: 'a' }] }).field, 'item.nmae');
  });

  test('a path through NULL, or through text, says which part is wrong', () => {
    const throughNull = failureOf('{{row.config.replicas}}', { config: null });
    assert.equal(throughNull.field, 'row.config.replicas');
    assert.match(throughNull.message, /"row\.config" is null/);
    const throughText = failureOf('x: {{row.name.first}}', { name: 'secret-value' });
    assert.equal(throughText.field, 'row.name.first');
    assert.doesNotMatch(throughText.message, /secret-value/, 'the value is not echoed');
  });

  test('a NULL column renders as empty and is not missing', () => {
    const [object] = objects(configMap('  note: "{{row.note}}"'), { id: 1, note: null });
    assert.deepEqual(object?.body.data, { note: '' });
  });

  test('lookup is the way to read a field that may be absent', () => {
    const [object] = objects(configMap('  size: {{quote (default (lookup row.config "size") "small")}}'), { id: 1, config: {} });
    assert.deepEqual(object?.body.data, { size: 'small' });
  });

  test('a mapping or list printed as it is fails instead of becoming "[object Object]"', () => {
    const failure = failureOf(configMap('  x: {{row.config}}'), { id: 1, config: { a: 1 } });
    assert.equal(failure.field, 'template');
    assert.match(failure.message, /"row\.config" is an object; render it with toJson, toYaml or join/);
  });
});

test('the cluster context lets one row render differently per member cluster', () => {
  const source = configMap('  region: {{cluster.labels.region}}\n  cluster: {{cluster.name}}\n  {{#if (eq cluster.labels.tier "prod")}}\n  replicas: "3"\n  {{/if}}');
  const eu = objects(source, { id: 1 }, { name: 'eu-1', labels: { region: 'eu', tier: 'prod' } });
  const us = objects(source, { id: 1 }, { name: 'us-1', labels: { region: 'us', tier: 'dev' } });
  assert.deepEqual(eu[0]?.body.data, { region: 'eu', cluster: 'eu-1', replicas: '3' });
  assert.deepEqual(us[0]?.body.data, { region: 'us', cluster: 'us-1' });
  assert.notEqual(eu[0].hash, us[0].hash);
});

test('the DQR metadata is in the context', () => {
  const [object] = objects(configMap('  owner: {{metadata.name}}.{{metadata.namespace}}\n  team: {{metadata.labels.team}}'), { id: 1 });
  assert.deepEqual(object?.body.data, { owner: 'users.team-a', team: 'a' });
});

describe('YAML output', () => {
  test('several documents, empty ones skipped but counted', () => {
    const source = `---
apiVersion: v1
kind: ConfigMap
metadata:
  name: a-{{row.id}}
---
---
apiVersion: v1
kind: Secret
metadata:
  name: s-{{row.id}}
  namespace: other
stringData:
  password: {{quote row.password}}
---
`;
    const result = objects(source, { id: 7, password: 'p' });
    assert.deepEqual(
      result.map((o) => [o.kind, o.name, o.namespace, o.namespaceDefaulted, o.document]),
      [
        ['ConfigMap', 'a-7', 'team-a', true, 0],
        ['Secret', 's-7', 'other', false, 2],
      ],
    );
  });

  test('a row may render nothing', () => {
    assert.deepEqual(objects('{{#if row.enabled}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n{{/if}}', { enabled: false }), []);
    assert.deepEqual(objects('---\n# nothing for this row\n---\n'), []);
  });

  test('core schema: yes/no/on and dates stay strings, numbers and booleans do not', () => {
    const [object] = objects(configMap('  a: yes\n  b: off\n  c: 2024-01-02\n  d: "1"'), { id: 1 });
    assert.deepEqual(object?.body.data, { a: 'yes', b: 'off', c: '2024-01-02', d: '1' });
    const [typed] = objects('apiVersion: v1\nkind: X\nmetadata:\n  name: x\nspec:\n  n: 3\n  f: 1.5\n  t: true\n  z: null\n  hex: 0x1F');
    assert.deepEqual(typed?.body.spec, { n: 3, f: 1.5, t: true, z: null, hex: 31 });
  });

  test('anchors, aliases and merge keys work, and stamping one object does not stamp what it shared', () => {
    const source = `apiVersion: apps/v1
kind: Deployment
metadata: &meta
  name: web
  labels: &labels
    app: web
spec:
  selector:
    matchLabels: *labels
  template:
    metadata:
      <<: *meta
      annotations:
        note: merged
`;
    const [object] = objects(source);
    const spec = object?.body.spec as { selector: { matchLabels: Record<string, string> }; template: { metadata: Record<string, unknown> } };
    assert.deepEqual(spec.selector.matchLabels, { app: 'web' });
    assert.deepEqual(spec.template.metadata, { name: 'web', labels: { app: 'web' }, annotations: { note: 'merged' } });
    assert.equal((object?.body.metadata as { labels: Record<string, string> }).labels['app'], 'web');
    assert.ok('rowcast.dev/owner' in (object?.body.metadata as { labels: Record<string, string> }).labels);
  });

  test('a YAML syntax error names the output line and column, not the content', () => {
    const failure = failureOf('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  k: "{{row.secret}}\n', { secret: 'hunter2' });
    assert.equal(failure.field, 'output');
    assert.match(failure.message, /^output line \d+, column \d+: /);
    assert.doesNotMatch(failure.message, /hunter2/);
  });

  test('a duplicated key is an error', () => {
    assert.equal(failureOf('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  name: y\n').field, 'output');
  });

  test('.inf and .nan are refused: JSON cannot carry them', () => {
    const failure = failureOf('apiVersion: v1\nkind: X\nmetadata:\n  name: x\nspec:\n  v: .inf\n');
    assert.equal(failure.document, 0);
    assert.match(failure.message, /\.inf or \.nan/);
  });

  test('an alias bomb fails the row instead of exhausting memory', () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]`);
    const source = `apiVersion: v1\nkind: X\nmetadata:\n  name: x\nspec:\n  ${lines.join('\n  ')}\n`;
    const failure = failureOf(source);
    assert.equal(failure.field, 'output');
    assert.match(failure.message, /^output refused: its aliases expand it past twice the size limit/);
  });

  test('output nested deeper than the limit fails the row at parse time, in YAML and in JSON', () => {
    for (const source of [`apiVersion: v1\nkind: X\nmetadata:\n  name: x\nspec: ${'['.repeat(300)}${']'.repeat(300)}\n`, `${'['.repeat(100_000)}${']'.repeat(100_000)}`]) {
      const failure = failureOf(source);
      assert.equal(failure.field, 'output');
      assert.match(failure.message, /nested deeper than the limit of 200/);
    }
  });
});

describe('JSON output', () => {
  test('a single object', () => {
    const source = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-{{row.id}}"}, "data": {"who": {{quote row.who}} } }';
    const [object] = objects(source, { id: 3, who: 'a "quoted" & co' });
    assert.ok(object !== undefined);
    assert.equal(object.name, 'cm-3');
    assert.deepEqual(object.body.data, { who: 'a "quoted" & co' });
    assert.equal(object.document, 0);
  });

  test('an array of objects, each its own document', () => {
    const source = '[{{#each row.names}}{{#unless @first}},{{/unless}}{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":{{quote this}} } }{{/each}}]';
    const result = objects(source, { names: ['a', 'b', 'c'] });
    assert.deepEqual(
      result.map((o) => [o.name, o.document]),
      [
        ['a', 0],
        ['b', 1],
        ['c', 2],
      ],
    );
  });

  test('an empty array renders nothing', () => {
    assert.deepEqual(objects('[]'), []);
  });
});

test('the body is plain JSON: a JSON round trip changes nothing', () => {
  const [object] = objects(configMap('  a: {{quote row.when}}\n  b: {{toJson row.obj}}'), { id: 1, when: new Date(0), obj: { x: [1, null] } });
  assert.ok(object !== undefined);
  assert.deepEqual(JSON.parse(JSON.stringify(object.body)), object.body);
});

test('one bad row fails alone: the next row renders', () => {
  const template = compileTemplate(configMap('  v: {{quote row.value}}'));
  const bad = renderRow(template, context({ id: 'Not Valid' , value: 1 }), { rowKey: 'bad', defaultNamespace: 'team-a', owner });
  const good = renderRow(template, context({ id: 2, value: 2 }), { rowKey: 'good', defaultNamespace: 'team-a', owner });
  if (bad.ok) assert.fail('the bad row rendered');
  assert.equal(bad.failure.rowKey, 'bad');
  assert.equal(bad.failure.field, 'metadata.name');
  assert.equal(good.ok, true);
});

test('renderRow does not throw on hostile rows', () => {
  const template = compileTemplate(configMap('  v: {{toJson row.value}}'));
  const circular: Record<string, unknown> = {};
  circular['self'] = circular;
  let deep: unknown = 'leaf';
  for (let i = 0; i < 200_000; i++) deep = [deep];
  for (const value of [circular, deep, 10n ** 30n, Symbol('s'), () => 1]) {
    const result = renderRow(template, context({ id: 1, value }), { rowKey: 'k', defaultNamespace: 'team-a', owner });
    assert.equal(typeof result.ok, 'boolean');
  }
});

describe('template errors', () => {
  test('a syntax error throws TemplateError with the line', () => {
    assert.throws(
      () => compileTemplate('apiVersion: v1\nkind: {{#if row.x}}\n'),
      (error: unknown) => error instanceof TemplateError && error.line !== undefined && /Parse error on line/.test(error.message),
    );
  });

  test('an unknown helper is a compile error with line and column', () => {
    assert.throws(
      () => compileTemplate('a: 1\nb: {{lowr row.name}}'),
      (error: unknown) => error instanceof TemplateError && error.line === 2 && error.column === 4 && /unknown helper "lowr"/.test(error.message),
    );
  });

  test('mismatched blocks, partials and the log helper are compile errors', () => {
    assert.throws(() => compileTemplate('{{#if a}}{{/each}}'), (error: unknown) => error instanceof TemplateError && error.line === 1);
    assert.throws(() => compileTemplate('{{> other}}'), /partials are not supported/);
    assert.throws(() => compileTemplate('{{#*inline "p"}}x{{/inline}}'), /not supported/);
    assert.throws(() => compileTemplate('{{log row.x}}'), /unknown helper "log"/);
  });
});
