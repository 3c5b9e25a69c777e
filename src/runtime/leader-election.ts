import { setTimeout as wait } from 'node:timers/promises';
import type { Logger } from '../telemetry/index.ts';

/** coordination.k8s.io/v1 Lease, the parts leader election reads and writes. */
export interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** Reads and writes one Lease; update carries resourceVersion, so a lost race is a 409, not a silent overwrite. */
export interface LeaseStore {
  get(): Promise<Lease | undefined>;
  create(lease: Lease): Promise<Lease>;
  update(lease: Lease): Promise<Lease>;
}

export interface LeaderElectionOptions {
  identity: string;
  name: string;
  namespace: string;
  store: LeaseStore;
  logger: Logger;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onLeadershipChange?: (leading: boolean) => void;
}

function microTime(date: Date): string {
  return date.toISOString().replace(/(\.\d{3})Z$/, '$1000Z');
}

/**
 * Leader election on a Kubernetes Lease, as client-go does it: acquire when the
 * Lease is free or its holder has not renewed within the lease duration (timed
 * by this replica's own clock since it last saw the Lease change, so clock skew
 * between replicas does not matter), renew every retry period, and give up
 * leadership when renewing fails for longer than the renew deadline.
 */
export class LeaderElector {
  private readonly options: Required<Omit<LeaderElectionOptions, 'onLeadershipChange'>> & Pick<LeaderElectionOptions, 'onLeadershipChange'>;
  private observed: { record: string; at: number } | undefined;
  private leading = false;

  constructor(options: LeaderElectionOptions) {
    this.options = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...options };
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Resolves once this replica leads; never, if the signal aborts first (then it rejects). */
  async acquire(signal: AbortSignal): Promise<void> {
    this.options.logger.info('waiting for the leader Lease', { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity });
    while (!(await this.tryAcquireOrRenew())) {
      await wait(this.options.retryPeriodMs, undefined, { signal });
    }
    this.setLeading(true);
    this.options.logger.info('acquired the leader Lease', { identity: this.options.identity });
  }

  /** Renews until the signal aborts (resolves) or renewal fails past the deadline (resolves with false). */
  async hold(signal: AbortSignal): Promise<boolean> {
    let lastRenew = Date.now();
    for (;;) {
      await wait(this.options.retryPeriodMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return true;
      if (await this.tryAcquireOrRenew()) {
        lastRenew = Date.now();
      } else if (Date.now() - lastRenew > this.options.renewDeadlineMs) {
        this.setLeading(false);
        this.options.logger.error('lost the leader Lease', { identity: this.options.identity });
        return false;
      }
    }
  }

  /** Lets a standby take over at once instead of waiting out the lease. */
  async release(): Promise<void> {
    if (!this.leading) return;
    this.setLeading(false);
    const lease = await this.options.store.get().catch(() => undefined);
    if (lease?.spec.holderIdentity !== this.options.identity) return;
    await this.options.store
      .update({ ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(new Date()) } })
      .catch(() => undefined);
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.options.onLeadershipChange?.(leading);
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { identity, name, namespace, store, leaseDurationMs } = this.options;
    const now = new Date();
    const spec = { holderIdentity: identity, leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000), renewTime: microTime(now) };
    try {
      const current = await store.get();
      if (current === undefined) {
        await store.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 } });
        return true;
      }
      const record = JSON.stringify(current.spec);
      if (this.observed?.record !== record) this.observed = { record, at: Date.now() };
      const holder = current.spec.holderIdentity ?? '';
      const duration = (current.spec.leaseDurationSeconds ?? 0) * 1000;
      if (holder !== '' && holder !== identity && Date.now() < this.observed.at + duration) return false;
      const transition = holder !== identity;
      await store.update({
        ...current,
        spec: {
          ...current.spec,
          ...spec,
          acquireTime: transition ? microTime(now) : (current.spec.acquireTime ?? microTime(now)),
          leaseTransitions: (current.spec.leaseTransitions ?? 0) + (transition ? 1 : 0),
        },
      });
      return true;
    } catch (error) {
      this.options.logger.debug('leader Lease not acquired or renewed', { error });
      return false;
    }
  }
}
