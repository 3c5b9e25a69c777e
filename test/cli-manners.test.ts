import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { startApiserver, type RunningApiserver } from './harness/kube-apiserver.ts';
import { openTestEnv } from './harness/test-env.ts';
import { putDatabaseSecret, registerMembers } from './helpers/hub-fixture.ts';

const env = await openTestEnv('cli-manners');
const root = join(import.meta.dirname, '..');
const main = join(root, 'src', 'main.ts');
const dir = await mkdtemp(join(tmpdir(), 'rowcast-cli-manners-'));
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string; bin?: Record<string, string> };
let bare: RunningApiserver | undefined;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return promisify(execFile)(command, args, { maxBuffer: 16 * 1024 * 1024, ...options }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: unknown) => {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    },
  );
}

const rowcast = (...args: string[]): Promise<Run> => run(process.execPath, [main, ...args]);

/** One line naming the problem: no stack, no usage text after it. */
function oneLine(result: Run, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, `exit code\n${result.stdout}${result.stderr}`);
  const lines = result.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('note: '));
  assert.equal(lines.length, 1, `one line:\n${result.stderr}`);
  assert.match(lines[0] ?? '', pattern);
}

async function dqrFile(name: string, spec: Record<string, unknown> = {}): Promise<string> {
  const path = join(dir, `${name}.yaml`);
  await writeFile(
    path,
    yaml.dump({
      apiVersion: 'rowcast.dev/v1alpha1',
      kind: 'DatabaseQueryResource',
      metadata: { name, namespace: env.namespace },
      spec: {
        database: { connectionSecretRef: { name: 'db' } },
        query: 'SELECT 1 AS id',
        template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m-{{row.id}}\n',
        targets: { clusterSelector: { matchLabels: { region: 'east' } } },
        ...spec,
      },
    }),
  );
  return path;
}

before(async () => {
  await registerMembers(env);
  await putDatabaseSecret(env);
  bare = await startApiserver(env.state.binaries.kubeApiserver, `bare-${env.namespace}`, env.state.runDir, env.state.etcdUrl);
});

env.defer(async () => {
  await bare?.process.stop();
});

test('rowcast version and --version print the package version', async () => {
  for (const args of [['version'], ['--version']]) {
    const result = await rowcast(...args);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), `rowcast ${pkg.version}`);
  }
});

test('rowcast completion bash|zsh prints a completion script knowing the commands and their flags', async () => {
  const bash = await rowcast('completion', 'bash');
  assert.equal(bash.code, 0, bash.stderr);
  assert.match(bash.stdout, /complete -F _rowcast rowcast/);
  for (const word of ['controller', 'render', 'plan', 'status', 'completion', '--database-url', '--detailed-exitcode', '--service-account']) assert.ok(bash.stdout.includes(word), word);
  const checked = await run('bash', ['-c', `${bash.stdout}\ncomplete -p rowcast`]);
  assert.equal(checked.code, 0, checked.stderr);
  const zsh = await rowcast('completion', 'zsh');
  assert.equal(zsh.code, 0, zsh.stderr);
  assert.match(zsh.stdout, /^#compdef rowcast/);
  oneLine(await rowcast('completion', 'fish'), 2, /completion: .*fish.*bash or zsh/);
});

test('the bin entry runs rowcast on the project\'s own Node, also through npx', async () => {
  const bin = pkg.bin?.['rowcast'];
  assert.ok(bin !== undefined, 'package.json has bin.rowcast');
  // The machine's node (v20) first on PATH: the launcher must not use it.
  const path = `/usr/bin:/bin`;
  const direct = await run(join(root, bin), ['--version'], { env: { PATH: path, HOME: process.env['HOME'] } });
  assert.equal(direct.code, 0, direct.stderr);
  assert.equal(direct.stdout.trim(), `rowcast ${pkg.version}`);
  const npx = await run('npx', ['--no-install', 'rowcast', '--version'], { cwd: root, env: { PATH: path, HOME: process.env['HOME'] } });
  assert.equal(npx.code, 0, npx.stderr);
  assert.equal(npx.stdout.trim(), `rowcast ${pkg.version}`);
});

test('bad input exits 2 with one line naming it: a malformed or non-postgres --database-url, a missing kubeconfig file', async () => {
  const file = await dqrFile('usage');
  oneLine(await rowcast('render', '-f', file, '--cluster', 'member-1:region=east', '--database-url', 'postgres://u:p@[bad/db'), 2, /--database-url/);
  oneLine(await rowcast('render', '-f', file, '--cluster', 'member-1:region=east', '--database-url', '%%%'), 2, /--database-url/);
  oneLine(await rowcast('render', '-f', file, '--cluster', 'member-1:region=east', '--database-url', 'mysql://u:p@db.example:3306/app'), 2, /--database-url: .*mysql.*postgres/);
  oneLine(await rowcast('plan', '-f', file, '--kubeconfig', join(dir, 'nowhere')), 2, /kubeconfig.*nowhere/);
  oneLine(await rowcast('controller', '--kubeconfig', join(dir, 'nowhere'), '--metrics-bind-address', '0'), 2, /kubeconfig.*nowhere/);
});

test('render never invents a cluster: --cluster must be one the DQR selects', async () => {
  const file = await dqrFile('clusters');
  const url = `${env.db.url}?sslmode=disable`;
  oneLine(await rowcast('render', '-f', file, '--database-url', url), 2, /--cluster.*--kubeconfig/);
  oneLine(await rowcast('render', '-f', file, '--database-url', url, '--cluster', 'far:region=west'), 2, /--cluster far: .*not select/);
  oneLine(await rowcast('render', '-f', file, '--database-url', url, '--kubeconfig', env.hub.info.kubeconfigPath, '--cluster', 'member-2'), 2, /--cluster member-2: .*not select.*member-1/);
  const ok = await rowcast('render', '-f', file, '--database-url', url, '--kubeconfig', env.hub.info.kubeconfigPath, '--cluster', 'member-1');
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /# cluster: member-1, row: 1/);
});

test('plan: an unknown target cluster, no ClusterTargets, a hub without the CRDs: one line, exit 1', async () => {
  assert.ok(bare !== undefined);
  const url = `${env.db.url}?sslmode=disable`;
  const hub = ['--kubeconfig', env.hub.info.kubeconfigPath, '--database-url', url, '--hub-id', 'h'];
  oneLine(await rowcast('plan', '-f', await dqrFile('unknown', { targets: { clusters: ['nowhere'] } }), ...hub), 1, /ClusterTarget .*nowhere not found/);
  oneLine(await rowcast('plan', '-f', await dqrFile('none', { targets: { clusterSelector: { matchLabels: { region: 'mars' } } } }), ...hub), 1, /selects no ClusterTarget/);
  const file = await dqrFile('bare');
  for (const args of [
    ['plan', '-f', file, '--kubeconfig', bare.info.kubeconfigPath, '--database-url', url],
    ['render', '-f', file, '--kubeconfig', bare.info.kubeconfigPath, '--database-url', url],
    ['status', 'bare', '--kubeconfig', bare.info.kubeconfigPath],
    ['cluster', 'add', 'm1', '--context', 'member-1', '--source-kubeconfig', env.members[0]?.info.kubeconfigPath ?? '', '--kubeconfig', bare.info.kubeconfigPath],
  ]) {
    oneLine(await rowcast(...args), 1, /hub does not serve .*rowcast\.dev.*CRDs are not installed/);
  }
});
