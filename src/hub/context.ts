import type { KubernetesObject } from '@kubernetes/client-node';
import type { ControllerOptions } from '../config/index.ts';
import type { Member, MemberApi, MemberRegistry } from '../clusters/index.ts';
import type { NotifyHub, NotifySubscription, PoolLease, PoolRegistry, WriteBackQueue } from '../db/index.ts';
import type { TemplateCache } from '../render/index.ts';
import type { Fence, SupervisedInformer, WorkQueue } from '../runtime/index.ts';
import type { HubWriter } from '../status/index.ts';
import type { Logger, Metrics, SecretScrubber, SyncTrigger, TraceLink } from '../telemetry/index.ts';

/** A hub object as the informers hold it: what the parsers take plus what they leave out. */
export interface HubObject extends KubernetesObject {
  spec?: unknown;
  status?: Record<string, unknown>;
  data?: Record<string, string>;
}

/** Everything the reconcilers share; built once by the controller. */
export interface HubContext {
  options: ControllerOptions;
  logger: Logger;
  scrubber: SecretScrubber;
  metrics: Metrics;
  hub: MemberApi;
  /** The hub's kubeconfig as text, for ClusterTargets with inCluster: true. */
  hubKubeconfig: string;
  hubId: string;
  /** Asked immediately before every write for a DQR (member and hub): this process may have lost the right to write. */
  fence: Fence;
  writer: HubWriter;
  members: MemberRegistry;
  pools: PoolRegistry;
  templates: TemplateCache;
  /** The pool lease each DQR holds, by DQR key. */
  leases: Map<string, PoolLease>;
  notify: NotifyHub;
  /** Change detection's memory per DQR key. */
  changes: Map<string, ChangeState>;
  /** Notifications waiting for their DQR's next sync, by DQR key. */
  pendingTriggers: Map<string, { trigger: SyncTrigger; at: number; link?: TraceLink }>;
  writeBacks: WriteBackQueue;
  statusWatches: StatusWatchRegistry;
  /** Objects each DQR manages per member (ClusterTarget key), from its last sync: ClusterTarget status sums them. */
  managed: Map<string, Map<string, number>>;
  /** Ledgers known to exist, as pool key + table. */
  ledgers: Set<string>;
  /** Per DQR, the failing conditions last logged: a failure is logged when it appears or changes, not on every retry. */
  loggedFailures: Map<string, string>;
  /** Each notify-mode DQR's LISTEN subscription, with what it was made for. */
  subscriptions: Map<string, { id: string; subscription: NotifySubscription }>;
  informers: {
    dqrs: SupervisedInformer<HubObject>;
    clusterTargets: SupervisedInformer<HubObject>;
    secrets: SupervisedInformer<HubObject>;
  };
  queues: { dqrs: WorkQueue; clusterTargets: WorkQueue };
}

/** What the DQR reconciler needs of the status watches (status-watch.ts). */
export interface StatusWatchRegistry {
  ensure(member: Member, apiVersion: string, kind: string): Promise<void>;
  forgetMember(memberKey: string): Promise<void>;
  stopAll(): Promise<void>;
  /** Key columns of each DQR's rows, learned from its last query. */
  readonly keyColumns: Map<string, string[]>;
  /** By DQR key, then row key: the columns its write-back binds, as of its last sync. */
  readonly rows: Map<string, ReadonlyMap<string, Record<string, unknown>>>;
  /** The last write-back failure per DQR key. */
  readonly failures: Map<string, string>;
  /** What a sync applied or listed on one member: the only objects whose status is written back. */
  recordKnown(dqrKey: string, memberKey: string, objects: readonly string[], complete: boolean): void;
  /** A DQR that is gone: everything remembered for it goes too. */
  forgetDqr(dqrKey: string): void;
}

export interface ChangeState {
  generation: number | undefined;
  /** max(timestampColumn) when the query last ran. */
  lastMax: string | null | undefined;
  lastRunAt: number;
  /** The last sync failed: the next poll runs the query whatever change detection says. */
  failed: boolean;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export function keyOf(object: KubernetesObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}
