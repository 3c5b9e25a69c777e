import { setTimeout as sleep } from 'node:timers/promises';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE, GROUP, SHARDING_LABELS, WATCH_LABEL } from '../api/index.ts';
import type { ControllerOptions } from '../config/index.ts';
import { MemberApi, MemberKubeConfig, MemberRegistry } from '../clusters/index.ts';
import { NotifyHub, PoolRegistry, WriteBackQueue } from '../db/index.ts';
import { TemplateCache } from '../render/index.ts';
import { FencedError, SupervisedInformer, WorkQueue, describeApiError, forgetSecretValues, unfenced, type Fence, type InformerEvent, type ReconcileOutcome } from '../runtime/index.ts';
import { HubWriter } from '../status/index.ts';
import type { Logger, Metrics, SecretScrubber } from '../telemetry/index.ts';
import { enqueueAllDqrs, reconcileClusterTarget } from './cluster-target-reconciler.ts';
import { keyOf, splitKey, type HubContext, type HubObject, type ShardMembership } from './context.ts';
import { reconcileDqr } from './dqr-reconciler.ts';
import { handleDrift } from './drift.ts';
import { reconcileMemberItem, reportDqrProgress } from './member-work.ts';
import { StatusWatches } from './status-watch.ts';

export interface HubControllerDeps {
  options: ControllerOptions;
  logger: Logger;
  scrubber: SecretScrubber;
  metrics: Metrics;
  /** Hub kubeconfig text, or 'in-cluster'. */
  hubKubeconfig: string;
  /** Sent with every request to the hub and the members: the replica's identity, for audit logs. */
  userAgent?: string;
  /** Asked before every write for a DQR; absent: this process is the only writer. */
  fence?: Fence;
  /** With sharding: this replica's shard identity (it syncs only the DQRs the sharder labelled with it), and whether it is the sharder now. */
  shard?: { identity: string; leads: () => boolean; ring: string; leaseNamespace: string };
}

/**
 * (DQR, member) items running at once. They wait on members, not on this
 * process: the bound is only there so a fleet of frozen members cannot hold
 * unbounded work; each member's own queue paces its calls.
 */
const MEMBER_ITEMS_AT_ONCE = 256;

/** Which DQRs and ClusterTargets read a Secret: a changed Secret requeues exactly those. */
function secretUsers(ctx: HubContext, namespace: string, name: string): { dqrs: string[]; clusterTargets: string[] } {
  const refers = (object: HubObject, pick: (spec: Record<string, unknown>) => unknown): boolean =>
    object.metadata?.namespace === namespace && pick((object.spec ?? {}) as Record<string, unknown>) === name;
  return {
    dqrs: ctx.informers.dqrs
      .list(namespace)
      .filter((o) => refers(o, (s) => ((s['database'] as Record<string, unknown> | undefined)?.['connectionSecretRef'] as { name?: string } | undefined)?.name))
      .map(keyOf),
    clusterTargets: ctx.informers.clusterTargets
      .list(namespace)
      .filter((o) => refers(o, (s) => (s['kubeconfigSecretRef'] as { name?: string } | undefined)?.name))
      .map(keyOf),
  };
}

/** Shard Leases held by their own replica: taken over or released ones are not shards. Never less than one (this replica). */
function liveShards(leases: readonly HubObject[]): number {
  return Math.max(1, leases.filter((l) => (l.spec as { holderIdentity?: string } | undefined)?.holderIdentity === l.metadata?.name).length);
}

/**
 * With sharding, a write for a DQR also needs the DQR to be this shard's: the
 * informer (label-selected on the shard) holds it with this shard's label,
 * and this replica has not handed it over. The Lease check comes first.
 */
function shardFence(lease: Fence, shard: ShardMembership | undefined, dqr: (key: string) => HubObject | undefined): Fence {
  if (shard === undefined) return lease;
  return (key) => {
    lease(key);
    if (shard.relinquished.has(key) || dqr(key)?.metadata?.labels?.[SHARDING_LABELS.shard] !== shard.identity) {
      throw new FencedError(`${key} is not assigned to shard ${shard.identity}: nothing more is written for it`);
    }
  };
}

/**
 * The hub controller: informers on DQRs, ClusterTargets and Secrets feed two
 * keyed queues; handlers only compute keys (Secret → the objects that read it).
 * Start order: informers synced, then queues; stop order is the reverse, and
 * in-flight syncs finish before pools and member clients close.
 */
export class HubController {
  private readonly deps: HubControllerDeps;
  private ctx: HubContext | undefined;
  private stopped = false;
  private readonly stopping = new AbortController();
  private missingCrds: string | undefined;

  constructor(deps: HubControllerDeps) {
    this.deps = deps;
  }

  get ready(): boolean {
    const i = this.ctx?.informers;
    return i !== undefined && i.dqrs.synced && i.clusterTargets.synced && i.secrets.synced;
  }

