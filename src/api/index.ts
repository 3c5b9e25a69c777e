export {
  ANNOTATIONS,
  API_VERSION,
  CATEGORY,
  CLUSTER_TARGET,
  CONDITION_TYPES,
  DATABASE_QUERY_RESOURCE,
  FINALIZER,
  GROUP,
  OWNER_LABEL,
  SHARDING_LABELS,
  WATCH_LABEL,
  RATE_LIMIT_DEFAULTS,
  REASONS,
  STATUS_LIMITS,
  VERSION,
  type ConditionType,
  type Reason,
} from './constants.ts';
export { parseGoDuration } from './go-duration.ts';
export type { FieldError, ParseResult } from './validate.ts';
export type { Condition, LabelSelector, LabelSelectorOperator, LabelSelectorRequirement, ObjectMeta } from './meta.ts';
export { byCodePoint } from './meta.ts';
export {
  allowedPrunes,
  parseDatabaseQueryResource,
  type ChangeDetection,
  type ClusterRef,
  type ClusterSyncStatus,
  type ConnectionSecretRef,
  type DatabaseQueryResource,
  type DatabaseQueryResourceSpec,
  type DatabaseQueryResourceStatus,
  type DeletionPolicy,
  type DriftPolicy,
  type IgnoredFields,
  type FailingRow,
  type PendingPruneStatus,
  type PruneLimit,
  type Targets,
} from './database-query-resource.ts';
export {
  acceptsSourceNamespace,
  allowsMemberNamespace,
  parseClusterTarget,
  type ClusterTarget,
  type ClusterTargetSpec,
  type ClusterTargetStatus,
  type RateLimit,
  type SecretKeyRef,
} from './cluster-target.ts';
export { customResourceDefinitions } from './crds.ts';
export { YAML_LIMITS, loadYamlDocument, loadYamlDocuments, type YamlLimits, type YamlLoad, type YamlProblem, type YamlProblemKind } from './yaml.ts';
