import { API_VERSION, DATABASE_QUERY_RESOURCE, SHARDING_LABELS } from '../api/index.ts';
import type { MemberApi } from '../clusters/index.ts';
import { SupervisedInformer, describeApiError, type Lease } from '../runtime/index.ts';
import type { Logger, Metrics } from '../telemetry/index.ts';
import { keyOf, splitKey, type HubObject } from './context.ts';
import { planAssignments, type AssignedDqr, type ShardAction } from './shard-assignment.ts';

/** The holder the sharder writes into a shard Lease it takes over: no replica has this identity. */
export const SHARDER_HOLDER = 'rowcast-sharder';
/** A dead shard's Lease is deleted this long after the sharder saw it dead: late renewals of a stale replica find it taken, not free. */
const DEAD_LEASE_KEPT_MS = 60_000;
/** Label patches in flight at once. */
const PATCHES_AT_ONCE = 20;

export interface SharderOptions {
  hub: MemberApi;
  /** Where the shard Leases live (the controller's namespace). */
  leaseNamespace: string;
  ring: string;
  /** Watch DQRs in this namespace only; undefined: all. */
  namespace: string | undefined;
  logger: Logger;
  metrics: Metrics;
  /** Asked before every write: the sharder writes only while this replica leads. */
  fence: () => void;
  /** How often assignments are checked even without an event; also the granularity of Lease expiry. */
  resyncMs: number;
}

interface LeaseSeen {
  record: string;
  /** performance.now() when this replica saw the Lease's spec change: expiry is timed from here, by the sharder's own clock. */
  at: number;
  deadSince?: number;
}

/**
 * The sharder, run by the elected leader only: watches the ring's shard
 * Leases and every DQR's labels, takes over the Lease of a shard that stopped
 * renewing (so it cannot write again), and keeps each DQR's shard label as
 * planAssignments says. Moves from a live shard go through its owner (the
 * drain label); moves from a dead one happen at once.
 */
export class Sharder {
  private readonly options: SharderOptions;
  private readonly leases: SupervisedInformer<Lease & HubObject>;
  private readonly dqrs: SupervisedInformer<HubObject>;
  private readonly seen = new Map<string, LeaseSeen>();
  private readonly stopped = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /**
   * Labels this sharder patched that its informer has not shown yet, by DQR
   * key, with the resourceVersion the patch was made from: a pass that ran on
   * the older copy would place the DQR again and count loads without it.
   */
  private readonly written = new Map<string, { from: string | undefined; labels: Record<string, string | undefined> }>();