  /** Why the controller is not ready, for /readyz; undefined when it is. */
  get notReadyReason(): string | undefined {
    if (this.ready) return undefined;
    return this.missingCrds ?? 'caches not synced';
  }

  async start(): Promise<void> {
    const { options, logger, scrubber, metrics } = this.deps;
    const onResponse = (host: string, method: string, code: string): void => {
      metrics.restClientRequests.labels(host, method, code).inc();
    };
    const hubConfig = new MemberKubeConfig(this.deps.hubKubeconfig, { requestTimeoutMs: options.requestTimeoutMs, ...(this.deps.userAgent === undefined ? {} : { userAgent: this.deps.userAgent }) });
    const hub = new MemberApi(hubConfig, onResponse);
    const hubKubeconfig = this.deps.hubKubeconfig;
    const hubId = options.hubId ?? (await hub.request<{ metadata: { uid: string } }>('GET', '/api/v1/namespaces/kube-system')).metadata.uid;
    await this.waitForCrds(hub);
    // Stopped (leadership lost, or a signal) while asking: nothing may start now.
    if (this.hasStopped()) {
      await hub.close();
      return;
    }
    const scope = options.namespace === undefined ? '' : `/namespaces/${options.namespace}`;
    const listPath = (group: string, plural: string): string => (group === '' ? `/api/v1${scope}/${plural}` : `/apis/${group}${scope}/${plural}`);
    const informer = (name: string, path: string, onEvent: (event: InformerEvent, object: HubObject) => void, labelSelector?: string): SupervisedInformer<HubObject> =>
      new SupervisedInformer<HubObject>({
        name,
        path,
        watch: (watchPath, query, signal) => hub.watch(watchPath, query, signal),
        ...(labelSelector === undefined ? {} : { labelSelector }),
        list: () => hub.listCollection<HubObject>(path, labelSelector),
        logger,
        onEvent,
      });
    const measured = (name: string) => ({
      name,
      logger,
      onReconciled: (_key: string, outcome: ReconcileOutcome, durationMs: number) => {
        const result = outcome === 'terminal' ? 'error' : outcome;
        metrics.reconcileTotal.labels(name, result).inc();
        metrics.reconcileTime.labels(name).observe(durationMs / 1000);
        if (outcome === 'error') metrics.workqueueRetries.labels(name).inc();
      },
      onDequeued: (_key: string, waitMs: number) => metrics.workqueueQueueDuration.labels(name).observe(waitMs / 1000),
    });
    const dqrQueue = new WorkQueue({
      ...measured('databasequeryresource'),
      concurrency: options.workers,
      reconcile: (key, signal) => reconcileDqr(this.context(), key, signal),
    });
    // Each (DQR, member) on its own: a stalled member holds a slot of its own, never another member's.
    const memberQueue = new WorkQueue({
      ...measured('databasequeryresource-member'),
      concurrency: MEMBER_ITEMS_AT_ONCE,
      reconcile: (key, signal) => reconcileMemberItem(this.context(), key, signal),
    });
    const statusQueue = new WorkQueue({
      ...measured('databasequeryresource-status'),
      concurrency: 2,
      reconcile: (key) => reportDqrProgress(this.context(), key),
    });
    const ctQueue = new WorkQueue({
      ...measured('clustertarget'),
      concurrency: 4,
      reconcile: (key, signal) => reconcileClusterTarget(this.context(), key, signal),
    });
    const shard: ShardMembership | undefined =
      this.deps.shard === undefined
        ? undefined
        : {
            identity: this.deps.shard.identity,
            leads: this.deps.shard.leads,
            relinquished: new Set(),
            ringSize: () => liveShards(this.ctx?.informers.shardLeases?.list() ?? []),
          };
    let ringSize = 0;
    const ctx: HubContext = {
      options,
      logger,
      scrubber,
      metrics,
      hub,
      hubKubeconfig,
      hubId,
      fence: shardFence(this.deps.fence ?? unfenced, shard, (key) => {
        const { namespace, name } = splitKey(key);
        return this.ctx?.informers.dqrs.get(name, namespace);
      }),
      shard,
      writer: new HubWriter(hub, scrubber, { onEventError: (error) => logger.warn('event not recorded', { reason: describeApiError(error).message }) }),
      members: new MemberRegistry({
        policy: { allowExecAuth: options.allowExecAuth, allowFilePaths: options.allowKubeconfigFiles, allowInsecure: options.allowInsecureKubeconfigs },
        scrubber,
        requestTimeoutMs: options.requestTimeoutMs,
        memberCacheLimitBytes: options.memberCacheLimitBytes,
        ...(this.deps.userAgent === undefined ? {} : { userAgent: this.deps.userAgent }),
        onQueueWait: (cluster, ms) => metrics.memberQueueWait.labels(cluster).observe(ms / 1000),
        onThrottled: (cluster) => {
          metrics.memberThrottled.labels(cluster).inc();
          metrics.applies.labels(cluster, 'throttled').inc();
        },
        onResponse,
        watchCache: {
          logger,
          // Detected here; what is done about it is the DQR's driftPolicy, on that member's work item.
          onDrift: (report) => {
            metrics.driftDetected.labels(report.cluster, report.reason).inc();
            logger.info('drift detected', { cluster: report.cluster, kind: report.kind, namespace: report.namespace, name: report.name, reason: report.reason, managers: report.managers });
            handleDrift(this.context(), report);
          },
        },
      }),
      pools: new PoolRegistry({ logger }),
      notify: new NotifyHub({ logger }),
      writeBacks: new WriteBackQueue({ logger }),
      statusWatches: {
        ensure: () => Promise.resolve(),
        forgetMember: () => Promise.resolve(),
        stopAll: () => Promise.resolve(),
        keyColumns: new Map(),
        rows: new Map(),
        failures: new Map(),
        counts: () => [],
        recordKnown: () => undefined,
        forgetDqr: () => undefined,
      },
      changes: new Map(),
      managed: new Map(),
      ledgers: new Set(),
      loggedFailures: new Map(),
      pendingTriggers: new Map(),
      subscriptions: new Map(),
      templates: new TemplateCache(),
      leases: new Map(),
      informers: {
        dqrs: informer(
          'databasequeryresources',
          listPath(API_VERSION, DATABASE_QUERY_RESOURCE.plural),
          (event, object) => {
            // Assigned again (or gone): a hand-over from before no longer holds.
            if (event !== 'update') shard?.relinquished.delete(keyOf(object));
            // Status patches come back as updates; only spec, metadata or deletion changes need a sync.
            if (!this.changedBeyondStatus('dqr', event, object)) return;
            dqrQueue.add(keyOf(object));
          },
          // A shard holds only its own DQRs: memory and work scale with its share.
          shard === undefined ? undefined : `${SHARDING_LABELS.shard}=${shard.identity}`,
        ),
        clusterTargets: informer('clustertargets', listPath(API_VERSION, CLUSTER_TARGET.plural), (event, object) => {
          if (!this.changedBeyondStatus('clustertarget', event, object)) return;
          ctQueue.add(keyOf(object));
        }),
        // Only Secrets labelled for Rowcast: the hub never holds every Secret of the cluster in memory.
        secrets: informer(
          'secrets',
          listPath('', 'secrets'),
          (event, object) => {
            forgetSecretValues(object, event === 'delete', scrubber);
            const users = secretUsers(this.context(), object.metadata?.namespace ?? '', object.metadata?.name ?? '');
            for (const key of users.clusterTargets) ctQueue.add(key);
            for (const key of users.dqrs) dqrQueue.add(key);
          },
          `${WATCH_LABEL}=true`,
        ),
        // Sharded: the live shards of the ring, among which each member's rate limit is divided.
        ...(this.deps.shard === undefined
          ? {}
          : {
              shardLeases: new SupervisedInformer<HubObject>({
                name: 'shard-ring',
                watch: (watchPath, query, signal) => hub.watch(watchPath, query, signal),
                path: `/apis/coordination.k8s.io/v1/namespaces/${this.deps.shard.leaseNamespace}/leases`,
                labelSelector: `${SHARDING_LABELS.ring}=${this.deps.shard.ring}`,
                list: () => hub.listCollection<HubObject>(`/apis/coordination.k8s.io/v1/namespaces/${this.deps.shard?.leaseNamespace ?? ''}/leases`, `${SHARDING_LABELS.ring}=${this.deps.shard?.ring ?? ''}`),
                logger,
                onEvent: () => {
                  const now = shard?.ringSize() ?? 1;
                  if (now === ringSize) return;
                  ringSize = now;
                  for (const target of this.ctx?.informers.clusterTargets.list() ?? []) ctQueue.add(keyOf(target));
                },
              }),
            }),
      },
      work: new Map(),
      queues: { dqrs: dqrQueue, members: memberQueue, dqrStatus: statusQueue, clusterTargets: ctQueue },
    };
    ctx.statusWatches = new StatusWatches(ctx);
    this.ctx = ctx;
    metrics.readDepthsFrom(
      () => ({ databasequeryresource: dqrQueue.depth, 'databasequeryresource-member': memberQueue.depth, 'databasequeryresource-status': statusQueue.depth, clustertarget: ctQueue.depth }),
      () => Object.fromEntries(ctx.members.list().map((m) => [m.key, { depth: m.queue.depth, concurrency: m.queue.concurrency, ...(m.cache === undefined ? {} : { cache: m.cache.stats }) }])),
      () => ctx.statusWatches.counts(),
    );
    logger.info('starting hub controller', { hubId, namespace: options.namespace ?? '(all)', workers: options.workers });
    const informers = Object.values(ctx.informers);
    for (const i of informers) i.start();
    await Promise.all(informers.map((i) => i.waitForSync()));
    // ClusterTargets first: DQR syncs need their members.
    ctQueue.start();
    await this.waitForClusterTargets(ctx);
    if (this.hasStopped()) return;
    memberQueue.start();
    statusQueue.start();
    dqrQueue.start();
    enqueueAllDqrs(ctx);
    logger.info('hub controller started', { dqrs: ctx.informers.dqrs.list().length, clusterTargets: ctx.informers.clusterTargets.list().length });
  }

