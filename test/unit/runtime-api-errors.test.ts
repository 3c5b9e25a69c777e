import assert from 'node:assert/strict';
import test from 'node:test';
import { describeApiError } from '../../src/runtime/index.ts';

const answer = (code: number, message: string, details?: Record<string, unknown>): unknown => ({ code, body: JSON.stringify({ kind: 'Status', message, ...(details === undefined ? {} : { details }) }) });

test('a 500 about the object sent is bad input, not an unavailable member', () => {
  for (const message of [
    'failed to create typed patch object (ns/x; /v1, Kind=ConfigMap): .data: expected map, got &{[a b] [] }',
    'failed to convert new object (ns/x; /v1, Kind=ConfigMap) to proper version: unable to convert unstructured object to /v1, Kind=ConfigMap: error decoding from json: illegal base64 data at input byte 3',
  ]) {
    const failure = describeApiError(answer(500, message));
    assert.equal(failure.kind, 'invalid', message);
    assert.equal(failure.retryable, false);
  }
  const member = describeApiError(answer(500, 'etcdserver: request timed out'));
  assert.equal(member.kind, 'unavailable');
  assert.equal(member.retryable, true);
});

test("a 404's Status details name what is missing", () => {
  const failure = describeApiError(answer(404, 'namespaces "gone" not found', { name: 'gone', kind: 'namespaces' }));
  assert.deepEqual(failure.details, { kind: 'namespaces', name: 'gone' });
});
