import type { KubernetesObject } from '@kubernetes/client-node';
import type { DatabaseQueryResource } from '../api/index.ts';
import type { ControllerOptions } from '../config/index.ts';
import type { Member, MemberApi, MemberRegistry } from '../clusters/index.ts';
import type { NotifyHub, NotifySubscription, PoolLease, PoolRegistry, WriteBackQueue } from '../db/index.ts';
import type { DqrOwner, TemplateCache } from '../render/index.ts';
import type { Fence, SupervisedInformer, WorkQueue } from '../runtime/index.ts';
import type { HubWriter } from '../status/index.ts';
import type { Logger, Metrics, SecretScrubber, StatusWatchCount, SyncTrigger, TraceLink } from '../telemetry/index.ts';
import type { ClusterSyncOutcome, PruneBudget, RenderedRows, SyncCluster } from '../sync/index.ts';

/** A hub object as the informers hold it: what the parsers take plus what they leave out. */
export interface HubObject extends KubernetesObject {
  spec?: unknown;
  status?: Record<string, unknown>;
  data?: Record<string, string>;
}

/** This replica's part in sharding: which shard it is, and the DQRs it has handed over that its informer may still hold. */
export interface ShardMembership {
  identity: string;
  relinquished: Set<string>;
  /** This replica is the sharder: it alone writes ClusterTarget status (every replica probes). */
  leads: () => boolean;
  /** Live shards in the ring, this one included: each member's rate limit is divided among them. */
  ringSize: () => number;
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
  /** With sharding: this replica's shard (its DQR informer holds only the DQRs labelled with it). */
  shard: ShardMembership | undefined;
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
    /** Sharded only: the ring's shard Leases. */
    shardLeases?: SupervisedInformer<HubObject>;
  };
  /** Per DQR key: its latest snapshot and where each member stands with it (member-work.ts). */
  work: Map<string, DqrWork>;
  /** dqrs: one query each; members: one (DQR, member) item each; dqrStatus: a DQR's status from its members. */
  queues: { dqrs: WorkQueue; members: WorkQueue; dqrStatus: WorkQueue; clusterTargets: WorkQueue };
}

/**
 * What one query of a DQR wants, shared by its members' work items: each
 * member applies the latest snapshot at its own pace.
 */
export interface DqrSnapshot {
  version: number;
  /** Epoch ms. */
  createdAt: number;
  dqr: DatabaseQueryResource;
  owner: DqrOwner;
  rendered: RenderedRows;
  /** By ClusterTarget key: the selected, connected clusters. */
  clusters: ReadonlyMap<string, SyncCluster>;
  /** By ClusterTarget key: clusters the DQR wrote to and no longer selects (deletionPolicy applies). */
  leaving: ReadonlyMap<string, SyncCluster>;
  refusals: readonly string[];
  held: readonly { target: string; lastError: string }[];
  selectedCount: number;
  previousResources: readonly string[];
  previousKeyColumns: readonly string[] | undefined;
  /** By cluster key: what it managed when the pending prune was first blocked. */
  pruneBaseline: ReadonlyMap<string, number>;
  hadPendingPrune: boolean;
  /** The prune-confirmation annotation as the informer had it (read live before it is used). */
  confirmation: string | undefined;
  /** The pending-prune ids it confirms (a combined id names several members' prunes). */
  confirmedIds: ReadonlySet<string>;
  /** Hash of what it asks of the members and says in status: an equal one is not published again. */
  fingerprint: string;
  ledger: { table: string; everything: boolean } | undefined;
  /** A count limit's DQR-wide share for this round, taken from as members prune. */
  budget: PruneBudget | undefined;
  trigger: SyncTrigger;
  /** When the change this snapshot carries happened (freshness counts from here). */
  seenAt: number;
  /** The snapshot's trace: every member's trace links to it. */
  link: TraceLink | undefined;
  /** Status watches are wanted on what the members hold (write-back or ledger). */
  watchStatus: boolean;
  /** The kinds whose status is wanted (statusUpdate.kinds, without a ledger); undefined: every kind. Only those are held in full. */
  statusKinds: readonly string[] | undefined;
}

export interface MemberState {
  version: number;
  outcome: ClusterSyncOutcome;
}

/** Per DQR: the latest snapshot and where each member stands with it. */
export interface DqrWork {
  snapshot: DqrSnapshot | undefined;
  members: Map<string, MemberState>;
  /** By cluster key: since when the member has not finished a snapshot (epoch ms). */
  behindSince: Map<string, number>;
  /** By cluster key: failed attempts in a row, for its own backoff. */
  failures: Map<string, number>;
  /** Member work items running now: the finalizer waits for them. */
  running: Set<Promise<unknown>>;
  /** By `cluster|identity`: objects others changed, and how often lately (hub/drift.ts). */
  drift: Map<string, DriftState>;
  /** By cluster key: when its next full re-check is due (epoch ms; --resync-period). */
  resyncAt: Map<string, number>;
}

/** One managed object someone else changed, as driftPolicy handles it. */
export interface DriftState {
  cluster: string;
  /** identityOf the object. */
  identity: string;
  /** Kind namespace/name, for people. */
  object: string;
  rowKey: string | undefined;
  reason: string;
  managers: readonly string[];
  /** Drift events within the last window: the heal backoff's exponent. */
  count: number;
  /** Epoch ms of the latest drift event. */
  lastAt: number;
  /** Heal: not before this (epoch ms); Report: undefined. */
  healAt: number | undefined;
  /** Still drifted as far as Rowcast knows: reported and not applied since, or a heal not yet done. */
  open: boolean;
}



/** What the DQR reconciler needs of the status watches (status-watch.ts). */
export interface StatusWatchRegistry {
  /** `namespaces`: the ClusterTarget's allowedNamespaces (empty: cluster-wide). */
  ensure(member: Member, apiVersion: string, kind: string, namespaces?: readonly string[]): Promise<void>;
  forgetMember(memberKey: string): Promise<void>;
  stopAll(): Promise<void>;
  /** What each watch holds in full, for rowcast_status_watch_objects. */
  counts(): StatusWatchCount[];
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

/** A (DQR, member) work item's key. */
export function memberItemKey(dqrKey: string, clusterKey: string): string {
  return `${dqrKey}@${clusterKey}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export function keyOf(object: KubernetesObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}