  constructor(options: SharderOptions) {
    this.options = options;
    const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${options.leaseNamespace}/leases`;
    const ringSelector = `${SHARDING_LABELS.ring}=${options.ring}`;
    this.leases = new SupervisedInformer<Lease & HubObject>({
      name: 'shard-leases',
      path: leasePath,
      watch: (path, query, signal) => options.hub.watch(path, query, signal),
      labelSelector: ringSelector,
      list: () => options.hub.listCollection<Lease & HubObject>(leasePath, ringSelector),
      logger: options.logger,
      onEvent: () => this.poke(),
    });
    const dqrPath = `/apis/${API_VERSION}${options.namespace === undefined ? '' : `/namespaces/${options.namespace}`}/${DATABASE_QUERY_RESOURCE.plural}`;
    this.dqrs = new SupervisedInformer<HubObject>({
      name: 'sharder-databasequeryresources',
      path: dqrPath,
      watch: (path, query, signal) => options.hub.watch(path, query, signal),
      list: () => options.hub.listCollection<HubObject>(dqrPath),
      logger: options.logger,
      onEvent: () => this.poke(),
    });
  }

  async start(): Promise<void> {
    this.leases.start();
    this.dqrs.start();
    await Promise.all([this.leases.waitForSync(), this.dqrs.waitForSync()]);
    if (this.stopped.signal.aborted) return;
    this.options.logger.info('sharder started', { ring: this.options.ring, shards: this.leases.list().length, dqrs: this.dqrs.list().length });
    this.timer = setInterval(() => this.poke(), this.options.resyncMs);
    this.poke();
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    clearInterval(this.timer);
    await Promise.all([this.leases.stop(), this.dqrs.stop()]);
    await this.running;
  }

  /** One pass at a time; events during a pass ask for one more. */
  private poke(): void {
    if (this.stopped.signal.aborted || !this.leases.synced || !this.dqrs.synced) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.pass().catch((error: unknown) => this.options.logger.warn('sharding pass failed; retried on the next event or resync', { reason: describeApiError(error).message }));
      } while (this.wantsAgain() && !this.stopped.signal.aborted);
    })().finally(() => {
      this.running = undefined;
    });
  }

  /** Read through a call: the pass just awaited may have set it. */
  private wantsAgain(): boolean {
    return this.again;
  }

  private async pass(): Promise<void> {
    const now = performance.now();
    const ready: string[] = [];
    const fencing = new Set<string>();
    const leases = this.leases.list();
    for (const key of this.seen.keys()) if (!leases.some((l) => l.metadata.name === key)) this.seen.delete(key);
    for (const lease of leases) {
      const name = lease.metadata.name;
      const record = JSON.stringify(lease.spec);
      let seen = this.seen.get(name);
      if (seen?.record !== record) {
        seen = { record, at: now };
        this.seen.set(name, seen);
      }
      const holder = lease.spec.holderIdentity ?? '';
      if (holder === name) {
        if (now < seen.at + (lease.spec.leaseDurationSeconds ?? 0) * 1000) ready.push(name);
        else fencing.add(name);
        continue;
      }
      // Released by its replica on a clean stop, or taken over: dead. Its Lease goes once a replica cannot be mid-renewal any more.
      seen.deadSince ??= now;
      if (now - seen.deadSince > DEAD_LEASE_KEPT_MS) await this.deleteLease(lease);
    }
    for (const name of fencing) await this.takeOver(leases.find((l) => l.metadata.name === name));

    const objects = this.dqrs.list();
    const present = new Set(objects.map(keyOf));
    for (const key of this.written.keys()) if (!present.has(key)) this.written.delete(key);
    const dqrs: AssignedDqr[] = objects.map((o) => {
      const key = keyOf(o);
      const mine = this.written.get(key);
      if (mine !== undefined && mine.from !== o.metadata?.resourceVersion) this.written.delete(key);
      const labels = mine !== undefined && mine.from === o.metadata?.resourceVersion ? { ...o.metadata?.labels, ...mine.labels } : (o.metadata?.labels ?? {});
      return { key, shard: labels[SHARDING_LABELS.shard], draining: labels[SHARDING_LABELS.drain] !== undefined };
    });
    this.report(dqrs, ready, fencing);
    // Each action is one PATCH of its own DQR: sent some at a time, so a dead shard's hundred DQRs move in a few round trips, not a hundred.
    const actions = planAssignments(dqrs, ready, fencing);
    for (let i = 0; i < actions.length; i += PATCHES_AT_ONCE) await Promise.all(actions.slice(i, i + PATCHES_AT_ONCE).map((action) => this.carryOut(action)));
  }

  private async carryOut(action: ShardAction): Promise<void> {
    const labels = action.kind === 'assign' ? { [SHARDING_LABELS.shard]: action.shard, [SHARDING_LABELS.drain]: null } : { [SHARDING_LABELS.drain]: 'true' };
    const { namespace, name } = splitKey(action.key);
    const from = this.dqrs.get(name, namespace)?.metadata?.resourceVersion;
    try {
      // The resourceVersion the plan saw: an owner's hand-over meanwhile makes this a 409, and the next pass plans again.
      await this.options.hub.request('PATCH', `/apis/${API_VERSION}/namespaces/${namespace}/${DATABASE_QUERY_RESOURCE.plural}/${name}`, {
        body: { metadata: { labels, resourceVersion: from } },
        contentType: 'application/merge-patch+json',
        beforeSend: this.options.fence,
      });
    } catch (error) {
      this.options.logger.info('shard assignment not recorded; planned again', { dqr: action.key, reason: describeApiError(error).message });
      return;
    }
    this.written.set(action.key, { from, labels: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, v ?? undefined])) });
    if (action.kind === 'drain') {
      this.options.metrics.shardMoves.labels('rebalance').inc();
      this.options.logger.info('asked a shard to hand a DQR over', { dqr: action.key, from: action.from, to: action.to });
    } else {
      if (action.from !== undefined) this.options.metrics.shardMoves.labels('shard-gone').inc();
      this.options.logger.info('assigned a DQR', { dqr: action.key, shard: action.shard, ...(action.from === undefined ? {} : { from: action.from }) });
    }
  }

  /**
   * A shard that stopped renewing has stopped writing by its own clock (its
   * renew deadline is shorter than the lease duration this side waited); the
   * sharder makes that final by holding its Lease, so the replica can never
   * renew it and its DQRs can go elsewhere.
   */
  private async takeOver(lease: (Lease & HubObject) | undefined): Promise<void> {
    if (lease === undefined) return;
    const { name, namespace } = lease.metadata;
    try {
      await this.options.hub.request('PUT', `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}`, {
        body: { ...lease, spec: { ...lease.spec, holderIdentity: SHARDER_HOLDER, renewTime: new Date().toISOString().replace(/(\.\d{3})Z$/, '$1000Z') } },
        beforeSend: this.options.fence,
      });
      this.options.logger.warn('a shard stopped renewing its Lease: taken over, its DQRs go to the other shards', { shard: name });
    } catch (error) {
      this.options.logger.info('shard Lease not taken over; tried again', { shard: name, reason: describeApiError(error).message });
    }
  }

  private async deleteLease(lease: Lease & HubObject): Promise<void> {
    const { name, namespace, resourceVersion } = lease.metadata;
    await this.options.hub
      .request('DELETE', `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}`, { body: { preconditions: { resourceVersion } }, beforeSend: this.options.fence })
      .catch((error: unknown) => this.options.logger.info('dead shard Lease not deleted; tried again', { shard: name, reason: describeApiError(error).message }));
  }

  private readonly reported = new Set<string>();
  /** Unassigned: no shard label, or the label names a shard that is neither ready nor being fenced. */
  private report(dqrs: readonly AssignedDqr[], ready: readonly string[], fencing: ReadonlySet<string>): void {
    const counts = new Map<string, number>([...ready, ...fencing].map((s) => [s, 0]));
    let unassigned = 0;
    for (const d of dqrs) {
      if (d.shard === undefined || !counts.has(d.shard)) unassigned++;
      else counts.set(d.shard, (counts.get(d.shard) ?? 0) + 1);
    }
    for (const shard of this.reported) if (!counts.has(shard)) this.options.metrics.shardDqrs.remove(shard);
    this.reported.clear();
    for (const [shard, n] of counts) {
      this.options.metrics.shardDqrs.labels(shard).set(n);
      this.reported.add(shard);
    }
    this.options.metrics.dqrsUnassigned.set(unassigned);
  }
}
