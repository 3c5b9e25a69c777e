import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { startApiserver, type RunningApiserver } from './harness/kube-apiserver.ts';
import { freePort, waitFor } from './harness/ports.ts';
import { openTestEnv } from './harness/test-env.ts';

const env = await openTestEnv('no-crds');
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
let bare: RunningApiserver | undefined;

before(async () => {
  // A hub of this file's own: its etcd prefix holds no CRDs.
  bare = await startApiserver(env.state.binaries.kubeApiserver, `bare-${env.namespace}`, env.state.runDir, env.state.etcdUrl);
});

env.defer(async () => {
  await bare?.process.stop();
});

test('a hub without the CRDs: one log line and /readyz say so, and SIGTERM stops the controller within the grace', async () => {
  assert.ok(bare !== undefined);
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [main, 'controller', '--kubeconfig', bare.info.kubeconfigPath, '--metrics-bind-address', `127.0.0.1:${port}`, '--hub-id', 'bare', '--shutdown-grace', '5s'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  try {
    await waitFor('the CRDs reported missing', () => Promise.resolve(output.join('').includes('CRDs')), 30_000, 100);
    const readyz = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(readyz.status, 503);
    assert.match(await readyz.text(), /rowcast\.dev.*not installed/);
    // Several informer retry periods: the problem is still said once, not once per retry.
    await new Promise((resolve) => setTimeout(resolve, 4000));
    const lines = output.join('').split('\n').filter((l) => l.includes('CRDs'));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0] ?? '', /databasequeryresources|rowcast\.dev/);
    assert.ok(!output.join('').includes('    at '), 'no stack trace');

    child.kill('SIGTERM');
    // Far more than the 5 s grace and far less than the 70 s it used to take; on timeout the process is killed and the test fails.
    const stopped = await Promise.race([exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 30_000))]);
    assert.notEqual(stopped, 'hung', `still running 30 s after SIGTERM:\n${output.join('')}`);
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }
});
