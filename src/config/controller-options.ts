import { parseArgs } from 'node:util';
import { parseGoDuration } from '../api/index.ts';
import { isLogLevel, type LogLevel } from '../telemetry/index.ts';

export interface ControllerOptions {
  /** Path of the hub's kubeconfig; undefined: in-cluster service account. */
  readonly kubeconfig: string | undefined;
  /** Watch DQRs, ClusterTargets and Secrets in this namespace only; undefined: all. */
  readonly namespace: string | undefined;
  /** Names this hub in ownership marks; undefined: the UID of the hub's kube-system namespace. */
  readonly hubId: string | undefined;
  readonly allowExecAuth: boolean;
  readonly allowKubeconfigFiles: boolean;
  /** Member kubeconfigs may skip TLS verification or use plain http. */
  readonly allowInsecureKubeconfigs: boolean;
  /** Hub namespaces, besides the controller's own, whose ClusterTargets may be `inCluster`; "*": all. */
  readonly allowInClusterNamespaces: readonly string[];
  /** Where the controller runs (POD_NAMESPACE), else the watched namespace, else default: inCluster targets are allowed here. */
  readonly controllerNamespace: string;
  readonly logLevel: LogLevel;
  /** DQRs synced at once. */
  readonly workers: number;
  readonly probeIntervalMs: number;
  readonly requestTimeoutMs: number;
  /** Rows read per cursor fetch. */
  readonly batchSize: number;
  /** Bytes the informers of one member may hold at once (its watch caches), and one list may read. */
  readonly memberCacheLimitBytes: number;
  /** How long in-flight syncs may run on after a stop signal before they are cancelled. */
  readonly shutdownGraceMs: number;
  /** host:port (or :port) for /metrics, /healthz and /readyz; "0" turns them off. */
  readonly metricsBindAddress: string;
  readonly leaderElect: boolean;
  readonly leaderElectionNamespace: string;
  readonly leaderElectionId: string;
  /** A standby takes the Lease once its holder has not renewed for this long. */
  readonly leaseDurationMs: number;
  /** The leader writes only while its last renewal is younger than this (by its own monotonic clock), and each renewal must finish within it. */
  readonly renewDeadlineMs: number;
  /** How often the Lease is renewed, or a standby tries to take it. */
  readonly retryPeriodMs: number;
  /** Every replica syncs the DQRs assigned to it (its shard Lease); the elected leader also assigns them. */
  readonly sharding: boolean;
  /** Names the replicas that share DQRs: the rowcast.dev/ring label on their shard Leases. */
  readonly shardRing: string;
  /** With timestamp or notify change detection, the query still runs this often (deletes do not move max(updated_at)). */
  readonly fullSyncIntervalMs: number;
  /** driftPolicy Heal: each member applies every object again this often (jittered), in case a drift event was missed; 0: never. */
  readonly resyncPeriodMs: number;
}

interface Flag {
  name: string;
  type: 'string' | 'boolean';
  env: string;
  default: string | boolean | undefined;
  help: string;
}

