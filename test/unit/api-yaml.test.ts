import assert from 'node:assert/strict';
import { test } from 'node:test';
import { YAML_LIMITS, loadYamlDocument, loadYamlDocuments, type YamlLoad } from '../../src/api/index.ts';
import { aliasBombAnchors } from '../helpers/hostile-yaml.ts';

function aliasBomb(): string {
  return `${aliasBombAnchors().join('\n')}\n`;
}

function problemOf(loaded: YamlLoad | { ok: true; value: unknown }): { kind: string; message: string } {
  if (loaded.ok) assert.fail('the text was accepted');
  return loaded.problem;
}

test('an alias bomb of 1.5 KB is refused before anything walks its billion leaves', () => {
  const text = aliasBomb();
  assert.ok(text.length < 2048);
  const problem = problemOf(loadYamlDocuments(text, YAML_LIMITS.kubeconfig));
  assert.equal(problem.kind, 'alias-expansion');
  assert.match(problem.message, /aliases expand it past twice the size limit of 262144 bytes/);
});

test('an alias bomb of long strings is refused too: the budget counts characters, not only nodes', () => {
  const text = `s: &s "${'x'.repeat(10_000)}"\nl1: &l1 [${Array(100).fill('*s').join(',')}]\nl2: [${Array(100).fill('*l1').join(',')}]\n`;
  assert.equal(problemOf(loadYamlDocuments(text, YAML_LIMITS.kubeconfig)).kind, 'alias-expansion');
});

test('an alias to its own ancestor is refused, not walked forever', () => {
  const problem = problemOf(loadYamlDocuments('a: &a [1, *a]\n', YAML_LIMITS.file));
  assert.equal(problem.kind, 'alias-expansion');
  assert.match(problem.message, /contains it/);
});

test('deep nesting is refused in YAML, in JSON and through aliases, naming the limit', () => {
  const deepYaml = `${'['.repeat(5000)}${']'.repeat(5000)}`;
  const yamlProblem = problemOf(loadYamlDocuments(`x: ${deepYaml}`, YAML_LIMITS.kubeconfig));
  assert.equal(yamlProblem.kind, 'too-deep');
  assert.match(yamlProblem.message, /deeper than the limit of 32/);
  // Brackets only: JSON.parse reads it, so the walk after it has to refuse.
  assert.equal(problemOf(loadYamlDocuments(deepYaml, YAML_LIMITS.kubeconfig)).kind, 'too-deep');
  const block = Array.from({ length: 40 }, (_, i) => `${'  '.repeat(i)}k${i}:`).join('\n');
  assert.equal(problemOf(loadYamlDocuments(`${block} end\n`, YAML_LIMITS.kubeconfig)).kind, 'too-deep');
  const nested = `d: &d ${'['.repeat(20)}1${']'.repeat(20)}\ne: ${'['.repeat(20)}*d${']'.repeat(20)}\n`;
  assert.match(problemOf(loadYamlDocuments(nested, YAML_LIMITS.kubeconfig)).message, /once its aliases are resolved/);
});

test('a 10 MB text is refused by its size alone, naming size and limit', () => {
  const text = `data: "${'x'.repeat(10 * 1024 * 1024)}"\n`;
  for (const limits of [YAML_LIMITS.kubeconfig, YAML_LIMITS.file, YAML_LIMITS.output]) {
    const problem = problemOf(loadYamlDocuments(text, limits));
    assert.equal(problem.kind, 'too-large');
    assert.match(problem.message, new RegExp(`^${Buffer.byteLength(text)} bytes, more than the limit of ${limits.maxBytes}$`));
  }
});

test('ordinary documents load as before: anchors and merge keys within bounds, core schema, several documents', () => {
  const loaded = loadYamlDocuments('base: &b {x: 1, when: 2024-01-02}\nuse:\n  <<: *b\n  y: on\n---\n- [1, 2]\n', YAML_LIMITS.file);
  assert.ok(loaded.ok);
  assert.deepEqual(loaded.documents, [
    { base: { x: 1, when: '2024-01-02' }, use: { x: 1, when: '2024-01-02', y: 'on' } },
    [[1, 2]],
  ]);
  const json = loadYamlDocuments('{"a": [1, {"b": null}]}', YAML_LIMITS.output);
  assert.ok(json.ok);
  assert.deepEqual(json.documents, [{ a: [1, { b: null }] }]);
  const big = loadYamlDocuments(`items:\n${'- item with some words\n'.repeat(40_000)}`, YAML_LIMITS.file);
  assert.ok(big.ok, 'a large document without aliases stays within its own budget');
});

test('loadYamlDocument wants one document and reports syntax errors by position, without the text', () => {
  assert.deepEqual(loadYamlDocument('a: 1\n', YAML_LIMITS.kubeconfig), { ok: true, value: { a: 1 } });
  assert.deepEqual(loadYamlDocument('', YAML_LIMITS.kubeconfig), { ok: true, value: undefined });
  assert.match(problemOf(loadYamlDocument('a: 1\n---\nb: 2\n', YAML_LIMITS.kubeconfig)).message, /one YAML document, found 2/);
  const broken = problemOf(loadYamlDocument('token: secret-value\n  bad: [\n', YAML_LIMITS.kubeconfig));
  assert.equal(broken.kind, 'invalid');
  assert.match(broken.message, /^line \d+, column \d+: /);
  assert.doesNotMatch(broken.message, /secret-value/);
});
