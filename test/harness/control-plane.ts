import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import yaml from 'js-yaml';
import { ensureControlPlaneBinaries, type ControlPlaneBinaries } from './control-plane-build.ts';
import { startEtcd } from './etcd.ts';
import { adminRequest, startApiserver, type ClusterInfo } from './kube-apiserver.ts';
import { startPostgres, type PostgresInfo } from './postgres.ts';
import { runDirPrefix } from './paths.ts';
import type { ManagedProcess } from './processes.ts';
import { waitFor } from './ports.ts';

/** Everything a test process needs to use a running harness; written to state.json. */
export interface HarnessState {
  runDir: string;
  etcdUrl: string;
  hub: ClusterInfo;
  members: ClusterInfo[];
  postgres: PostgresInfo;
  binaries: ControlPlaneBinaries;
  /** Seconds each phase of start-up took. */
  timings: Record<string, number>;
}

export const stateEnvVar = 'ROWCAST_HARNESS_STATE';

export interface ControlPlane {
  state: HarnessState;
  statePath: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  members?: number;
  log?: (line: string) => void;
}

const crdDir = join(import.meta.dirname, '..', '..', 'crds');

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A harness killed outright cannot clean up; the next one removes what it left. */
async function removeStaleRunDirs(): Promise<void> {
  const parent = dirname(runDirPrefix());
  const prefix = basename(runDirPrefix());
  for (const entry of await readdir(parent).catch(() => [] as string[])) {
    if (!entry.startsWith(prefix)) continue;
    const owner = Number((await readFile(join(parent, entry, 'owner.pid'), 'utf8').catch(() => '0')).trim());
    if (owner === 0 || !pidAlive(owner)) await rm(join(parent, entry), { recursive: true, force: true });
  }
}

export async function installCrds(hub: ClusterInfo): Promise<void> {
  const files = (await readdir(crdDir)).filter((file) => file.endsWith('.yaml')).sort();
  for (const file of files) {
    const crd = yaml.load(await readFile(join(crdDir, file), 'utf8')) as { metadata: { name: string } };
    const created = await adminRequest(hub, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
    if (created.status !== 201 && created.status !== 409) throw new Error(`installing ${file} on the hub: HTTP ${created.status}: ${created.body}`);
    await waitFor(
      `CRD ${crd.metadata.name} to be established`,
      async () => {
        const got = await adminRequest(hub, 'GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        const conditions = (JSON.parse(got.body) as { status?: { conditions?: { type: string; status: string }[] } }).status?.conditions ?? [];
        return conditions.some((c) => c.type === 'Established' && c.status === 'True');
      },
      30_000,
    );
  }
}

/**
 * Starts one etcd, a hub and N member apiservers on it (each under its own etcd
 * prefix) and a PostgreSQL, all on loopback, in parallel where they are
 * independent. Every process dies with this one.
 */
export async function startControlPlane(options: StartOptions = {}): Promise<ControlPlane> {
  const log = options.log ?? (() => undefined);
  const memberCount = options.members ?? 2;
  const timings: Record<string, number> = {};
  const timed = async <T>(phase: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const result = await work();
    timings[phase] = Math.round(performance.now() - started) / 1000;
    return result;
  };

  await removeStaleRunDirs();
  const binaries = await timed('binaries', () => ensureControlPlaneBinaries(log));
  const runDir = await mkdtemp(runDirPrefix());
  await writeFile(join(runDir, 'owner.pid'), String(process.pid));
  const processes: ManagedProcess[] = [];
  const killAll = (): void => {
    for (const proc of processes) proc.killNow();
  };
  process.once('exit', killAll);

  const stop = async (): Promise<void> => {
    process.removeListener('exit', killAll);
    // Apiservers first, so none of them logs etcd errors on the way down.
    await Promise.all(processes.filter((p) => p.spec.name.includes('apiserver')).map((p) => p.stop()));
    await Promise.all(processes.map((p) => p.stop()));
    await rm(runDir, { recursive: true, force: true });
  };

  try {
    const started = performance.now();
    const [etcd, postgres] = await Promise.all([
      timed('etcd', () => startEtcd(binaries.etcd, runDir)).then((e) => {
        processes.push(e.process);
        return e;
      }),
      timed('postgres', () => startPostgres(runDir)).then((p) => {
        processes.push(p.process);
        return p;
      }),
    ]);
    const names = ['hub', ...Array.from({ length: memberCount }, (_, i) => `member-${i + 1}`)];
    const apiservers = await timed('apiservers', () =>
      Promise.all(
        names.map(async (name) => {
          const server = await startApiserver(binaries.kubeApiserver, name, runDir, etcd.url);
          processes.push(server.process);
          return server;
        }),
      ),
    );
    const [hub, ...members] = apiservers.map((a) => a.info);
    if (hub === undefined) throw new Error('no hub apiserver');
    await timed('crds', () => installCrds(hub));
    timings['total'] = Math.round(performance.now() - started) / 1000;
    const state: HarnessState = { runDir, etcdUrl: etcd.url, hub, members, postgres: postgres.info, binaries, timings };
    const statePath = join(runDir, 'state.json');
    await writeFile(statePath, JSON.stringify(state, null, 2), { mode: 0o600 });
    return { state, statePath, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export async function readHarnessState(): Promise<HarnessState> {
  const path = process.env[stateEnvVar];
  if (path === undefined) throw new Error(`${stateEnvVar} is not set: run tests through \`npm test\`, which starts the harness`);
  return JSON.parse(await readFile(path, 'utf8')) as HarnessState;
}
