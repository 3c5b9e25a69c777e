// renderRow reads output as JSON first and YAML (core schema plus merge keys)
// otherwise, counts and skips documents, and flattens top-level lists. These
// tests hold it to js-yaml's own reading: every text must render exactly as
// the JSON of what js-yaml reads from it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CORE_SCHEMA, loadAll } from 'js-yaml';
import { compileTemplate, renderRow, type RowRenderResult } from '../../src/render/index.ts';

const template = compileTemplate('{{{row.text}}}');
const owner = { hubId: 'hub', namespace: 'ns', name: 'dqr', uid: 'uid', target: 'fleet/c' };

function render(text: string): RowRenderResult {
  return renderRow(
    template,
    { row: { text }, metadata: { name: 'dqr', namespace: 'ns', labels: {}, annotations: {} }, cluster: { name: 'c', labels: {} } },
    { rowKey: 'k', defaultNamespace: 'ns', owner, allowedKinds: new Set(['/Thing']) },
  );
}

/** renderRow on the YAML must equal renderRow on js-yaml's reading of it, sent as JSON. */
function assertSameAsJsYaml(text: string): void {
  let documents: unknown[];
  try {
    documents = loadAll(text, null, { schema: CORE_SCHEMA });
  } catch {
    const result = render(text);
    if (result.ok) assert.fail(`js-yaml refuses this text but renderRow took it:\n${text}`);
    assert.equal(result.failure.field, 'output', text);
    return;
  }
  assert.deepEqual(render(text), render(JSON.stringify(documents)), `renderRow reads this text differently from js-yaml:\n${text}`);
}

const manifest = (spec: string): string => `apiVersion: v1\nkind: Thing\nmetadata:\n  name: thing\nspec:\n${spec}`;

test('hand-picked texts at the edges of the subset read as js-yaml reads them', () => {
  const specs = [
    '  a: 1\n  b: -12\n  c: 0\n  d: -0\n  e: 007\n  f: 1.5\n  g: 0x1F\n  h: 1e3\n  i: 123456789012345678901\n  j: +1\n',
    '  a: null\n  b: Null\n  c: NULL\n  d: ~\n  e:\n  f: true\n  g: False\n  h: yes\n  i: off\n  j: y\n',
    '  a: plain words  \n  b: x:y\n  c: https://h.example/p?q=1&r=2#frag\n  d: a#b\n  e: a # comment\n  f: -x\n  g: _under\n',
    '  a: "x\\"y\\\\z\\/\\b\\f\\n\\r\\t\\u00e9\\u2028"\n  b: "\\x41"\n  c: "\\N\\_\\L"\n  d: ""\n  e: "a" # comment\n  f: "é ü"\n',
    "  a: 'it''s'\n  b: ''\n  c: 'a \"b\" c'\n  d: 'x' # c\n  e: 'ö'\n",
    '  list:\n  - a\n  - b\n  other:\n    - c\n    -   d\n  nested:\n  - - x\n    - y\n  - k: v\n    k2:\n      - z\n  -\n  - \n',
    '  a:\n    b:\n      c:\n        d: deep\n  e: back\n',
    '  # comment\n  a: 1\n\n  # another\n  b:\n    # inside\n    c: 2\n',
    '  Null: 1\n',
    '  true: 1\n',
    '  a: 1\n  a: 2\n',
    '  a:\n      b: 1\n    c: 2\n',
    '  a: b: c\n',
    '  a: x\n    continued\n',
    '  a: "multi\n    line"\n',
    "  a: 'multi\n    line'\n",
    '  a: |\n    block\n    text\n  b: >\n    folded\n',
    '  a: [x, y]\n  b: {c: d}\n  c: &anchor v\n  d: *anchor\n  e: !!str 1\n',
    '  "quoted key": 1\n  ? complex\n  : value\n',
    '  a:x\n',
    '  a: -\n',
    '  a: @x\n',
    '  a: `x`\n',
    '  __proto__: x\n',
    '  toString: x\n  constructor: y\n',
    '  a: \u00a0nbsp\n',
    '  a: "\u0085"\n',
  ];
  for (const spec of specs) assertSameAsJsYaml(manifest(spec));
});

