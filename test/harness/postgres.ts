import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, chown, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { ManagedProcess, type RunAs } from './processes.ts';
import { freePort, waitFor } from './ports.ts';

const run = promisify(execFile);

/** Connection facts for the harness's PostgreSQL superuser; plain data for the state file. */
export interface PostgresInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  pid: number;
  logFile: string;
}

async function isExecutable(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** initdb is not on PATH in Debian's packaging; look there, then in /usr/lib/postgresql/<newest>/bin. */
export async function findPostgresBinDir(): Promise<string> {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir !== '' && (await isExecutable(join(dir, 'initdb'))) && (await isExecutable(join(dir, 'postgres')))) return dir;
  }
  const versions = await readdir('/usr/lib/postgresql').catch(() => [] as string[]);
  versions.sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const dir = join('/usr/lib/postgresql', version, 'bin');
    if (await isExecutable(join(dir, 'initdb'))) return dir;
  }
  throw new Error('PostgreSQL server binaries (initdb, postgres) not found; install the postgresql package (.ci/run does)');
}

/** PostgreSQL refuses to run as root: as root, run it as the postgres (or nobody) user. */
async function serverUser(): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = await readFile('/etc/passwd', 'utf8');
  for (const wanted of ['postgres', 'nobody']) {
    const fields = passwd.split('\n').find((line) => line.startsWith(`${wanted}:`))?.split(':');
    if (fields?.[2] !== undefined && fields[3] !== undefined) return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error('running as root and no postgres or nobody user to run PostgreSQL as');
}

export interface RunningPostgres {
  info: PostgresInfo;
  process: ManagedProcess;
}

export async function startPostgres(runDir: string): Promise<RunningPostgres> {
  const binDir = await findPostgresBinDir();
  const dir = join(runDir, 'postgres');
  const dataDir = join(dir, 'data');
  await mkdir(dir, { recursive: true });
  const runAs = await serverUser();
  const password = randomBytes(18).toString('base64url');
  const passwordFile = join(dir, 'pwfile');
  await writeFile(passwordFile, password, { mode: 0o600 });
  if (runAs !== undefined) {
    await chmod(runDir, 0o711);
    await chown(dir, runAs.uid, runAs.gid);
    await chown(passwordFile, runAs.uid, runAs.gid);
  }
  const asUser = runAs === undefined ? [] : ['setpriv', `--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, '--clear-groups', '--'];
  const initdb = [
    ...asUser, join(binDir, 'initdb'), '-D', dataDir, '-U', 'postgres', `--pwfile=${passwordFile}`,
    '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync',
  ];
  await run(initdb[0] ?? 'initdb', initdb.slice(1));
  const port = await freePort();
  const logFile = join(dir, 'postgres.log');
  const proc = new ManagedProcess({
    name: 'postgres',
    command: join(binDir, 'postgres'),
    args: [
      '-D', dataDir, '-p', String(port),
      '-c', 'listen_addresses=127.0.0.1',
      '-c', `unix_socket_directories=${dir}`,
      '-c', 'max_connections=300',
      '-c', 'shared_preload_libraries=pg_stat_statements',
      // Throwaway data: durability only costs time here.
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    ],
    logFile,
    ...(runAs === undefined ? {} : { runAs }),
  });
  if (runAs !== undefined) {
    await writeFile(logFile, '');
    await chown(logFile, runAs.uid, runAs.gid);
  }
  proc.start();
  const info = { host: '127.0.0.1', port, user: 'postgres', password, pid: 0, logFile };
  await waitFor(
    'PostgreSQL to accept connections',
    async () => {
      const client = new pg.Client({ ...info, database: 'postgres', connectionTimeoutMillis: 1000 });
      try {
        await client.connect();
        return true;
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    60_000,
    100,
    () => (proc.running ? undefined : `it exited; see ${logFile}`),
  );
  return { info: { ...info, pid: proc.pid ?? 0 }, process: proc };
}
