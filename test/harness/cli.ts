import { parseArgs } from 'node:util';
import { ensureControlPlaneBinaries } from './control-plane-build.ts';
import { startControlPlane } from './control-plane.ts';

const usage = `usage: node test/harness/cli.ts <command>

commands:
  build        build (or find in ~/.cache/rowcast) the pinned kube-apiserver, kubectl, etcd and helm
  up           start etcd, a hub and members, and PostgreSQL; print how to reach them; Ctrl-C stops all

options:
  --members N  member clusters for "up" (default 2)
  -h, --help   this text`;

const log = (line: string): void => {
  process.stderr.write(`harness: ${line}\n`);
};

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { members: { type: 'string', default: '2' }, help: { type: 'boolean', short: 'h' } },
  });
  const command = positionals[0];
  if (values.help === true || command === undefined) {
    process.stdout.write(`${usage}\n`);
    return command === undefined && values.help !== true ? 2 : 0;
  }
  if (command === 'build') {
    const started = performance.now();
    const binaries = await ensureControlPlaneBinaries(log);
    log(`control plane ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${Object.values(binaries).join(' ')}`);
    return 0;
  }
  if (command === 'up') {
    const plane = await startControlPlane({ members: Number(values.members), log });
    const { hub, members, postgres, timings } = plane.state;
    process.stdout.write(
      [
        `control plane up in ${timings['total'] ?? '?'} s`,
        ...[hub, ...members].map((c) => `  ${c.name.padEnd(9)} ${c.server}  kubeconfig: ${c.kubeconfigPath}`),
        `  postgres  postgresql://${postgres.user}@${postgres.host}:${postgres.port}/postgres (password in ${plane.statePath})`,
        `  state     ${plane.statePath}`,
        'Ctrl-C stops everything.',
        '',
      ].join('\n'),
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await plane.stop();
    return 0;
  }
  process.stderr.write(`unknown command ${command}\n${usage}\n`);
  return 2;
}

process.exitCode = await main();
