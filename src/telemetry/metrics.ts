import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Results an apply to a member can have; every one is initialised per cluster. */
export const APPLY_RESULTS = ['applied', 'unchanged', 'conflict', 'failed', 'throttled'] as const;
/** A member queue as a scrape reads it. */
export interface MemberQueueState {
  depth: number;
  concurrency: number;
  /** The member's watch cache: objects held, and scopes (kind, namespace) watched, and of those, how many are watching now. */
  cache?: { objects: number; scopes: number; watching: number };
}

export type ApplyResult = (typeof APPLY_RESULTS)[number];

/** Why a DQR's query ran (or did not): first sync or spec change, poll, change detection, forced full sync, retry. */
export const SYNC_TRIGGERS = ['spec', 'poll', 'timestamp', 'notify', 'reconnect', 'full', 'retry', 'confirmation', 'skipped'] as const;
export type SyncTrigger = (typeof SYNC_TRIGGERS)[number];

/** controller-runtime's reconcile results; Rowcast's terminal errors count as error. */
export const RECONCILE_RESULTS = ['success', 'error', 'requeue', 'requeue_after'] as const;

const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const DRIFT_RESULTS = ['healed', 'failed', 'reported'] as const;

/** What one status watch holds: a member (ClusterTarget key), a kind (apiVersion/Kind), its objects. */
export interface StatusWatchCount {
  cluster: string;
  kind: string;
  objects: number;
}

/** The hub's work queues, as the controller label names them: DQR queries, (DQR, member) items, DQR status, ClusterTargets. */
export const WORK_QUEUES = ['databasequeryresource', 'databasequeryresource-member', 'databasequeryresource-status', 'clustertarget'] as const;

/**
 * Every metric Rowcast exports, on a private registry (nothing global, so two
 * controllers in one process, as in tests, never collide). Names people
 * already alert on come from controller-runtime; the rest are rowcast_*.
 * Labels are few and bounded: controller, cluster (the ClusterTarget's
 * namespace/name: names are unique only per namespace), DQR namespace/name — never
 * a row key or an object name.
 */
