#!/usr/bin/env node
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { controllerHelp, parseControllerOptions } from './config/index.ts';
import type { MemberApi } from './clusters/index.ts';
import type { LeaderElector } from './runtime/index.ts';
import type { Sharder } from './hub/index.ts';
import { SHARDING_LABELS } from './api/index.ts';
import { Metrics, SecretScrubber, createLogger, serveEndpoints, startTracing } from './telemetry/index.ts';

// Everything that loads pg is imported only after tracing has started: its
// instrumentation patches pg when pg loads, never afterwards.

const usage = `usage: rowcast <command> [flags]

commands:
  controller     run the hub controller
  render         print the manifests a DatabaseQueryResource's rows render to, per cluster
  plan           show what a sync would create, update, prune or refuse, by server-side dry run
  status         per cluster, which rows of a DQR are applied, failing, conflicting, blocked or pending
  cluster add    register a member cluster: a kubeconfig Secret and a ClusterTarget
  completion     print a bash or zsh completion script
  version        print the version (also --version)

Every command takes --help.

Rowcast turns the rows of a PostgreSQL query into Kubernetes objects on member clusters.`;

/** A Lease name and a label value: lowercase, at most 63 characters, unique per process. */
function replicaIdentity(): string {
  const host = hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+/, '').slice(0, 50);
  return `${host === '' ? 'rowcast' : host}-${randomUUID().slice(0, 8)}`;
}

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
  const tracing = await startTracing({ env: process.env, scrubber });
  if (tracing.enabled) logger.info('tracing to OTLP', { endpoint: process.env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] ?? process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] });
  const [{ HubController, Sharder, hubLeaseStore }, { MemberApi, MemberKubeConfig }, { LeaderElector }] = await Promise.all([
    import('./hub/index.ts'),
    import('./clusters/index.ts'),
    import('./runtime/index.ts'),
  ]);
  const metrics = new Metrics();
  metrics.collectProcessMetrics();
  let hubKubeconfig = 'in-cluster';
  if (options.kubeconfig !== undefined) {
    try {
      hubKubeconfig = await readFile(options.kubeconfig, 'utf8');
    } catch (error) {
      process.stderr.write(`rowcast controller: cannot read the hub kubeconfig ${options.kubeconfig}: ${(error as NodeJS.ErrnoException).code ?? String(error)}\n`);
      await tracing.shutdown();
      return 2;
    }
  }
  const identity = replicaIdentity();
  const userAgent = `rowcast (replica ${identity})`;
  let elector: LeaderElector | undefined;
  let shardElector: LeaderElector | undefined;
  // With sharding, the shard Lease answers for every DQR this replica writes for; else the leader Lease.
  const hub = new HubController({
    options,
    logger,
    scrubber,
    metrics,
    hubKubeconfig,
    userAgent,
    fence: (dqrKey) => (shardElector ?? elector)?.fence(dqrKey),
    ...(options.sharding ? { shard: { identity, leads: () => elector?.isLeader === true, ring: options.shardRing, leaseNamespace: options.leaderElectionNamespace } } : {}),
  });
  const stop = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      logger.info('stopping: letting in-flight syncs finish', { signal });
      stop.abort(new Error(signal));
    });
  }

  let leaseApi: MemberApi | undefined;
  // A standby replica is ready to take over; only the leader waits for its caches. With sharding every replica works.
  const ready = (): boolean => (elector !== undefined && !elector.isLeader && !options.sharding ? true : hub.ready);
  const endpoints = options.metricsBindAddress === '0' ? undefined : await serveEndpoints({ bindAddress: options.metricsBindAddress, registry: metrics.registry, ready, notReadyReason: () => hub.notReadyReason });
  if (endpoints !== undefined) logger.info('serving /metrics, /healthz and /readyz', { port: endpoints.port });
  let exitCode = 0;
  let graceMs = options.shutdownGraceMs;
  // Ends the renew loops, only once in-flight syncs are done: they write on the Leases until then.
  const released = new AbortController();
  // Ends the wait for the leader Lease of a sharded replica that is stopping for any reason.
  const quitting = new AbortController();
  let holding: Promise<boolean> | undefined;
  let shardHolding: Promise<boolean> | undefined;
  let sharder: Sharder | undefined;
  let sharding: Promise<void> | undefined;
  try {
    if (options.leaderElect) {
      leaseApi = new MemberApi(new MemberKubeConfig(hubKubeconfig, { requestTimeoutMs: options.requestTimeoutMs, userAgent }));
      const timings = { leaseDurationMs: options.leaseDurationMs, renewDeadlineMs: options.renewDeadlineMs, retryPeriodMs: options.retryPeriodMs };
      const namespace = options.leaderElectionNamespace;
      const leader = new LeaderElector({
        identity,
        ...timings,
        name: options.leaderElectionId,
        namespace,
        store: hubLeaseStore(leaseApi, namespace, options.leaderElectionId),
        logger,
        onLeadershipChange: (leading) => metrics.leaderStatus.labels('rowcast').set(leading ? 1 : 0),
      });
      elector = leader;
      if (options.sharding) {
        const api = leaseApi;
        shardElector = new LeaderElector({ identity, ...timings, name: identity, namespace, store: hubLeaseStore(api, namespace, identity), labels: { [SHARDING_LABELS.ring]: options.shardRing }, logger });
        await shardElector.acquire(stop.signal);
        shardHolding = shardElector.hold(released.signal);
        logger.info('holding a shard Lease', { ring: options.shardRing, identity });
        // Every replica contends for the leader Lease alongside its own work: the leader is also the sharder.
        sharding = (async () => {
          await leader.acquire(AbortSignal.any([stop.signal, quitting.signal]));
          holding = leader.hold(released.signal);
          sharder = new Sharder({
            hub: api,
            leaseNamespace: namespace,
            ring: options.shardRing,
            namespace: options.namespace,
            logger,
            metrics,
            fence: () => leader.fence('sharding'),
            resyncMs: options.retryPeriodMs,
          });
          await sharder.start();
        })();
        sharding.catch(() => undefined);
      } else {
        await leader.acquire(stop.signal);
        // Renewing starts now, alongside a start-up that can outlast the lease (informer lists, members that do not answer).
        holding = leader.hold(released.signal);
      }
    } else {
      metrics.leaderStatus.labels('rowcast').set(1);
    }
    const lost = [elector?.leadership, shardElector?.leadership].filter((s) => s !== undefined);
    const ended = AbortSignal.any([stop.signal, ...lost]);
    const starting = hub.start();
    starting.catch(() => undefined);
    await Promise.race([starting, aborted(ended)]);
    await aborted(ended);
    if (lost.some((s) => s.aborted)) {
      // Another replica may already be syncing: cancel in-flight syncs at once, as controller-runtime does, and let Kubernetes restart this one.
      exitCode = 1;
      graceMs = 0;
    }
  } catch (error) {
    if (!stop.signal.aborted) {
      logger.error('controller failed', { error });
      exitCode = 1;
    }
  } finally {
    quitting.abort();
    await sharding?.catch(() => undefined);
    await sharder?.stop();
    await hub.stop(graceMs);
    released.abort();
    for (const renewing of [holding, shardHolding]) if (renewing !== undefined && !(await renewing)) exitCode = 1;
    await shardElector?.release();
    await elector?.release();
    await leaseApi?.close();
    await endpoints?.close();
    await tracing.shutdown();
  }
  logger.info('stopped', { exitCode });
  return exitCode;
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** Runs a CLI command; its failures print as one line, never a stack. */
async function cli(run: (commands: typeof import('./cli/index.ts')) => Promise<number>): Promise<number> {
  const [commands, { describeApiError }] = await Promise.all([import('./cli/index.ts'), import('./runtime/index.ts')]);
  const { CliError, EXIT } = commands;
  try {
    return await run(commands);
  } catch (error) {
    if (error instanceof CliError) {
      process.stderr.write(`rowcast: ${error.message}\n`);
      return error.code;
    }
    if (error instanceof TypeError && (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      process.stderr.write(`rowcast: ${error.message}\n`);
      return EXIT.usage;
    }
    // An apiserver's or the network's answer: its message, not client-node's multi-line dump.
    process.stderr.write(`rowcast: ${describeApiError(error).message.split('\n')[0] ?? ''}\n`);
    return EXIT.failed;
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'controller':
      return controller(rest);
    case 'render':
      return cli((c) => c.renderCommand(rest));
    case 'plan':
      return cli((c) => c.planCommand(rest));
    case 'status':
      return cli((c) => c.statusCommand(rest));
    case 'completion':
      return cli((c) => c.completionCommand(rest));
    case 'version':
    case '--version':
      return cli((c) => {
        process.stdout.write(`rowcast ${c.rowcastVersion()}\n`);
        return Promise.resolve(c.EXIT.ok);
      });
    case 'cluster':
      if (rest[0] === 'add') return cli((c) => c.clusterAddCommand(rest.slice(1)));
      process.stderr.write(`rowcast cluster: unknown subcommand ${JSON.stringify(rest[0] ?? '')}; try rowcast cluster add --help\n`);
      return 2;
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
