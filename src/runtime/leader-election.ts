import { setTimeout as wait } from 'node:timers/promises';
import type { Logger } from '../telemetry/index.ts';

/** coordination.k8s.io/v1 Lease, the parts leader election reads and writes. */
export interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string; labels?: Record<string, string> };
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
  get(signal: AbortSignal): Promise<Lease | undefined>;
  create(lease: Lease, signal: AbortSignal): Promise<Lease>;
  update(lease: Lease, signal: AbortSignal): Promise<Lease>;
}

/**
 * Asked immediately before every write that cannot be taken back (an apply, a
 * prune, a finalizer's delete, a status report): may this process still write
 * for the DatabaseQueryResource with this key? Throws FencedError if not.
 * Today one leader Lease answers for every key; with sharding, a shard's would.
 */
export type Fence = (dqrKey: string) => void;

/** This process may no longer write for a DQR: the write was not sent, and nothing after it may be. */
export class FencedError extends Error {
  override readonly name = 'FencedError';
}

/** For a process that is the only writer (no leader election). */
export const unfenced: Fence = () => undefined;

export interface LeaderElectionOptions {
  identity: string;
  name: string;
  namespace: string;
  store: LeaseStore;
  logger: Logger;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Set on the Lease when this replica creates it (a shard Lease names its ring). */
  labels?: Record<string, string>;
  onLeadershipChange?: (leading: boolean) => void;
}

function microTime(date: Date): string {
  return date.toISOString().replace(/(\.\d{3})Z$/, '$1000Z');
}

/**
 * Leader election on a Kubernetes Lease, as client-go does it: acquire when the
 * Lease is free or its holder has not renewed within the lease duration (timed
 * by this replica's own monotonic clock since it last saw the Lease change, so
 * clock skew between replicas does not matter), renew every retry period, and
 * lose leadership once no renewal has succeeded for the renew deadline.
 *
 * A leader's right to write is timed the same way: it lasts the renew deadline
 * from the start of its last successful renewal. A standby starts its lease
 * duration no earlier than it sees that renewal, so the leader stops writing
 * at least leaseDuration - renewDeadline before any standby may start, even if
 * its own timers fire late (a process woken from SIGSTOP runs whatever timer
 * comes first; the fence reads the clock, not a flag the renew loop sets).
 */
export class LeaderElector {
  private readonly options: Required<Omit<LeaderElectionOptions, 'onLeadershipChange' | 'labels'>> & Pick<LeaderElectionOptions, 'onLeadershipChange' | 'labels'>;
  private observed: { record: string; at: number } | undefined;
  private leading = false;
  /** performance.now() at the start of the last acquisition or renewal that succeeded. */
  private renewedAt = Number.NEGATIVE_INFINITY;
  private readonly lost = new AbortController();

  constructor(options: LeaderElectionOptions) {
    this.options = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...options };
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Aborts the moment leadership is lost, whether the renew loop or the fence finds out first. */
  get leadership(): AbortSignal {
    return this.lost.signal;
  }

  /** The Fence of a process that writes only while it leads. */
  readonly fence: Fence = (dqrKey) => {
    if (this.leading && performance.now() - this.renewedAt < this.options.renewDeadlineMs) return;
    this.lose(`not renewed for ${Math.round(performance.now() - this.renewedAt)} ms`);
    throw new FencedError(`this replica no longer holds Lease ${this.options.namespace}/${this.options.name}: nothing more is written for ${dqrKey}`);
  };

  /** Resolves once this replica leads; never, if the signal aborts first (then it rejects). */
  async acquire(signal: AbortSignal): Promise<void> {
    this.options.logger.info('waiting for the leader Lease', { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity });
    while (!(await this.tryAcquireOrRenew(AbortSignal.any([signal, AbortSignal.timeout(this.options.renewDeadlineMs)])))) {
      await wait(this.options.retryPeriodMs, undefined, { signal });
    }
    this.setLeading(true);
    this.options.logger.info('acquired the leader Lease', { identity: this.options.identity });
  }

  /**
   * Renews from the moment of acquisition until the signal aborts (resolves
   * true) or leadership is lost (resolves false). Each renewal must finish
   * before the renew deadline, counted from the last one that succeeded.
   */
  async hold(signal: AbortSignal): Promise<boolean> {
    const stop = AbortSignal.any([signal, this.lost.signal]);
    for (;;) {
      await wait(this.options.retryPeriodMs, undefined, { signal: stop }).catch(() => undefined);
      if (this.lost.signal.aborted) return false;
      if (signal.aborted) return true;
      const left = this.renewedAt + this.options.renewDeadlineMs - performance.now();
      if (left <= 0) {
        this.lose(`not renewed for ${Math.round(this.options.renewDeadlineMs - left)} ms`);
        return false;
      }
      await this.tryAcquireOrRenew(AbortSignal.any([stop, AbortSignal.timeout(Math.ceil(left))]));
    }
  }

  /** Lets a standby take over at once instead of waiting out the lease; only while this replica still leads by its own clock. */
  async release(): Promise<void> {
    if (!this.leading || this.lost.signal.aborted) return;
    this.setLeading(false);
    const signal = AbortSignal.timeout(this.options.renewDeadlineMs);
    const lease = await this.options.store.get(signal).catch(() => undefined);
    if (lease?.spec.holderIdentity !== this.options.identity) return;
    await this.options.store
      .update({ ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(new Date()) } }, signal)
      .catch(() => undefined);
  }

  private lose(why: string): void {
    if (this.lost.signal.aborted || !this.leading) return;
    this.setLeading(false);
    this.options.logger.error('lost the leader Lease: stopping at once', { lease: `${this.options.namespace}/${this.options.name}`, identity: this.options.identity, why });
    this.lost.abort(new Error('lost the leader Lease'));
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.options.onLeadershipChange?.(leading);
  }

  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { identity, name, namespace, store, leaseDurationMs } = this.options;
    const started = performance.now();
    const now = new Date();
    const spec = { holderIdentity: identity, leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000), renewTime: microTime(now) };
    try {
      const current = await store.get(signal);
      if (current === undefined) {
        await store.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace, ...(this.options.labels === undefined ? {} : { labels: this.options.labels }) }, spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 } }, signal);
        this.renewedAt = started;
        return true;
      }
      const record = JSON.stringify(current.spec);
      if (this.observed?.record !== record) this.observed = { record, at: performance.now() };
      const holder = current.spec.holderIdentity ?? '';
      const duration = (current.spec.leaseDurationSeconds ?? 0) * 1000;
      if (holder !== '' && holder !== identity && performance.now() < this.observed.at + duration) return false;
      const transition = holder !== identity;
      await store.update(
        {
          ...current,
          spec: {
            ...current.spec,
            ...spec,
            acquireTime: transition ? microTime(now) : (current.spec.acquireTime ?? microTime(now)),
            leaseTransitions: (current.spec.leaseTransitions ?? 0) + (transition ? 1 : 0),
          },
        },
        signal,
      );
      this.renewedAt = started;
      return true;
    } catch (error) {
      this.options.logger.debug('leader Lease not acquired or renewed', { error });
      return false;
    }
  }
}
