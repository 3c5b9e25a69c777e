// `{{expr}}` output is escaped for YAML and JSON: a row value is a value,
// never structure. See "Escaping" in docs/api.md.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileTemplate, renderRow, renderTemplate, type RenderContext, type RenderFailure, type RenderedObject } from '../../src/render/index.ts';

const owner = { hubId: 'hub-1', namespace: 'team-a', name: 'users', uid: '0b7e1c52-1111-2222-3333-444455556666', target: 'fleet/eu-1' };

function context(row: Record<string, unknown>): RenderContext {
  return { row, metadata: { name: 'users', namespace: 'team-a', labels: {}, annotations: {} }, cluster: { name: 'eu-1', labels: {} } };
}

function objects(source: string, row: Record<string, unknown>): RenderedObject[] {
  const result = renderRow(compileTemplate(source), context(row), { rowKey: 'k1', defaultNamespace: 'team-a', owner });
  if (!result.ok) assert.fail(`${result.failure.field}: ${result.failure.message}`);
  return result.objects;
}

function failureOf(source: string, row: Record<string, unknown>): RenderFailure {
  const result = renderRow(compileTemplate(source), context(row), { rowKey: 'k1', defaultNamespace: 'team-a', owner });
  if (result.ok) assert.fail(`expected the row to fail, got ${JSON.stringify(result.objects.map((o) => o.body))}`);
  return result.failure;
}

function text(source: string, row: Record<string, unknown>): string {
  const result = renderTemplate(compileTemplate(source), context(row), { rowKey: 'k1' });
  if (!result.ok) assert.fail(`${result.failure.field}: ${result.failure.message}`);
  return result.text;
}

/** The one ConfigMap a template renders; its data. */
function dataOf(source: string, row: Record<string, unknown>): Record<string, unknown> {
  const rendered = objects(source, row);
  assert.equal(rendered.length, 1, `exactly one object, got ${rendered.map((o) => o.kind).join(', ')}`);
  assert.equal(rendered[0]?.kind, 'ConfigMap');
  return (rendered[0]).body.data as Record<string, unknown>;
}

