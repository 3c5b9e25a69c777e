import { createHash } from 'node:crypto';
import { YAML_LIMITS, loadYamlDocument } from '../api/index.ts';
import { HeldBytes } from '../runtime/index.ts';
import type { Logger, SecretScrubber } from '../telemetry/index.ts';
import { MemberWatchCache, type DriftReport } from './member-cache.ts';
import { vetKubeconfig, type KubeconfigPolicy, type KubeconfigProblem } from './kubeconfig-vetting.ts';
import { IN_CLUSTER } from './kubeconfig.ts';
import { MemberApi, MemberKubeConfig } from './member-api.ts';
import { MemberQueue, type RateLimitSettings } from './member-queue.ts';

export interface MemberSpec {
  /** The ClusterTarget's namespace/name. */
  key: string;
  name: string;
  labels: Record<string, string>;
  /** Kubeconfig text from the Secret; for an in-cluster target, the hub's own. */
  kubeconfig: string;
  /** Where the kubeconfig was read (see secretSource): its credentials are forgotten by the scrubber with that Secret. */
  scrubSource: string;
  /** The hub's own kubeconfig is trusted as it is; a Secret's is vetted. */
  trusted: boolean;
  rateLimit: RateLimitSettings;
}

/** A connected member: its API client, its own queue, and what it was built from. */
export interface Member {
  readonly key: string;
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly api: MemberApi;
  readonly queue: MemberQueue;
  readonly fingerprint: string;
  /** The watch cache of managed objects (the controller's members; the CLI lists live). */
  readonly cache?: MemberWatchCache | undefined;
}

export type EnsureResult = { ok: true; member: Member; rebuilt: boolean } | { ok: false; problems: KubeconfigProblem[] };

export interface MemberRegistryOptions {
  policy: KubeconfigPolicy;
  scrubber: SecretScrubber;
  requestTimeoutMs: number;
  userAgent?: string;
  /** Bytes each member's informers may hold at once (HeldBytes); none: unbounded. */
  memberCacheLimitBytes?: number;
  /** `cluster`: the ClusterTarget's namespace/name, as every metric labels it. */
  onQueueWait?: (cluster: string, waitMs: number) => void;
  onThrottled?: (cluster: string, retryAfterMs: number) => void;
  onResponse?: (host: string, method: string, code: string) => void;
  /** Give each member a watch cache of the objects Rowcast manages there. */
  watchCache?: { logger: Logger; onDrift?: (report: DriftReport) => void };
}

/** Every credential a kubeconfig carries, so none can reach a log line. */
function registerCredentials(scrubber: SecretScrubber, text: string, source: string): void {
  // The pod's own service account: its token never passes through here.
  if (text === IN_CLUSTER) return;
  const loaded = loadYamlDocument(text, YAML_LIMITS.kubeconfig);
  // Vetting reports YAML that is broken or over the limits, and nothing of it is used.
  if (!loaded.ok) return;
  scrubber.register(text, source);
  const doc = loaded.value as { users?: unknown } | null | undefined;
  const users = typeof doc === 'object' && doc !== null && Array.isArray(doc.users) ? (doc.users as { user?: Record<string, unknown> }[]) : [];
  for (const entry of users) {
    for (const key of ['token', 'password', 'client-key-data', 'client-certificate-data']) {
      const value = entry.user?.[key];
      if (typeof value === 'string') scrubber.register(value, source);
    }
  }
}

/**
 * One client and one queue per member, in a map, built on first use and
 * rebuilt only when the kubeconfig or the rate limit changes (the fingerprint);
 * the old one is drained and its connections closed.
 */
export class MemberRegistry {
  private readonly options: MemberRegistryOptions;
  private readonly members = new Map<string, Member>();

  constructor(options: MemberRegistryOptions) {
    this.options = options;
  }

  get size(): number {
    return this.members.size;
  }

  get(key: string): Member | undefined {
    return this.members.get(key);
  }

  list(): Member[] {
    return [...this.members.values()];
  }

  async ensure(spec: MemberSpec): Promise<EnsureResult> {
    registerCredentials(this.options.scrubber, spec.kubeconfig, spec.scrubSource);
    const fingerprint = createHash('sha256').update(spec.kubeconfig).update(JSON.stringify(spec.rateLimit)).digest('hex');
    const existing = this.members.get(spec.key);
    if (existing?.fingerprint === fingerprint) {
      if (JSON.stringify(existing.labels) !== JSON.stringify(spec.labels)) {
        const relabelled = { ...existing, labels: { ...spec.labels } };
        this.members.set(spec.key, relabelled);
        return { ok: true, member: relabelled, rebuilt: false };
      }
      return { ok: true, member: existing, rebuilt: false };
    }
    let text = spec.kubeconfig;
    if (!spec.trusted) {
      const vetted = vetKubeconfig(spec.kubeconfig, this.options.policy);
      if (!vetted.ok) {
        await this.remove(spec.key);
        return { ok: false, problems: vetted.problems };
      }
      text = vetted.value.text;
    }
    let api: MemberApi;
    try {
      const held = this.options.memberCacheLimitBytes === undefined ? undefined : new HeldBytes(this.options.memberCacheLimitBytes);
      api = new MemberApi(new MemberKubeConfig(text, { requestTimeoutMs: this.options.requestTimeoutMs, ...(this.options.userAgent === undefined ? {} : { userAgent: this.options.userAgent }) }), this.options.onResponse, held);
    } catch (error) {
      await this.remove(spec.key);
      return { ok: false, problems: [{ field: '', message: `kubeconfig could not be loaded: ${this.options.scrubber.scrub(String(error))}` }] };
    }
    const queue = new MemberQueue({
      limits: spec.rateLimit,
      onWait: (ms) => this.options.onQueueWait?.(spec.key, ms),
      onThrottled: (ms) => this.options.onThrottled?.(spec.key, ms),
    });
    const cacheOptions = this.options.watchCache;
    const cache = cacheOptions === undefined ? undefined : new MemberWatchCache(api, { member: spec.key, ...cacheOptions });
    const member: Member = { key: spec.key, name: spec.name, labels: { ...spec.labels }, api, queue, fingerprint, cache };
    this.members.set(spec.key, member);
    if (existing !== undefined) await MemberRegistry.close(existing);
    return { ok: true, member, rebuilt: existing !== undefined };
  }

  async remove(key: string): Promise<void> {
    const member = this.members.get(key);
    if (member === undefined) return;
    this.members.delete(key);
    await MemberRegistry.close(member);
  }

  async closeAll(): Promise<void> {
    const all = [...this.members.values()];
    this.members.clear();
    await Promise.all(all.map((m) => MemberRegistry.close(m)));
  }

  /** A DQR that is gone: its share of every member's watch cache goes with it. */
  releaseCaches(user: string): void {
    for (const member of this.members.values()) member.cache?.release(user);
  }

  private static async close(member: Member): Promise<void> {
    await member.cache?.close();
    await member.queue.close();
    await member.api.close();
  }
}
