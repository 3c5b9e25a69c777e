import assert from 'node:assert/strict';
import test from 'node:test';
import { SecretScrubber, createLogger } from '../../src/telemetry/index.ts';
import { TerminalError, WorkQueue, backoffDelay, type Reconcile, type ReconcileOutcome } from '../../src/runtime/index.ts';

const logger = createLogger({ level: 'error', scrubber: new SecretScrubber(), write: () => undefined });

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('a key added many times while waiting runs once', async () => {
  const runs: string[] = [];
  const queue = new WorkQueue({ name: 't', concurrency: 1, logger, reconcile: (key) => Promise.resolve(void runs.push(key)) });
  for (let i = 0; i < 5; i++) queue.add('a');
  queue.add('b');
  assert.equal(queue.depth, 2);
  queue.start();
  await until(() => runs.length === 2);
  await queue.shutdown();
  assert.deepEqual(runs, ['a', 'b']);
});

test('a key never runs twice at once; adding it while it runs runs it once more afterwards', async () => {
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  const gate = deferred();
  const reconcile: Reconcile = async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    runs++;
    if (runs === 1) await gate.promise;
    active--;
    return undefined;
  };
  const queue = new WorkQueue({ name: 't', concurrency: 4, logger, reconcile });
  queue.start();
  queue.add('a');
  await until(() => runs === 1);
  queue.add('a');
  queue.add('a');
  assert.equal(queue.depth, 0, 'a running key is not queued again');
  gate.resolve();
  await until(() => runs === 2);
  await new Promise((resolve) => setTimeout(resolve, 30));
  await queue.shutdown();
  assert.equal(maxActive, 1);
  assert.equal(runs, 2);
});

test('different keys run in parallel up to the concurrency', async () => {
  let active = 0;
  let maxActive = 0;
  const gate = deferred();
  const queue = new WorkQueue({
    name: 't',
    concurrency: 2,
    logger,
    reconcile: async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await gate.promise;
      active--;
      return undefined;
    },
  });
  queue.start();
  for (const key of ['a', 'b', 'c']) queue.add(key);
  await until(() => active === 2);
  assert.equal(queue.depth, 1);
  gate.resolve();
  await until(() => active === 0 && queue.depth === 0);
  await queue.shutdown();
  assert.equal(maxActive, 2);
});

test('errors retry with backoff, terminal errors do not, and outcomes are reported', async () => {
  const outcomes: ReconcileOutcome[] = [];
  let calls = 0;
  const queue = new WorkQueue({
    name: 't',
    concurrency: 1,
    logger,
    backoff: { baseMs: 10, maxMs: 20 },
    onReconciled: (_key, outcome) => outcomes.push(outcome),
    reconcile: (key) => {
      calls++;
      if (key === 'bad') return Promise.reject(new TerminalError('bad input'));
      if (calls < 3) return Promise.reject(new Error('unavailable'));
      return Promise.resolve({});
    },
  });
  queue.start();
  queue.add('flaky');
  await until(() => outcomes.length === 3);
  queue.add('bad');
  await until(() => outcomes.length === 4);
  await new Promise((resolve) => setTimeout(resolve, 60));
  await queue.shutdown();
  assert.deepEqual(outcomes, ['error', 'error', 'success', 'terminal']);
});

test('requeueAfterMs runs the key again; an earlier add wins over a later timer', async () => {
  let runs = 0;
  const queue = new WorkQueue({ name: 't', concurrency: 1, logger, reconcile: () => Promise.resolve(++runs === 1 ? { requeueAfterMs: 40 } : undefined) });
  queue.start();
  queue.add('a');
  await until(() => runs === 2, 1000);
  queue.addAfter('a', 10_000);
  queue.add('a');
  await until(() => runs === 3, 1000);
  await queue.shutdown();
  assert.equal(runs, 3);
});

test('shutdown lets a running reconcile finish within the grace period', async () => {
  const seen = { aborted: true, finished: false };
  const queue = new WorkQueue({
    name: 't',
    concurrency: 1,
    logger,
    reconcile: async (_key, signal) => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      seen.aborted = signal.aborted;
      seen.finished = true;
      return undefined;
    },
  });
  queue.start();
  queue.add('a');
  await until(() => queue.inFlight === 1);
  await queue.shutdown(5000);
  assert.deepEqual(seen, { aborted: false, finished: true });
});

test('shutdown aborts the signal of running reconciles after the grace period and waits for them', async () => {
  const seen = { aborted: false, finished: false };
  const queue = new WorkQueue({
    name: 't',
    concurrency: 1,
    logger,
    reconcile: async (_key, signal) => {
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      seen.aborted = signal.aborted;
      seen.finished = true;
      return undefined;
    },
  });
  queue.start();
  queue.add('a');
  await until(() => queue.inFlight === 1);
  await queue.shutdown();
  assert.deepEqual(seen, { aborted: true, finished: true });
  queue.add('b');
  assert.equal(queue.depth, 0, 'a stopped queue takes no work');
});

test('backoff grows exponentially within its bounds', () => {
  const policy = { baseMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(policy, 1, () => 1), 100);
  assert.equal(backoffDelay(policy, 3, () => 1), 400);
  assert.equal(backoffDelay(policy, 10, () => 1), 1000);
  assert.equal(backoffDelay(policy, 10, () => 0), 500);
});
