import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { appDir, buildahArgs, buildImage, imageName, imageUser, imageVersion, nodePath } from '../scripts/image.ts';
import { freePort, waitFor } from './harness/ports.ts';
import { openTestEnv } from './harness/test-env.ts';
import { condition, configMaps, dqrStatus, eventually, putDatabaseSecret, putDqr, registerMembers } from './helpers/hub-fixture.ts';

// The real image: `npm run image` builds it (or finds it built from the same inputs), these tests read and run it.

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..');
const build = await buildImage((line) => console.log(`# image: ${line}`));
console.log(`# image: ${build.built ? 'built' : 'reused'} ${build.archive} in ${build.seconds.toFixed(1)} s`);

const work = await mkdtemp(join(tmpdir(), 'rowcast-image-test-'));
// The controller runs as 65532: the mounted kubeconfig's folder must be readable to it.
await chmod(work, 0o755);

interface Descriptor {
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}
interface ImageConfig {
  config: { User?: string; Entrypoint?: string[]; Cmd?: string[]; WorkingDir?: string; Env?: string[]; Labels?: Record<string, string> };
}

function blob(dir: string, digest: string): string {
  return join(dir, 'blobs', ...digest.split(':'));
}

/** The archive unpacked as an OCI layout: index, manifest, config and each layer's file list. */
async function readArchive(archive: string): Promise<{ index: { manifests: Descriptor[] }; config: ImageConfig; layers: Descriptor[]; files: string[] }> {
  const dir = join(work, 'layout');
  await rm(dir, { recursive: true, force: true });
  await run('mkdir', ['-p', dir]);
  await run('tar', ['-xf', archive, '-C', dir]);
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  assert.equal(index.manifests.length, 1, 'one image in the archive');
  const manifest = JSON.parse(await readFile(blob(dir, index.manifests[0]?.digest ?? ''), 'utf8')) as { config: Descriptor; layers: Descriptor[] };
  const config = JSON.parse(await readFile(blob(dir, manifest.config.digest), 'utf8')) as ImageConfig;
  const files: string[] = [];
  for (const layer of manifest.layers) {
    const { stdout } = await run('tar', ['-tf', blob(dir, layer.digest)], { maxBuffer: 64 * 1024 * 1024 });
    files.push(...stdout.split('\n').filter((l) => l !== '').map((l) => l.replace(/^\.?\//, '')));
  }
  return { index, config, layers: manifest.layers, files };
}

function commandOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${String(pid)}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Every process below pid, from /proc's parent links (buildah, in Go, forks from any of its threads). */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // The fields after the command's closing parenthesis: state, then ppid.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (Number.isInteger(ppid)) parents.set(Number(entry), ppid);
  }
  const found: number[] = [];
  const below = (parent: number): void => {
    for (const [child, p] of parents) {
      if (p === parent) {
        found.push(child);
        below(child);
      }
    }
  };
  below(pid);
  return found;
}

interface LockEntry {
  dev?: boolean;
  hasInstallScript?: boolean;
}

test('the image runs node as uid 65532 without a shell and holds production dependencies and src/ only, no tests or secrets', async (t) => {
  const { index, config, layers, files } = await readArchive(build.archive);
  const size = layers.reduce((sum, l) => sum + l.size, 0);
  t.diagnostic(`image ${imageName}: ${(size / 1024 / 1024).toFixed(1)} MiB in ${String(layers.length)} layer(s), ${String(files.length)} files`);
  console.log(`# image size: ${(size / 1024 / 1024).toFixed(1)} MiB`);
  // Node alone is ~121 MiB and the production node_modules ~100 MiB: far beyond this means something unwanted came in.
  assert.ok(size < 320 * 1024 * 1024, `the image is ${String(size)} bytes`);

  assert.equal(index.manifests[0]?.annotations?.['org.opencontainers.image.ref.name'], imageName);
  const c = config.config;
  assert.equal(c.User, imageUser);
  assert.deepEqual(c.Entrypoint, [nodePath, 'src/main.js'], 'exec form, no shell');
  assert.deepEqual(c.Cmd, ['controller']);
  assert.equal(c.WorkingDir, appDir);
  assert.ok(c.Env?.includes('NODE_ENV=production'));
  for (const label of ['title', 'description', 'version', 'licenses']) assert.ok(c.Labels?.[`org.opencontainers.image.${label}`], `label org.opencontainers.image.${label}`);
  assert.equal(c.Labels?.['org.opencontainers.image.version'], imageVersion);

  const set = new Set(files.map((f) => f.replace(/\/$/, '')));
  for (const needed of [nodePath.slice(1), 'app/src/main.js', 'app/src/hub/index.js', 'app/src/cli/index.js', 'app/package.json', 'lib64/ld-linux-x86-64.so.2', 'etc/ssl/certs/ca-certificates.crt', 'usr/share/zoneinfo/Europe/Paris', 'etc/passwd']) {
    assert.ok(set.has(needed), `the image has ${needed}`);
  }
  const shells = files.filter((f) => /(^|\/)(sh|bash|dash|busybox)$/.test(f));
  assert.deepEqual(shells, [], 'no shell');
  assert.deepEqual(files.filter((f) => /^(usr\/)?s?bin\//.test(f) && !f.endsWith('/')), [], 'no programs besides node');

  const lock = JSON.parse(await readFile(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const devOnly = Object.entries(lock.packages).filter(([path, e]) => path !== '' && e.dev === true).map(([path]) => `app/${path}`);
  assert.ok(devOnly.includes('app/node_modules/typescript'), 'the lock file marks dev packages');
  assert.deepEqual(devOnly.filter((p) => set.has(p)), [], 'no dev dependencies');
  const production = Object.entries(lock.packages).filter(([path, e]) => path !== '' && e.dev !== true).map(([path]) => `app/${path}`);
  assert.deepEqual(production.filter((p) => !set.has(p)), [], 'every production dependency');

  // The build runs npm ci --ignore-scripts: every production install script must be read and found unneeded.
  const reviewed: Record<string, string> = {
    'node_modules/protobufjs': 'postinstall only prints a warning when a dependent pins an old version scheme; nothing is built',
  };
  const scripts = Object.entries(lock.packages).filter(([path, e]) => e.dev !== true && e.hasInstallScript === true && reviewed[path] === undefined);
  assert.deepEqual(scripts.map(([path]) => path), [], 'check that the package works without its install script, then list it above');

  assert.deepEqual(files.filter((f) => f.startsWith('app/') && !/^app\/(src|node_modules)\/|^app\/(src|node_modules)$|^app\/package\.json$|^app\/?$/.test(f)), [], 'app/ holds package.json, src/ and node_modules/ only');
  // JavaScript only: a .ts file would make Node load its type stripper, a wasm module it keeps for good (~30 MiB, docs/performance.md).
  assert.deepEqual(files.filter((f) => f.startsWith('app/src/') && !f.endsWith('/') && !f.endsWith('.js')), [], 'app/src holds compiled JavaScript only');
  assert.deepEqual(files.filter((f) => /(^|\/)(test|tests|__tests__)\/|\.test\.[cm]?[jt]s$|\.spec\.[cm]?[jt]s$/.test(f)), [], 'no test files');
  const secrets = files.filter((f) => /(^|\/)(\.env(\..*)?|\.npmrc|kubeconfig(\.ya?ml)?|id_(rsa|ed25519|ecdsa)|[^/]*\.(key|pem|p12|pfx))$/.test(f));
  assert.deepEqual(secrets, [], 'no secrets');
});

test('the image, run as `rowcast controller` with chroot isolation on the host network, syncs a DQR to the members', async () => {
  const env = await openTestEnv('image');
  env.defer(() => rm(work, { recursive: true, force: true }));
  await registerMembers(env);
  await putDatabaseSecret(env);
  await env.sql('CREATE TABLE things (id int PRIMARY KEY)');
  await env.sql('INSERT INTO things VALUES (1), (2)');

  const config = join(work, 'config');
  await run('mkdir', ['-p', config]);
  await chmod(config, 0o755);
  await writeFile(join(config, 'hub'), env.hub.info.kubeconfig, { mode: 0o644 });

  const store = join(work, 'store');
  const buildah = async (args: string[]): Promise<string> => (await run('buildah', buildahArgs(store, args), { maxBuffer: 16 * 1024 * 1024 })).stdout.trim();
  const container = await buildah(['from', '--quiet', '--pull-never', `oci-archive:${build.archive}`]);
  env.defer(async () => {
    await buildah(['rm', container]);
    await rm(store, { recursive: true, force: true });
  });
  const inspected = JSON.parse(await buildah(['inspect', '--type', 'container', container])) as { OCIv1: ImageConfig };
  const { Entrypoint = [], Cmd = [] } = inspected.OCIv1.config;
  const port = await freePort();
  // buildah run does not apply the entrypoint by itself: run exactly the image's Entrypoint + Cmd, then the flags.
  const argv = [...Entrypoint, ...Cmd, '--kubeconfig', '/config/hub', '--namespace', env.namespace, '--metrics-bind-address', `127.0.0.1:${String(port)}`, '--probe-interval', '2s'];
  const child = spawn('buildah', buildahArgs(store, ['run', '--isolation', 'chroot', '--network', 'host', '--volume', `${config}:/config:ro`, container, '--', ...argv]), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  try {
    await waitFor('the metrics port', async () => (await fetch(`http://127.0.0.1:${String(port)}/healthz`)).ok, 60_000, 200).catch((error: unknown) => {
      throw new Error(`${String(error)}\n${output.join('')}`);
    });
    await putDqr(env, 'things', { query: 'SELECT id FROM things ORDER BY id', template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: thing-{{row.id}}\n' });
    await eventually('Ready', async () => (condition(await dqrStatus(env, 'things'), 'Ready')?.status === 'True' ? true : undefined));
    for (const member of env.members) {
      assert.deepEqual([...(await configMaps(member, env.namespace)).keys()].filter((n) => n.startsWith('thing-')).sort(), ['thing-1', 'thing-2']);
    }
  } finally {
    // A container runtime signals the entrypoint (PID 1); buildah run would only kill it: signal node itself.
    const node = (await descendants(child.pid ?? 0)).find((pid) => commandOf(pid)[0] === nodePath);
    if (node !== undefined) process.kill(node, 'SIGTERM');
    else child.kill('SIGKILL');
    if (child.exitCode === null) await once(child, 'exit');
  }
  assert.match(output.join(''), /"msg":"stopped"/, `SIGTERM reached the controller inside the container:\n${output.join('')}`);
});