const flags: readonly Flag[] = [
  { name: 'kubeconfig', type: 'string', env: 'KUBECONFIG', default: undefined, help: "hub kubeconfig path (default: in-cluster service account)" },
  { name: 'namespace', type: 'string', env: 'ROWCAST_NAMESPACE', default: undefined, help: 'watch this hub namespace only (default: all namespaces)' },
  { name: 'hub-id', type: 'string', env: 'ROWCAST_HUB_ID', default: undefined, help: "this hub's id in ownership marks (default: UID of the hub's kube-system namespace)" },
  { name: 'allow-exec-auth', type: 'boolean', env: 'ROWCAST_ALLOW_EXEC_AUTH', default: false, help: 'accept member kubeconfigs with exec or auth-provider plugins (they run programs on the hub)' },
  { name: 'allow-kubeconfig-files', type: 'boolean', env: 'ROWCAST_ALLOW_KUBECONFIG_FILES', default: false, help: 'accept member kubeconfigs that name files on the hub (token-file, certificate-authority, ...)' },
  {
    name: 'allow-insecure-kubeconfigs',
    type: 'boolean',
    env: 'ROWCAST_ALLOW_INSECURE_KUBECONFIGS',
    default: false,
    help: 'accept member kubeconfigs with insecure-skip-tls-verify or a plain http:// server (credentials and objects travel unprotected)',
  },
  {
    name: 'allow-in-cluster-namespaces',
    type: 'string',
    env: 'ROWCAST_ALLOW_IN_CLUSTER_NAMESPACES',
    default: undefined,
    help: "comma-separated hub namespaces, besides the controller's own (POD_NAMESPACE), whose ClusterTargets may use inCluster: true (the controller's own rights on the hub); * for all",
  },
  { name: 'log-level', type: 'string', env: 'ROWCAST_LOG_LEVEL', default: 'info', help: 'debug, info, warn or error' },
  { name: 'workers', type: 'string', env: 'ROWCAST_WORKERS', default: '4', help: 'DatabaseQueryResources synced at once' },
  { name: 'probe-interval', type: 'string', env: 'ROWCAST_PROBE_INTERVAL', default: '30s', help: 'how often each member cluster is probed' },
  { name: 'request-timeout', type: 'string', env: 'ROWCAST_REQUEST_TIMEOUT', default: '30s', help: 'longest wait for a member apiserver to answer, and again for the whole response body (watches excepted)' },
  { name: 'batch-size', type: 'string', env: 'ROWCAST_BATCH_SIZE', default: '1000', help: 'rows read from the database per fetch' },
  {
    name: 'member-cache-limit',
    type: 'string',
    env: 'ROWCAST_MEMBER_CACHE_LIMIT',
    default: '256',
    help: "MiB of a member's answers its watch caches may hold at once, and one list may read: a member that sends more fails its own syncs, not the controller (about 1.5 KiB per managed object, more for kinds whose status is written back)",
  },
  { name: 'metrics-bind-address', type: 'string', env: 'ROWCAST_METRICS_BIND_ADDRESS', default: ':8080', help: 'address of /metrics, /healthz and /readyz; 0 turns them off' },
  { name: 'leader-elect', type: 'boolean', env: 'ROWCAST_LEADER_ELECT', default: false, help: 'run only while holding a Lease on the hub, so replicas can stand by' },
  { name: 'leader-election-namespace', type: 'string', env: 'POD_NAMESPACE', default: undefined, help: 'namespace of the leader Lease (default: --namespace, else default)' },
  { name: 'leader-election-id', type: 'string', env: 'ROWCAST_LEADER_ELECTION_ID', default: 'rowcast-controller', help: 'name of the leader Lease' },
  { name: 'leader-election-lease-duration', type: 'string', env: 'ROWCAST_LEADER_ELECTION_LEASE_DURATION', default: '15s', help: 'a standby takes the Lease once the leader has not renewed it for this long' },
  {
    name: 'leader-election-renew-deadline',
    type: 'string',
    env: 'ROWCAST_LEADER_ELECTION_RENEW_DEADLINE',
    default: '10s',
    help: 'the leader stops writing (and exits) once it has not renewed the Lease for this long; shorter than the lease duration',
  },
  { name: 'leader-election-retry-period', type: 'string', env: 'ROWCAST_LEADER_ELECTION_RETRY_PERIOD', default: '2s', help: 'how often the Lease is renewed or tried; shorter than the renew deadline' },
  {
    name: 'sharding',
    type: 'boolean',
    env: 'ROWCAST_SHARDING',
    default: false,
    help: 'share DQRs among the replicas: each holds a shard Lease and syncs the DQRs labelled rowcast.dev/shard with its identity; the leader (the Lease election above, implied) assigns them',
  },
  { name: 'shard-ring', type: 'string', env: 'ROWCAST_SHARD_RING', default: 'rowcast', help: 'the rowcast.dev/ring label of the shard Leases: replicas with the same ring share DQRs' },
  {
    name: 'resync-period',
    type: 'string',
    env: 'ROWCAST_RESYNC_PERIOD',
    default: '1h',
    help: 'with driftPolicy Heal, apply every managed object again this often (each DQR and member at its own jittered time), in case a drift event was missed; 0 turns it off',
  },
  { name: 'full-sync-interval', type: 'string', env: 'ROWCAST_FULL_SYNC_INTERVAL', default: '10m', help: 'with change detection, run the full query at least this often (deletes move no timestamp)' },
  { name: 'shutdown-grace', type: 'string', env: 'ROWCAST_SHUTDOWN_GRACE', default: '30s', help: 'how long in-flight syncs may finish after SIGTERM before they are cancelled' },
];

export function controllerHelp(): string {
  const usage = (f: Flag): string => `  --${f.name}${f.type === 'string' ? ' VALUE' : ''}`;
  const width = Math.max(...flags.map((f) => usage(f).length)) + 2;
  const lines = flags.map((f) => usage(f).padEnd(width) + `${f.help}${f.default === undefined || f.default === false ? '' : ` (default ${String(f.default)})`}; env ${f.env}`);
  return ['usage: rowcast controller [flags]', '', 'Runs the hub controller. Flags (each also settable by its environment variable):', ...lines, '  -h, --help'.padEnd(width) + 'this text'].join('\n');
}

export type OptionsResult = { ok: true; options: ControllerOptions } | { ok: false; help: true } | { ok: false; help: false; error: string };

