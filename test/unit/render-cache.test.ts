import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TemplateCache, TemplateError, compileTemplate, renderTemplate, type CompiledTemplate } from '../../src/render/index.ts';

function countingCache(maxEntries?: number): { cache: TemplateCache; compiled: string[] } {
  const compiled: string[] = [];
  const compile = (source: string): CompiledTemplate => {
    compiled.push(source);
    return compileTemplate(source);
  };
  return { cache: new TemplateCache(maxEntries === undefined ? { compile } : { compile, maxEntries }), compiled };
}

test('a template is compiled once per key, however many rows use it', () => {
  const { cache, compiled } = countingCache();
  const first = cache.get('uid-1/1', 'a: {{row.a}}');
  for (let i = 0; i < 100; i++) assert.equal(cache.get('uid-1/1', 'a: {{row.a}}'), first);
  assert.deepEqual(compiled, ['a: {{row.a}}']);
  assert.equal(cache.compilations, 1);
  const rendered = renderTemplate(first, { row: { a: 1 }, metadata: { name: 'n', namespace: 'ns', labels: {}, annotations: {} }, cluster: { name: 'c', labels: {} } }, { rowKey: 'k' });
  assert.deepEqual(rendered, { ok: true, text: 'a: 1' });
});

test('a new generation compiles again; deleting by prefix drops every generation of a DQR', () => {
  const { cache, compiled } = countingCache();
  cache.get('uid-1/1', 'a: 1');
  cache.get('uid-1/2', 'a: 2');
  cache.get('uid-2/1', 'a: 3');
  assert.equal(cache.size, 3);
  assert.equal(compiled.length, 3);
  cache.delete('uid-1/');
  assert.equal(cache.size, 1);
  cache.get('uid-2/1', 'a: 3');
  assert.equal(compiled.length, 3, 'the other DQR is still cached');
  cache.get('uid-1/2', 'a: 2');
  assert.equal(compiled.length, 4, 'the deleted one compiles again');
});

test('the same key with another source compiles the new source', () => {
  const { cache, compiled } = countingCache();
  cache.get('k', 'a: 1');
  const second = cache.get('k', 'a: 2');
  assert.equal(second.source, 'a: 2');
  assert.equal(compiled.length, 2);
  assert.equal(cache.size, 1);
});

test('a template that does not compile throws TemplateError every time but is compiled once', () => {
  const { cache, compiled } = countingCache();
  for (let i = 0; i < 3; i++) assert.throws(() => cache.get('bad/1', '{{#if x}}'), TemplateError);
  assert.equal(compiled.length, 1);
});

test('the least recently used entry goes when the cache is full', () => {
  const { cache, compiled } = countingCache(2);
  cache.get('a', 'a');
  cache.get('b', 'b');
  cache.get('a', 'a');
  cache.get('c', 'c');
  assert.equal(cache.size, 2);
  cache.get('a', 'a');
  assert.equal(compiled.length, 3, '"a" was used recently and stayed');
  cache.get('b', 'b');
  assert.equal(compiled.length, 4, '"b" was the least recently used and went');
});

test('without a compile option the cache uses compileTemplate', () => {
  const cache = new TemplateCache();
  assert.equal(cache.get('x', 'v: {{row.v}}').source, 'v: {{row.v}}');
  assert.equal(cache.compilations, 1);
  cache.clear();
  assert.equal(cache.size, 0);
});
