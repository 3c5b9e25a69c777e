export const GROUP = 'rowcast.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const DATABASE_QUERY_RESOURCE = {
  kind: 'DatabaseQueryResource',
  listKind: 'DatabaseQueryResourceList',
  plural: 'databasequeryresources',
  singular: 'databasequeryresource',
  shortName: 'dqr',
} as const;

export const CLUSTER_TARGET = {
  kind: 'ClusterTarget',
  listKind: 'ClusterTargetList',
  plural: 'clustertargets',
  singular: 'clustertarget',
  shortName: 'ct',
} as const;

export const CATEGORY = 'rowcast';

/**
 * Label on every object Rowcast writes to a member. Its value is a short hash
 * of hub id + DQR namespace/name + the ClusterTarget it was rendered for,
 * because owner references cannot cross clusters and label values are capped
 * at 63 characters. Pruning lists by it (render/ownership.ts).
 */
export const OWNER_LABEL = `${GROUP}/owner`;

/**
 * The label a Secret needs for Rowcast to read it (value "true"): DB
 * connection and kubeconfig Secrets. The controller watches and caches only
 * Secrets carrying it, never every Secret of the cluster.
 */
export const WATCH_LABEL = `${GROUP}/watch`;

export const ANNOTATIONS = {
  /** Hub id, namespace, name and uid of the owning DQR and its ClusterTarget, in full. */
  ownerRef: `${GROUP}/owner-ref`,
  /** The row key the object was rendered from. */
  rowKey: `${GROUP}/row-key`,
  /** Hash of the rendered object: an unchanged object is not sent again. */
  hash: `${GROUP}/hash`,
  /**
   * Set on a DQR by a person to let a sync prune past `spec.pruneLimit`. The
   * value must equal `status.pendingPrune.id`, which names the exact objects
   * of one blocked prune, so a confirmation never releases a different or a
   * larger prune. The controller reads it live before pruning and removes it
   * once a sync is within the limit or has used it.
   */
  confirmPrune: `${GROUP}/confirm-prune`,
  /**
   * Set to "true" by a person on a DQR being deleted whose finalizer waits
   * for clusters it cannot reach (unreachable, removed or paused
   * ClusterTargets): what is on those clusters is left as it is, still
   * marked, and the finalizer is released.
   */
  orphanUnreachable: `${GROUP}/orphan-unreachable`,
} as const;

/** Held on DQRs until their member objects are deleted or orphaned. */
export const FINALIZER = `${GROUP}/finalizer`;

export const CONDITION_TYPES = {
  /** DQR and ClusterTarget: the summary a person looks at first. */
  ready: 'Ready',
  /** DQR: the connection Secret was read and the database answered. */
  databaseConnected: 'DatabaseConnected',
  /** DQR: the last sync applied and pruned everything it wanted to. */
  synced: 'Synced',
  /** DQR: managed objects were changed on members by someone else (driftPolicy says what Rowcast does). */
  drifted: 'Drifted',
  /** ClusterTarget: the member's apiserver answered the last probe. */
  reachable: 'Reachable',
} as const;
export type ConditionType = (typeof CONDITION_TYPES)[keyof typeof CONDITION_TYPES];

export const REASONS = {
  /** Every selected row is applied on every selected cluster. */
  synced: 'Synced',
  /** Some rows or clusters failed; the rest were applied. */
  partiallySynced: 'PartiallySynced',
  /** The sync stopped before applying anything (query error, no pool...), or nothing it sent reached any cluster. */
  syncFailed: 'SyncFailed',
  /** Some selected members have not yet applied the latest rows (slow, unreachable or failing); the others have. */
  membersBehind: 'MembersBehind',
  /** Drifted=False: nothing managed was changed by others, or every change was healed. */
  noDrift: 'NoDrift',
  /** Drifted=True, driftPolicy Report: objects changed by others, left as they are. */
  driftReported: 'DriftReported',
  /** Drifted=True, driftPolicy Heal: another writer keeps changing an object; each heal waits longer (2s doubling to 5m). */
  healBackingOff: 'HealBackingOff',
  /** The sync would prune more than `spec.pruneLimit`; waiting for a person. */
  pruneBlocked: 'PruneBlocked',
  /** The spec failed validation; nothing is done until it is fixed. */
  invalidSpec: 'InvalidSpec',
  /** The targets select no ClusterTarget this DQR may use. */
  noClustersSelected: 'NoClustersSelected',
  /** The first sync of this generation has not finished yet. */
  progressing: 'Progressing',
  /** The finalizer is deleting or orphaning member objects. */
  deleting: 'Deleting',
  connected: 'Connected',
  connectionFailed: 'ConnectionFailed',
  /** The database refused the login: a wrong password, a role that may not log in, no such database. */
  authenticationFailed: 'AuthenticationFailed',
  queryFailed: 'QueryFailed',
  /** A referenced Secret does not exist. */
  secretNotFound: 'SecretNotFound',
  /** A referenced Secret lacks a key or holds an unusable value. */
  secretInvalid: 'SecretInvalid',
  reachable: 'Reachable',
  unreachable: 'Unreachable',
  /** The member answered 401 or 403 to the kubeconfig's credentials. */
  unauthorized: 'Unauthorized',
  /** The kubeconfig uses exec or auth-provider plugins, file paths, insecure-skip-tls-verify or plain http, and no flag allows it. */
  kubeconfigRefused: 'KubeconfigRefused',
  /** `inCluster: true` outside the controller's namespace, and --allow-in-cluster-namespaces does not name this one. */
  inClusterRefused: 'InClusterRefused',
  kubeconfigInvalid: 'KubeconfigInvalid',
  /** The kubeconfig is over the size or nesting limit, or its YAML aliases expand past it. */
  kubeconfigTooLarge: 'KubeconfigTooLarge',
  /** `spec.paused` is true. */
  paused: 'Paused',
  /** An older ClusterTarget reaches the same apiserver (server and CA) with overlapping namespaces. */
  duplicateCluster: 'DuplicateCluster',
  /** Objects are applied, but writing their status back to the database fails. */
  writeBackFailed: 'WriteBackFailed',
} as const;
export type Reason = (typeof REASONS)[keyof typeof REASONS];

/** Bounds that keep status objects small; the ledger holds the full detail. */
export const STATUS_LIMITS = {
  conditions: 8,
  conditionMessageLength: 32768,
  clusters: 1000,
  failingRows: 10,
  managedResources: 64,
  errorMessageLength: 512,
  rowKeyLength: 1024,
} as const;

/** What `spec.rateLimit` fields mean when they are 0 or absent. */
export const RATE_LIMIT_DEFAULTS = { qps: 50, burst: 100, concurrency: 8 } as const;

/**
 * Sharding across controller replicas (docs/adr/0004). Each replica holds a
 * Lease labelled with the ring's name; the sharder (the elected leader)
 * records which replica owns a DQR in the shard label, and asks the owner to
 * hand a DQR over with the drain label, which the owner removes together with
 * the shard label once its in-flight work is done.
 */
export const SHARDING_LABELS = {
  ring: `${GROUP}/ring`,
  shard: `${GROUP}/shard`,
  drain: `${GROUP}/drain`,
} as const;