  /** `graceMs`: how long in-flight syncs may go on before their signal aborts; 0 when leadership is lost. */
  async stop(graceMs = this.deps.options.shutdownGraceMs): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    const ctx = this.ctx;
    if (ctx === undefined) return;
    await Promise.all(Object.values(ctx.informers).map((i) => i.stop()));
    await ctx.statusWatches.stopAll();
    // In-flight syncs finish (applies and prunes are not left half done) unless they take too long.
    await Promise.all([ctx.queues.dqrs.shutdown(graceMs), ctx.queues.clusterTargets.shutdown(graceMs), ctx.queues.members.shutdown(graceMs)]);
    await ctx.queues.dqrStatus.shutdown(graceMs);
    await ctx.members.closeAll();
    await ctx.notify.closeAll();
    await ctx.writeBacks.closeAll();
    await ctx.pools.closeAll();
    await ctx.hub.close();
    this.ctx = undefined;
  }

  /** Asked after each await of start(): stop() may have run meanwhile (leadership lost during start-up). */
  private hasStopped(): boolean {
    return this.stopped;
  }

  private context(): HubContext {
    if (this.ctx === undefined) throw new Error('hub controller is not started');
    return this.ctx;
  }

  /**
   * Generation moves with spec; annotations, labels, finalizers and deletion
   * are metadata changes that count too. Adds and deletes always count; a
   * deleted object's fingerprint goes with it.
   */
  private readonly seen = new Map<string, string>();
  private changedBeyondStatus(kind: string, event: InformerEvent, object: HubObject): boolean {
    const key = `${kind}/${keyOf(object)}`;
    if (event === 'delete') {
      this.seen.delete(key);
      return true;
    }
    const fingerprint = JSON.stringify([
      object.metadata?.generation,
      object.metadata?.labels,
      object.metadata?.annotations,
      object.metadata?.deletionTimestamp,
      object.metadata?.finalizers,
    ]);
    const changed = this.seen.get(key) !== fingerprint;
    this.seen.set(key, fingerprint);
    return changed || event === 'add';
  }

  /**
   * Informers on resources the hub does not serve fail and retry forever, one
   * warning each time, and never sync: without the CRDs the controller says so
   * once and waits for them instead.
   */
  private async waitForCrds(hub: MemberApi): Promise<void> {
    const wanted = [DATABASE_QUERY_RESOURCE.plural, CLUSTER_TARGET.plural];
    let attempt = 0;
    while (!this.hasStopped()) {
      let served: string[];
      try {
        served = (await hub.request<{ resources?: { name: string }[] }>('GET', `/apis/${API_VERSION}`)).resources?.map((r) => r.name) ?? [];
      } catch (error) {
        // Anything but "not served" is for the informers to report and retry.
        if ((error as { code?: number }).code !== 404) return;
        served = [];
      }
      const missing = wanted.filter((plural) => !served.includes(plural));
      if (missing.length === 0) {
        if (this.missingCrds !== undefined) this.deps.logger.info('the Rowcast CRDs are installed now; starting');
        this.missingCrds = undefined;
        return;
      }
      if (this.missingCrds === undefined) {
        this.missingCrds = `the hub does not serve ${missing.map((p) => `${p}.${GROUP}`).join(' and ')}: the Rowcast CRDs are not installed (kubectl apply --server-side -f crds/)`;
        this.deps.logger.error(`${this.missingCrds}; waiting for them`);
      }
      attempt++;
      await sleep(Math.min(1000 * 2 ** Math.min(attempt, 5), 30_000), undefined, { signal: this.stopping.signal }).catch(() => undefined);
    }
  }

  /** Give every ClusterTarget one reconcile before DQRs start, so the first syncs find their members. */
  private async waitForClusterTargets(ctx: HubContext): Promise<void> {
    for (const target of ctx.informers.clusterTargets.list()) ctx.queues.clusterTargets.add(keyOf(target));
    const deadline = Date.now() + 15_000;
    while ((ctx.queues.clusterTargets.depth > 0 || ctx.queues.clusterTargets.inFlight > 0) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