test('document separators count documents the way js-yaml does', () => {
  const one = manifest('  a: 1\n');
  const two = one.replace('name: thing', 'name: other');
  for (const text of [
    '',
    '\n',
    '---',
    '---\n',
    `${one}---\n`,
    `---\n${one}---\n---\n${two}`,
    `# c\n---\n# d\n`,
    `${one}---   \n${two}`,
    `--- \n${one}`,
    `${one}...\n`,
    `%YAML 1.2\n---\n${one}`,
    `--- ${one}`,
    `\ufeff${one}`,
    one.replace(/\n/g, '\r\n'),
    one.replace('  a: 1', '\ta: 1'),
    `  ${one}`,
  ]) {
    assertSameAsJsYaml(text);
  }
});

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Mostly what the fast reader takes, so it is exercised; now and then something it must leave to js-yaml.
const SIMPLE_SCALARS = [
  'web', 'a-b', 'x.y/z', 'Bob Smith', 'Bob  Smith  ', 'Null', 'null', 'TRUE', 'false', 'yes', 'no', 'on', '0', '-1', '42',
  'x:y', 'https://h/p?q=1&r=2', 'a#b', '_x', "'it''s'", "''", "'é'", '"q\\"uote"', '"\\u00e9\\n\\t"', '""', '"\\/\\b"',
];
const ODD_SCALARS = [
  '~', '007', '-0', '1.5', '0x1F', '1e3', '12345678901234567890', 'a: b', 'a #b', 'x:', 'é', '-x', '[a]', '{a: 1}', '&a x',
  '*a', '!t x', '|', '>', '@x', '%x', '`x`', '? x', ': x', '-', "'x' #c", '"\\x41"', '"x" y', '"unterminated', "'unterminated",
  '"a" #c', 'a\u00a0b',
];
const SIMPLE_KEYS = ['a', 'b', 'name', 'app.kubernetes.io/name', '_x', 'X-Y', 'k8s', 'x/y.z'];
const ODD_KEYS = ['Null', 'true', '1', 'a b', '"q"', 'toString'];

function generate(next: () => number): string {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)] as T;
  const scalar = (): string => pick(next() < 0.93 ? SIMPLE_SCALARS : ODD_SCALARS);
  const key = (): string => pick(next() < 0.95 ? SIMPLE_KEYS : ODD_KEYS);
  const lines: string[] = [];
  const block = (indent: number, depth: number): void => {
    const step = next() < 0.8 ? 2 : 4;
    const pad = ' '.repeat(indent);
    if (depth > 0 && next() < 0.3) {
      const count = 1 + Math.floor(next() * 3);
      for (let i = 0; i < count; i++) {
        const roll = next();
        const dash = next() < 0.8 ? '- ' : '-   ';
        if (roll < 0.5 || depth > 3) lines.push(`${pad}${dash}${scalar()}`);
        else if (roll < 0.8) {
          lines.push(`${pad}${dash}${key()}: ${scalar()}`);
          // Usually aligned under the first key; sometimes not, which js-yaml refuses.
          const align = dash.length + (next() < 0.85 ? 0 : next() < 0.5 ? -1 : 1);
          if (next() < 0.5) lines.push(`${pad}${' '.repeat(align)}${key()}: ${scalar()}`);
          if (next() < 0.2) {
            lines.push(`${pad}${' '.repeat(align)}${key()}:${next() < 0.5 ? '' : '   '}`);
            block(indent + align + step, depth + 1);
          }
        } else {
          lines.push(`${pad}-`);
          block(indent + step, depth + 1);
        }
      }
      return;
    }
    const count = 1 + Math.floor(next() * 4);
    for (let i = 0; i < count; i++) {
      if (next() < 0.1) lines.push(next() < 0.5 ? '' : `${pad}# note`);
      const name = key();
      const roll = next();
      // A sibling off by a column or two is an error js-yaml must report.
      const here = next() < 0.05 ? ' '.repeat(Math.max(0, indent + (next() < 0.5 ? -1 : 1))) : pad;
      if (next() < 0.05) {
        lines.push(`${here}${name}: ${scalar()}`);
        continue;
      }
      if (roll < 0.6 || depth > 3) {
        lines.push(`${pad}${name}: ${scalar()}`);
      } else if (roll < 0.7) {
        lines.push(`${pad}${name}:`);
        for (let j = 0; j < 2; j++) lines.push(`${pad}- ${scalar()}`);
      } else {
        lines.push(`${pad}${name}:`);
        block(indent + step, depth + 1);
      }
    }
  };
  block(2, 1);
  return manifest(`${lines.join('\n')}\n`);
}

test('thousands of generated texts read as js-yaml reads them', () => {
  const next = random(20240506);
  for (let i = 0; i < 5000; i++) {
    const documents = 1 + Math.floor(next() * 2);
    const parts = Array.from({ length: documents }, (_, d) => generate(next).replace('name: thing', `name: thing-${d}`));
    assertSameAsJsYaml(parts.join(next() < 0.5 ? '---\n' : '---\n---\n'));
  }
});
