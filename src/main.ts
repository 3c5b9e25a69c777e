#!/usr/bin/env node
import { readFile } from 'node:fs/promises';
import { controllerHelp, parseControllerOptions } from './config/index.ts';
import { HubController } from './hub/index.ts';
import { SecretScrubber, createLogger } from './telemetry/index.ts';

const usage = `usage: rowcast <command> [flags]

commands:
  controller   run the hub controller (rowcast controller --help lists its flags)

Rowcast turns the rows of a PostgreSQL query into Kubernetes objects on member clusters.`;

async function controller(argv: string[]): Promise<number> {
  const parsed = parseControllerOptions(argv, process.env);
  if (!parsed.ok) {
    if (parsed.help) {
      process.stdout.write(`${controllerHelp()}\n`);
      return 0;
    }
    process.stderr.write(`rowcast controller: ${parsed.error}\n\n${controllerHelp()}\n`);
    return 2;
  }
  const { options } = parsed;
  const scrubber = new SecretScrubber();
  const logger = createLogger({ level: options.logLevel, scrubber });
  const hubKubeconfig = options.kubeconfig === undefined ? 'in-cluster' : await readFile(options.kubeconfig, 'utf8');
  const hub = new HubController({ options, logger, scrubber, hubKubeconfig });
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info('stopping: letting in-flight syncs finish', { signal });
      hub.stop().then(resolve, (error: unknown) => {
        logger.error('stop failed', { error });
        resolve();
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  try {
    await hub.start();
  } catch (error) {
    logger.error('start failed', { error });
    await hub.stop();
    return 1;
  }
  await stopped;
  logger.info('stopped');
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'controller':
      return controller(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(`${usage}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`rowcast: unknown command ${JSON.stringify(command)}\n\n${usage}\n`);
      return 2;
  }
}

process.exitCode = await main(process.argv.slice(2));