export class Metrics {
  readonly registry = new Registry();
  /** Read at scrape time: queue depths live in the queues, not in counters kept beside them. */
  private sources: { workqueues: () => Record<string, number>; members: () => Record<string, MemberQueueState>; statusWatches: () => readonly StatusWatchCount[] } = {
    workqueues: () => ({}),
    members: () => ({}),
    statusWatches: () => [],
  };
  readonly reconcileTotal = new Counter({ name: 'controller_runtime_reconcile_total', help: 'Reconciliations per controller and result.', labelNames: ['controller', 'result'], registers: [this.registry] });
  readonly reconcileTime = new Histogram({ name: 'controller_runtime_reconcile_time_seconds', help: 'Time per reconciliation.', labelNames: ['controller'], buckets: latencyBuckets, registers: [this.registry] });
  readonly workqueueDepth: Gauge = new Gauge({
    name: 'workqueue_depth',
    help: 'Keys waiting in the work queue.',
    labelNames: ['name'],
    registers: [this.registry],
    collect: () => {
      for (const [name, depth] of Object.entries(this.sources.workqueues())) this.workqueueDepth.labels(name).set(depth);
    },
  });
  readonly workqueueQueueDuration = new Histogram({ name: 'workqueue_queue_duration_seconds', help: 'How long a key waits in the queue before it runs.', labelNames: ['name'], buckets: latencyBuckets, registers: [this.registry] });
  readonly workqueueRetries = new Counter({ name: 'workqueue_retries_total', help: 'Keys put back after a failure.', labelNames: ['name'], registers: [this.registry] });
  readonly restClientRequests = new Counter({ name: 'rest_client_requests_total', help: 'Requests to Kubernetes API servers by host, method and status code.', labelNames: ['host', 'method', 'code'], registers: [this.registry] });
  readonly leaderStatus = new Gauge({ name: 'leader_election_master_status', help: '1 while this replica holds the leader Lease.', labelNames: ['name'], registers: [this.registry] });
  readonly applies = new Counter({ name: 'rowcast_applies_total', help: 'Objects per member cluster and result of the last sync.', labelNames: ['cluster', 'result'], registers: [this.registry] });
  readonly prunes = new Counter({ name: 'rowcast_prunes_total', help: 'Objects deleted because no row wants them.', labelNames: ['cluster'], registers: [this.registry] });
  readonly prunesBlocked = new Counter({ name: 'rowcast_prunes_blocked_total', help: 'Syncs that stopped before pruning because of spec.pruneLimit.', labelNames: ['namespace', 'dqr'], registers: [this.registry] });
  readonly memberReachable = new Gauge({ name: 'rowcast_member_reachable', help: '1 when the member answered its last probe.', labelNames: ['cluster'], registers: [this.registry] });
  readonly memberQueueDepth: Gauge = new Gauge({
    name: 'rowcast_member_queue_depth',
    help: 'Calls waiting or running in the member queue.',
    labelNames: ['cluster'],
    registers: [this.registry],
    collect: () => {
      for (const [cluster, queue] of Object.entries(this.sources.members())) this.memberQueueDepth.labels(cluster).set(queue.depth);
    },
  });
  readonly memberConcurrency: Gauge = new Gauge({
    name: 'rowcast_member_concurrency',
    help: 'Calls a member queue sends at once: spec.rateLimit.concurrency, lowered while the member answers 429.',
    labelNames: ['cluster'],
    registers: [this.registry],
    collect: () => {
      for (const [cluster, queue] of Object.entries(this.sources.members())) this.memberConcurrency.labels(cluster).set(queue.concurrency);
    },
  });
  readonly memberCacheObjects: Gauge = new Gauge({
    name: 'rowcast_member_cache_objects',
    help: "Objects (metadata only) the member's watch cache holds: what Rowcast manages there, of every DQR.",
    labelNames: ['cluster'],
    registers: [this.registry],
    collect: () => {
      for (const [cluster, member] of Object.entries(this.sources.members())) if (member.cache !== undefined) this.memberCacheObjects.labels(cluster).set(member.cache.objects);
    },
  });
  readonly statusWatchObjects: Gauge = new Gauge({
    name: 'rowcast_status_watch_objects',
    help: 'Objects the status watches hold in full, per member and kind: only kinds that a DQR with status write-back or a ledger manages there (and names in statusUpdate.kinds, when it names any).',
    labelNames: ['cluster', 'kind'],
    registers: [this.registry],
    collect: () => {
      this.statusWatchObjects.reset();
      for (const { cluster, kind, objects } of this.sources.statusWatches()) this.statusWatchObjects.labels(cluster, kind).inc(objects);
    },
  });
  readonly memberCacheScopes: Gauge = new Gauge({
    name: 'rowcast_member_cache_scopes',
    help: "Informers of the member's watch cache (one per kind and namespace in use), by state: watching, or not (listing, or failed and restarting; syncs then list live).",
    labelNames: ['cluster', 'state'],
    registers: [this.registry],
    collect: () => {
      for (const [cluster, member] of Object.entries(this.sources.members())) {
        if (member.cache === undefined) continue;
        this.memberCacheScopes.labels(cluster, 'watching').set(member.cache.watching);
        this.memberCacheScopes.labels(cluster, 'not-watching').set(member.cache.scopes - member.cache.watching);
      }
    },
  });
  readonly driftDetected = new Counter({
    name: 'rowcast_drift_detected_total',
    help: "Changes to managed objects that Rowcast's own applies did not make, seen by the member's watch cache: modified (another manager took rendered fields), deleted, unmarked.",
    labelNames: ['cluster', 'reason'],
    registers: [this.registry],
  });
  readonly driftCorrections = new Counter({
    name: 'rowcast_drift_corrections_total',
    help: 'What Rowcast did about drift on managed objects, by its DQRs\' driftPolicy: healed (applied again), failed (the heal failed; retried), reported (driftPolicy Report).',
    labelNames: ['cluster', 'result'],
    registers: [this.registry],
  });
  readonly memberQueueWait = new Histogram({ name: 'rowcast_member_queue_wait_seconds', help: 'How long a call waited in its member queue.', labelNames: ['cluster'], buckets: latencyBuckets, registers: [this.registry] });
  readonly memberThrottled = new Counter({ name: 'rowcast_member_throttled_total', help: 'HTTP 429 answers from a member; each paused its queue for the Retry-After, and the call was sent again.', labelNames: ['cluster'], registers: [this.registry] });
  readonly dbQueryDuration = new Histogram({ name: 'rowcast_db_query_duration_seconds', help: 'Time to read, render and hand over every row of a DQR query.', labelNames: ['namespace', 'dqr'], buckets: latencyBuckets, registers: [this.registry] });
  readonly dqrRows = new Gauge({ name: 'rowcast_dqr_rows', help: 'Rows the last successful query returned.', labelNames: ['namespace', 'dqr'], registers: [this.registry] });
  readonly dqrReady = new Gauge({ name: 'rowcast_dqr_ready', help: '1 when the DQR is Ready.', labelNames: ['namespace', 'dqr'], registers: [this.registry] });
  readonly rowFailures = new Gauge({ name: 'rowcast_dqr_failing_rows', help: 'Rows that failed in the last sync, per DQR.', labelNames: ['namespace', 'dqr'], registers: [this.registry] });
  readonly syncTriggers = new Counter({ name: 'rowcast_sync_triggers_total', help: 'What fired each DQR sync; skipped: change detection saw no change.', labelNames: ['trigger'], registers: [this.registry] });
  readonly shardDqrs = new Gauge({ name: 'rowcast_shard_dqrs', help: 'DQRs assigned to each live shard (replica), as the sharder (the leader) sees them; absent on other replicas.', labelNames: ['shard'], registers: [this.registry] });
  readonly dqrsUnassigned = new Gauge({ name: 'rowcast_dqrs_unassigned', help: 'DQRs without a live shard (no shard label, or a shard that is gone), as the sharder sees them; 0 on other replicas.', registers: [this.registry] });
  readonly shardMoves = new Counter({
    name: 'rowcast_shard_moves_total',
    help: 'DQRs the sharder moved: rebalance (a drain asked of a live shard), shard-gone (assigned again after its shard stopped or was fenced).',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly writeBacks = new Counter({ name: 'rowcast_writebacks_total', help: 'Status write-backs to the database by result.', labelNames: ['result'], registers: [this.registry] });
  readonly syncFreshness = new Histogram({
    name: 'rowcast_sync_freshness_seconds',
    help: 'From the database change (NOTIFY receipt; in timestamp mode the max() value; else the poll that saw it) to its objects applied on a member.',
    labelNames: ['cluster'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });

  constructor(controllers: readonly string[] = WORK_QUEUES) {
    for (const controller of controllers) {
      for (const result of RECONCILE_RESULTS) this.reconcileTotal.labels(controller, result).inc(0);
      this.reconcileTime.zero({ controller });
      this.workqueueDepth.labels(controller).set(0);
      this.workqueueQueueDuration.zero({ name: controller });
      this.workqueueRetries.labels(controller).inc(0);
    }
    this.leaderStatus.labels('rowcast').set(0);
    this.dqrsUnassigned.set(0);
    for (const reason of ['rebalance', 'shard-gone']) this.shardMoves.labels(reason).inc(0);
    for (const trigger of SYNC_TRIGGERS) this.syncTriggers.labels(trigger).inc(0);
    for (const result of ['written', 'unchanged', 'failed']) this.writeBacks.labels(result).inc(0);
  }

  /**
   * The process's own series (process_resident_memory_bytes,
   * nodejs_heap_size_used_bytes, GC time…), which memory alerts and
   * bench/memory.ts read. Only for the controller process: a test that runs
   * several controllers in one process would count one process several times.
   */
  collectProcessMetrics(): void {
    collectDefaultMetrics({ register: this.registry });
  }

  readDepthsFrom(workqueues: () => Record<string, number>, members: () => Record<string, MemberQueueState>, statusWatches: () => readonly StatusWatchCount[] = () => []): void {
    this.sources = { workqueues, members, statusWatches };
  }

  /** A member appears: its series exist from now on, at zero, so rate() and absent() behave. */
  initialiseCluster(cluster: string): void {
    for (const result of APPLY_RESULTS) this.applies.labels(cluster, result).inc(0);
    this.prunes.labels(cluster).inc(0);
    for (const result of DRIFT_RESULTS) this.driftCorrections.labels(cluster, result).inc(0);
    this.memberReachable.labels(cluster);
    this.memberQueueDepth.labels(cluster).set(0);
    this.memberQueueWait.zero({ cluster });
    this.memberThrottled.labels(cluster).inc(0);
    this.syncFreshness.zero({ cluster });
  }

  /** A member goes: its series go with it. */
  forgetCluster(cluster: string): void {
    for (const result of APPLY_RESULTS) this.applies.remove(cluster, result);
    for (const metric of [this.prunes, this.memberThrottled]) metric.remove(cluster);
    for (const result of DRIFT_RESULTS) this.driftCorrections.remove(cluster, result);
    for (const metric of [this.memberReachable, this.memberQueueDepth, this.memberConcurrency, this.memberCacheObjects]) metric.remove(cluster);
    for (const state of ['watching', 'not-watching']) this.memberCacheScopes.remove(cluster, state);
    for (const reason of ['modified', 'deleted', 'unmarked']) this.driftDetected.remove(cluster, reason);
    for (const metric of [this.memberQueueWait, this.syncFreshness]) metric.remove(cluster);
  }

  forgetDqr(namespace: string, dqr: string): void {
    for (const metric of [this.dqrRows, this.dqrReady, this.rowFailures]) metric.remove(namespace, dqr);
    this.dbQueryDuration.remove(namespace, dqr);
    this.prunesBlocked.remove(namespace, dqr);
  }
}
