import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemberApiError, MemberQueue } from '../../src/clusters/index.ts';

const limits = { qps: 10_000, burst: 10_000, concurrency: 1 };

test('a full member queue makes its callers wait for room instead of refusing them, in the order they came', async () => {
  const queue = new MemberQueue({ limits, maxWaiting: 5 });
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const order: number[] = [];
  let mostWaiting = 0;
  const calls = Array.from({ length: 50 }, (_, i) =>
    queue.run(async () => {
      await gate;
      mostWaiting = Math.max(mostWaiting, queue.depth);
      order.push(i);
      return i;
    }),
  );
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(queue.depth, 50, 'every caller is counted, waiting for room or in the queue');
  release();
  assert.deepEqual(await Promise.all(calls), order);
  assert.deepEqual(order, Array.from({ length: 50 }, (_, i) => i));
  assert.equal(queue.depth, 0);
  await queue.close();
});

test('a caller waiting for room gives up when its signal aborts, and close() refuses the rest', async () => {
  const queue = new MemberQueue({ limits, maxWaiting: 1 });
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const running = queue.run(() => gate);
  const queued = queue.run(() => Promise.resolve('queued'));
  const aborted = new AbortController();
  const waiting = queue.run(() => Promise.resolve('never'), aborted.signal);
  const another = queue.run(() => Promise.resolve('never'));
  aborted.abort(new Error('sync cancelled'));
  await assert.rejects(waiting, /sync cancelled/);
  const refused = [assert.rejects(another, { name: 'MemberUnavailableError' }), assert.rejects(queued, { name: 'MemberUnavailableError' })];
  const closed = queue.close();
  await Promise.all(refused);
  release();
  await closed;
  await Promise.allSettled([running]);
});

function throttledError(): MemberApiError {
  return new MemberApiError('PATCH', '/api/v1/x', 429, JSON.stringify({ kind: 'Status', code: 429, message: 'too many requests' }), { 'retry-after': '0.05' });
}

test('a 429 pauses the queue, retries the refused call itself, halves the concurrency once per burst and grows it back as calls are admitted', async () => {
  const throttled: number[] = [];
  const queue = new MemberQueue({ limits: { ...limits, concurrency: 8 }, growAfter: 4, onThrottled: (ms) => throttled.push(ms) });
  let inFlight = 0;
  // Admits one call at a time, as an apiserver with --max-mutating-requests-inflight=1 does.
  const admitOne = async (i: number): Promise<number> => {
    if (inFlight >= 1) throw throttledError();
    inFlight++;
    await new Promise((resolve) => setTimeout(resolve, 2));
    inFlight--;
    return i;
  };
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => queue.run(() => admitOne(i))));
  assert.deepEqual(results, Array.from({ length: 40 }, (_, i) => i), 'every refused call was sent again and answered');
  assert.ok(throttled.every((ms) => ms === 50), 'each pause is the server\'s Retry-After');
  assert.ok(throttled.length > 0 && throttled.length < 40, `${throttled.length} 429s for 40 calls`);
  assert.ok(queue.concurrency < 8, `concurrency ${queue.concurrency}, lowered by the 429s`);
  const lowered = queue.concurrency;
  await Promise.all(Array.from({ length: 8 }, (_, i) => queue.run(() => new Promise((resolve) => setTimeout(() => resolve(i), 1)))));
  assert.ok(queue.concurrency > lowered, `grew back from ${lowered} to ${queue.concurrency} once calls were admitted again`);
  await queue.close();
});

test('a member that admits nothing fails a call after its retries rather than holding it forever', async () => {
  const queue = new MemberQueue({ limits, throttleRetries: 3 });
  let sent = 0;
  await assert.rejects(
    queue.run(() => {
      sent++;
      return Promise.reject(throttledError());
    }),
    { name: 'MemberApiError', code: 429 },
  );
  assert.equal(sent, 4);
  await queue.close();
});
