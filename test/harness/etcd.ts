import { request } from 'node:http';
import { join } from 'node:path';
import { ManagedProcess } from './processes.ts';
import { freePort, waitFor } from './ports.ts';

function healthy(url: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/health`, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', reject);
    req.end();
  });
}

export interface RunningEtcd {
  url: string;
  process: ManagedProcess;
}

/** One etcd for the whole run; every apiserver keeps its data under its own prefix. */
export async function startEtcd(binary: string, dir: string): Promise<RunningEtcd> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const url = `http://127.0.0.1:${clientPort}`;
  const process = new ManagedProcess({
    name: 'etcd',
    command: binary,
    args: [
      `--data-dir=${join(dir, 'data')}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
      // Throwaway data: durability only costs time here.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ],
    logFile: join(dir, 'etcd.log'),
  });
  process.start();
  await waitFor('etcd /health', () => healthy(url), 30_000, 100, () => (process.running ? undefined : `etcd exited; see ${join(dir, 'etcd.log')}`));
  return { url, process };
}