const cm = (data: string): string => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{{row.id}}\ndata:\n${data}\n`;

export const INJECTION =
  'hello\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: pwned\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n  - kind: Group\n    name: system:authenticated\n    apiGroup: rbac.authorization.k8s.io';

const HOSTILE = [
  INJECTION,
  '", "kind": "Secret',
  "x', kind: Secret, y: '",
  '} , kind: Secret, {',
  'a: b',
  'a, b: c',
  ']',
  '#not a comment',
  'tail #not a comment',
  ' leading and trailing ',
  '- item',
  '---',
  '...',
  '*alias',
  '&anchor x',
  '!!binary aGk=',
  '|',
  '> folded',
  '@at',
  '`tick`',
  '%TAG',
  '? key',
  '{{not a template}}',
  'tab\there',
  'cr\rlf\r\n',
  'back\\slash "quoted"',
  'ünïcödé 日本 🚀',
  '',
];

describe('a row value cannot inject objects', () => {
  test('the ClusterRoleBinding in a value stays a value: key: {{x}}', () => {
    assert.deepEqual(dataOf(cm('  v: {{row.v}}'), { id: 1, v: INJECTION }), { v: INJECTION });
  });

  test('inside double quotes the exact value round-trips', () => {
    for (const v of HOSTILE) assert.deepEqual(dataOf(cm('  v: "{{row.v}}"'), { id: 1, v }), { v }, JSON.stringify(v));
  });

  test('unquoted, every string that is not a plain word becomes a quoted scalar holding it exactly', () => {
    for (const v of HOSTILE) {
      if (v === '') continue;
      assert.deepEqual(dataOf(cm('  v: {{row.v}}'), { id: 1, v }), { v }, JSON.stringify(v));
    }
  });

  test('inside single quotes the exact value round-trips, or the row fails when single quotes cannot hold it', () => {
    for (const v of HOSTILE) {
      if (/[\n\r]/.test(v)) {
        assert.match(failureOf(cm("  v: '{{row.v}}'"), { id: 1, v }).message, /single-quoted/);
      } else {
        assert.deepEqual(dataOf(cm("  v: '{{row.v}}'"), { id: 1, v }), { v }, JSON.stringify(v));
      }
    }
  });

  test('a mapping key from a row stays one key', () => {
    for (const v of HOSTILE) {
      if (v === '') continue;
      assert.deepEqual(dataOf(cm('  {{row.v}}: fixed'), { id: 1, v }), { [v]: 'fixed' }, JSON.stringify(v));
    }
  });

  test('inside a larger unquoted scalar a value cannot end it', () => {
    for (const v of HOSTILE) {
      const result = renderRow(compileTemplate(cm('  v: pre-{{row.v}}-post\n  w: fixed')), context({ id: 1, v }), { rowKey: 'k1', defaultNamespace: 'team-a', owner });
      if (!result.ok) continue;
      assert.equal(result.objects.length, 1, JSON.stringify(v));
      const data = result.objects[0]?.body.data as Record<string, unknown>;
      assert.deepEqual(Object.keys(data).sort(), ['v', 'w'], JSON.stringify(v));
      assert.equal(data.w, 'fixed');
    }
  });

  test('JSON templates: a value holding ", "kind": "Secret stays in its string', () => {
    const source = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-{{row.id}}"}, "data": {"v": "{{row.v}}", "w": "{{row.w}}"} }';
    for (const v of HOSTILE) {
      const rendered = objects(source, { id: 1, v, w: '", "kind": "Secret' });
      assert.equal(rendered.length, 1);
      assert.equal(rendered[0]?.kind, 'ConfigMap');
      assert.deepEqual((rendered[0]).body.data, { v, w: '", "kind": "Secret' }, JSON.stringify(v));
    }
  });

  test('flow-style YAML: values holding }, commas and colons stay values', () => {
    const source = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-{{row.id}} }\ndata: {a: {{row.a}}, b: "{{row.b}}", c: [{{row.c}}]}\n';
    for (const v of ['}', '}, kind: Secret', 'x, y', 'k: v', ']: x', '{a: 1}', 'plain']) {
      const data = objects(source, { id: 1, a: v, b: v, c: v })[0]?.body.data;
      assert.deepEqual(data, { a: v, b: v, c: [v] }, JSON.stringify(v));
    }
  });

  test('numbers, booleans and plain words are written as they are, so YAML reads their type', () => {
    const source = cm('  n: {{row.n}}\n  b: {{row.b}}\n  w: {{row.w}}\n  s: "{{row.n}}"');
    const rendered = objects(source.replace('\ndata:', '\nspec:'), { id: 1, n: 3, b: true, w: 'web-1.example_v2' });
    assert.deepEqual(rendered[0]?.body.spec, { n: 3, b: true, w: 'web-1.example_v2', s: '3' });
    assert.equal(text('replicas: {{row.n}}', { n: '3' }), 'replicas: 3', 'a bigint column (pg text) stays a number');
  });

  test('NULL and empty text write nothing', () => {
    assert.equal(text('a: {{row.a}}\nb: x{{row.b}}y', { a: null, b: '' }), 'a: \nb: xy');
  });

  test('{{{expr}}} is the explicit raw form', () => {
    assert.equal(text('{{{row.v}}}', { v: 'a: b\n---\nc' }), 'a: b\n---\nc');
  });

  test('helper results that are text are escaped like values', () => {
    assert.deepEqual(dataOf(cm('  v: {{lower row.v}}'), { id: 1, v: INJECTION }), { v: INJECTION.toLowerCase() });
    assert.deepEqual(dataOf(cm('  v: {{default row.v "x"}}'), { id: 1, v: INJECTION }), { v: INJECTION });
    assert.deepEqual(dataOf(cm('  v: {{b64dec row.v}}'), { id: 1, v: Buffer.from(INJECTION).toString('base64') }), { v: INJECTION });
  });
});

describe('structure helpers are safe with hostile values', () => {
  test('toYaml and toJson of hostile values read back exactly', () => {
    const value: Record<string, unknown> = Object.fromEntries(HOSTILE.map((v, i) => [`k${i}`, v]));
    value[INJECTION] = ['x', { [INJECTION]: INJECTION }];
    const data = objects(cm('  y:{{nindent 4 (toYaml row.v)}}\n  j: {{toJson row.v}}').replace('\ndata:', '\nspec:'), { id: 1, v: value })[0]?.body.spec;
    assert.deepEqual(data, { y: value, j: value });
  });

  test('quote and squote inside quotes are text, not a way out', () => {
    const data = dataOf(cm('  a: "{{quote row.v}}"\n  b: "{{squote row.v}}"'), { id: 1, v: '", kind: x' });
    assert.deepEqual(data, { a: '"\\", kind: x"', b: '\'", kind: x\'' });
  });

  test('a multi-line value in a block scalar stays in it: key: |-{{nindent 4 x}}', () => {
    for (const v of [INJECTION, 'a\n\nb\n', 'x\n  indented\n---\nkind: Secret']) {
      assert.deepEqual(dataOf(cm('  script: |-{{nindent 4 row.v}}\n  after: fixed'), { id: 1, v }), { script: v.replace(/\n+$/, ''), after: 'fixed' }, JSON.stringify(v));
      assert.deepEqual(dataOf(cm('  script: |+{{nindent 4 row.v}}\n  after: fixed'), { id: 1, v }).after, 'fixed');
    }
  });

  test('a value in a block scalar continues at the indentation of its line', () => {
    assert.deepEqual(dataOf(cm('  script: |-\n    echo "{{row.v}}"\n    done'), { id: 1, v: 'l1\n---\nkind: Secret' }), {
      script: 'echo "l1\n    ---\n    kind: Secret"\ndone'.replaceAll('\n    ', '\n'),
    });
  });

  test('nindent too shallow for its block, or a first line that would move the block, fails the row', () => {
    assert.match(failureOf(cm('  script: |{{nindent 2 row.v}}'), { id: 1, v: 'a\nkind: Secret' }).message, /block scalar/);
    assert.match(failureOf(cm('  script: |{{nindent 4 row.v}}'), { id: 1, v: '  a\nkind: Secret' }).message, /block scalar/);
    assert.match(failureOf(cm('  script: |{{nindent 4 row.v}}'), { id: 1, v: 'a\rkind: Secret' }).message, /block scalar/);
  });

  test('Helm-style indent on its own line after the block header puts the text in the block', () => {
    for (const v of [INJECTION, 'a\n\nb']) {
      assert.deepEqual(dataOf(cm('  script: |-\n{{indent 4 row.v}}\n  after: fixed'), { id: 1, v }), { script: v, after: 'fixed' }, JSON.stringify(v));
    }
    // Not beyond the key's column: the block ends, and the text is one quoted scalar where no value can stand.
    assert.equal(failureOf(cm('  script: |-\n{{indent 2 row.v}}\n  after: fixed'), { id: 1, v: 'a\nkind: Secret' }).field, 'output');
  });

  test('nindent of text outside a block scalar is a quoted scalar, not structure', () => {
    assert.deepEqual(dataOf(cm('  v:{{nindent 4 row.v}}'), { id: 1, v: INJECTION }), { v: INJECTION });
    assert.deepEqual(dataOf(cm('  v: {{indent 2 row.v}}'), { id: 1, v: INJECTION }), { v: INJECTION });
  });
});

describe('templates whose quoting depends on a branch are refused', () => {
  test('a block that leaves a quote open', () => {
    assert.throws(() => compileTemplate('v: {{#if row.a}}"{{/if}}{{row.b}}'), /quote/);
  });
});

describe('generated values: every one stays exactly one value, or fails its row', () => {
  const ALPHABET = [...Array.from('ab :-?#,[]{}&*!|>\'"%@`\\/.~=+\n\r\t'), '---', '...', '\u0085', '\u2028', '\u00a0', '\u007f', '\u0001', '\ufeff', 'é', '🚀', '{{', '}}'];
  // A fixed seed: the same values on every run, so a failure can be replayed.
  let seed = 0x2f6b_1d37;
  const next = (): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const values = Array.from({ length: 1500 }, () => Array.from({ length: 1 + Math.floor(next() * 12) }, () => ALPHABET[Math.floor(next() * ALPHABET.length)]).join(''));

  /** Each shape writes the value where a template might, and says where it must come back. */
  const shapes: { name: string; source: string; exact: (v: string) => boolean; read: (data: Record<string, unknown>) => unknown }[] = [
    { name: 'unquoted value', source: cm('  v: {{row.v}}\n  w: fixed'), exact: (v) => v !== '' && !/^[\p{L}\p{N}_./+=~-]/u.test(v), read: (d) => d.v },
    { name: 'double-quoted', source: cm('  v: "{{row.v}}"\n  w: fixed'), exact: () => true, read: (d) => d.v },
    { name: 'single-quoted', source: cm("  v: '{{row.v}}'\n  w: fixed"), exact: () => true, read: (d) => d.v },
    { name: 'flow', source: cm('  {v: {{row.v}}, w: fixed}').replace('\ndata:\n  {', '\ndata: {'), exact: (v) => v !== '' && !/^[\p{L}\p{N}_./+=~-]/u.test(v), read: (d) => d.v },
    { name: 'key', source: cm('  {{row.v}}: x\n  w: fixed'), exact: (v) => v !== '' && !/^[\p{L}\p{N}_./+=~-]/u.test(v), read: (d) => Object.keys(d).find((k) => k !== 'w') },
    { name: 'inside a plain scalar', source: cm('  v: pre-{{row.v}}-post\n  w: fixed'), exact: () => false, read: (d) => d.v },
    {
      name: 'flow sequence item',
      source: cm('  v: [{{row.v}}]\n  w: fixed'),
      exact: (v) => v !== '' && !/^[\p{L}\p{N}_./+=~-]/u.test(v),
      read: (d) => (Array.isArray(d.v) && d.v.length === 1 ? (d.v as unknown[])[0] : d.v),
    },
    { name: 'block', source: cm('  v: |-{{nindent 4 row.v}}\n  w: fixed'), exact: (v) => v.trim() !== '' && !v.endsWith('\n'), read: (d) => d.v },
  ];

  for (const shape of shapes) {
    test(shape.name, () => {
      const template = compileTemplate(shape.source);
      for (const v of values) {
        const result = renderRow(template, context({ id: 1, v }), { rowKey: 'k1', defaultNamespace: 'team-a', owner });
        if (!result.ok) continue;
        assert.equal(result.objects.length, 1, `${shape.name} ${JSON.stringify(v)}: one object`);
        const data = result.objects[0]?.body.data as Record<string, unknown>;
        assert.equal(data.w, 'fixed', `${shape.name} ${JSON.stringify(v)}: w kept`);
        assert.equal(Object.keys(data).length, 2, `${shape.name} ${JSON.stringify(v)}: no key added: ${JSON.stringify(data)}`);
        if (shape.exact(v)) assert.equal(shape.read(data), v, `${shape.name} ${JSON.stringify(v)}`);
      }
    });
  }

  test('JSON', () => {
    const template = compileTemplate('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-{{row.id}}"}, "data": {"v": "{{row.v}}", "w": "fixed"} }');
    for (const v of values) {
      const result = renderRow(template, context({ id: 1, v }), { rowKey: 'k1', defaultNamespace: 'team-a', owner });
      if (!result.ok) assert.fail(`${JSON.stringify(v)}: ${result.failure.message}`);
      assert.deepEqual(result.objects.map((o) => o.body.data), [{ v, w: 'fixed' }], JSON.stringify(v));
    }
  });
});