function positiveInteger(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: expected a positive integer, got ${JSON.stringify(text)}`);
  return value;
}

function namespaceList(name: string, text: string): string[] {
  const names = text
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
  for (const n of names) {
    if (n !== '*' && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(n)) throw new Error(`--${name}: ${JSON.stringify(n)} is not a namespace name or *`);
  }
  return names;
}

function duration(name: string, text: string): number {
  try {
    const ms = parseGoDuration(text);
    if (ms <= 0) throw new Error('must be positive');
    return ms;
  } catch (error) {
    throw new Error(`--${name}: expected a duration such as 30s or 2m, got ${JSON.stringify(text)}`, { cause: error });
  }
}

/** Flags win over environment variables, which win over defaults; the result is frozen. */
export function parseControllerOptions(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): OptionsResult {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      options: { ...Object.fromEntries(flags.map((f) => [f.name, { type: f.type }])), help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    return { ok: false, help: false, error: error instanceof Error ? error.message : String(error) };
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values['help'] === true) return { ok: false, help: true };
  const value = (name: string): string | boolean | undefined => {
    const flag = flags.find((f) => f.name === name);
    if (flag === undefined) return undefined;
    const fromArgs = values[name];
    if (fromArgs !== undefined) return fromArgs;
    const fromEnv = env[flag.env];
    if (fromEnv !== undefined && fromEnv !== '') return flag.type === 'boolean' ? fromEnv === 'true' || fromEnv === '1' : fromEnv;
    return flag.default;
  };
  const text = (name: string): string | undefined => {
    const v = value(name);
    return typeof v === 'string' ? v : undefined;
  };
  try {
    const logLevel = text('log-level') ?? 'info';
    if (!isLogLevel(logLevel)) throw new Error(`--log-level: expected debug, info, warn or error, got ${JSON.stringify(logLevel)}`);
    const options: ControllerOptions = {
      kubeconfig: text('kubeconfig'),
      namespace: text('namespace'),
      hubId: text('hub-id'),
      allowExecAuth: value('allow-exec-auth') === true,
      allowKubeconfigFiles: value('allow-kubeconfig-files') === true,
      allowInsecureKubeconfigs: value('allow-insecure-kubeconfigs') === true,
      allowInClusterNamespaces: namespaceList('allow-in-cluster-namespaces', text('allow-in-cluster-namespaces') ?? ''),
      controllerNamespace: (env['POD_NAMESPACE'] ?? '') !== '' ? (env['POD_NAMESPACE'] ?? '') : (text('namespace') ?? 'default'),
      logLevel,
      workers: positiveInteger('workers', text('workers') ?? '4'),
      probeIntervalMs: duration('probe-interval', text('probe-interval') ?? '30s'),
      requestTimeoutMs: duration('request-timeout', text('request-timeout') ?? '30s'),
      batchSize: positiveInteger('batch-size', text('batch-size') ?? '1000'),
      memberCacheLimitBytes: positiveInteger('member-cache-limit', text('member-cache-limit') ?? '256') * 2 ** 20,
      shutdownGraceMs: duration('shutdown-grace', text('shutdown-grace') ?? '30s'),
      metricsBindAddress: text('metrics-bind-address') ?? ':8080',
      leaderElect: value('leader-elect') === true || value('sharding') === true,
      sharding: value('sharding') === true,
      shardRing: text('shard-ring') ?? 'rowcast',
      leaderElectionNamespace: text('leader-election-namespace') ?? text('namespace') ?? 'default',
      leaderElectionId: text('leader-election-id') ?? 'rowcast-controller',
      fullSyncIntervalMs: duration('full-sync-interval', text('full-sync-interval') ?? '10m'),
      resyncPeriodMs: text('resync-period') === '0' ? 0 : duration('resync-period', text('resync-period') ?? '1h'),
      leaseDurationMs: duration('leader-election-lease-duration', text('leader-election-lease-duration') ?? '15s'),
      renewDeadlineMs: duration('leader-election-renew-deadline', text('leader-election-renew-deadline') ?? '10s'),
      retryPeriodMs: duration('leader-election-retry-period', text('leader-election-retry-period') ?? '2s'),
    };
    // client-go's rule: the gap between the two is the margin by which a leader stops before a standby may start.
    if (options.renewDeadlineMs >= options.leaseDurationMs) throw new Error('--leader-election-renew-deadline must be shorter than --leader-election-lease-duration');
    if (options.retryPeriodMs >= options.renewDeadlineMs) throw new Error('--leader-election-retry-period must be shorter than --leader-election-renew-deadline');
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(options.shardRing)) throw new Error(`--shard-ring: expected a label value of lowercase letters, digits and dashes, got ${JSON.stringify(options.shardRing)}`);
    return { ok: true, options: Object.freeze(options) };
  } catch (error) {
    return { ok: false, help: false, error: error instanceof Error ? error.message : String(error) };
  }
}
