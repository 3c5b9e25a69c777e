export { QueryShapeError, combineOutcomes, pruneBudget, readAndRender, syncCluster, syncDqr, type ClusterOutcome, type ClusterSyncInput, type ClusterSyncOutcome, type PruneBudget, type DqrSyncInput, type DqrSyncOutcome, type RenderCluster, type RenderedRows, type RenderInput, type SyncCluster } from './dqr-sync.ts';
export { describeObject, groupOf, identityOf } from './identity.ts';
export { knownObject, listLeaving, listOwned, pruneMember, unmarkMember, resourceKey, syncMember, type MemberSyncInput, type MemberSyncResult, type PlannedChange, type PruneResult, type ResourceKey, type RowFailure } from './member-sync.ts';
export { combinePending, confirmedBy, decidePrune, type PendingPrune, type PruneClusterInput, type PruneDecision, type PruneDecisionInput } from './prune-decision.ts';
export { planCluster, type ClusterPlan, type DesiredObject, type LiveObject } from './plan.ts';
export { matchesLabelSelector, rowClusters, selectTargets, statusClusterName, targetKey, targetKeyFromStatus, type TargetRefusal, type TargetSelection } from './targets.ts';
export { connectionSettingsFromSecret, unwatchedSecret, type ConnectionFromSecret } from './connection.ts';
