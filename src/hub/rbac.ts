/** One RBAC rule, in the shape of a ClusterRole's `rules` entries. */
export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  /** Only these objects; the rule grants nothing else. */
  resourceNames?: string[];
}

/**
 * Everything the controller does on the hub, as RBAC rules: the chart
 * (charts/rowcast) grants exactly these and nothing more, and
 * test/chart.test.ts renders the chart and compares. A new call on the hub
 * needs a rule here and in the chart's templates/_helpers.tpl.
 *
 * - DQRs and ClusterTargets: read through informers (list, watch; get for
 *   people and tools reading as the controller); DQR metadata is
 *   merge-patched for the finalizer and the prune confirmation annotation
 *   (hub/dqr-reconciler.ts via status/hub-writer.ts `patchMetadata`).
 * - Their /status: merge-patched with conditions and counts (`patchStatus`).
 * - Secrets: listed and watched through an informer selecting the label
 *   rowcast.dev/watch=true (kubeconfigs of members, database connections);
 *   never read one by one, so no `get`. RBAC cannot select by label: the
 *   label bounds what the controller reads and caches, the rule where.
 * - Events: created on DQRs and ClusterTargets (`event`); patch for
 *   aggregating repeats.
 * - Namespaces: get kube-system, whose UID is the hub id when `--hub-id` is
 *   not given (hub/controller.ts).
 * - Leases: the leader Lease with `--leader-elect` (hub/lease-store.ts),
 *   and with `--sharding` each replica's own shard Lease (get, create,
 *   update, as the leader's); every replica lists and watches the ring's
 *   shard Leases (a member's rate limit is divided among them), and the
 *   sharder takes over a stale one (update) and deletes dead ones
 *   (hub/sharder.ts).
 *
 * The chart grants each rule only where and when it is used: the Lease rules
 * in the release namespace and only with leader election (list, watch and
 * delete only with sharding), the namespace rule
 * only without a fixed hub id, the rest cluster-wide or in the one watched
 * namespace.
 */
export const hubPolicyRules: readonly PolicyRule[] = [
  { apiGroups: ['rowcast.dev'], resources: ['databasequeryresources'], verbs: ['get', 'list', 'watch', 'patch'] },
  { apiGroups: ['rowcast.dev'], resources: ['clustertargets'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['rowcast.dev'], resources: ['databasequeryresources/status', 'clustertargets/status'], verbs: ['patch'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
  { apiGroups: [''], resources: ['namespaces'], resourceNames: ['kube-system'], verbs: ['get'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['list', 'watch', 'delete'] },
];
