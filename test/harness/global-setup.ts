import { startControlPlane, stateEnvVar, type ControlPlane } from './control-plane.ts';

let controlPlane: ControlPlane | undefined;

/**
 * node:test global setup: one control plane per test run, shared by every test
 * file through the state file named in the environment; each file isolates
 * itself with its own namespaces and database (test-env.ts).
 */
export async function globalSetup(): Promise<void> {
  const log = (line: string): void => {
    process.stderr.write(`harness: ${line}\n`);
  };
  controlPlane = await startControlPlane({ members: 2, log });
  process.env[stateEnvVar] = controlPlane.statePath;
  const { timings, hub, members } = controlPlane.state;
  log(`up in ${timings['total'] ?? '?'} s (etcd ${timings['etcd'] ?? '?'} s, postgres ${timings['postgres'] ?? '?'} s, apiservers ${timings['apiservers'] ?? '?'} s, CRDs ${timings['crds'] ?? '?'} s); hub ${hub.server}, members ${members.map((m) => m.server).join(' ')}`);
}

export async function globalTeardown(): Promise<void> {
  await controlPlane?.stop();
}
