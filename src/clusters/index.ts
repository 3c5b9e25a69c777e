export { vetKubeconfig, type KubeconfigPolicy, type KubeconfigProblem, type VettedKubeconfig } from './kubeconfig-vetting.ts';
export { IN_CLUSTER, Kubeconfig, type KubeTls } from './kubeconfig.ts';
export { MemberApi, MemberApiError, MemberKubeConfig, type ApiResource, type ObjectRef } from './member-api.ts';
export { MemberQueue, MemberUnavailableError, type RateLimitSettings } from './member-queue.ts';
export { MemberRegistry, type EnsureResult, type Member, type MemberSpec } from './member-registry.ts';
export { probeMember, type ProbeResult } from './probe.ts';
export { MemberWatchCache, type CacheObjectRef, type CacheScope, type CachedObject, type DriftReport, type MemberCacheOptions } from './member-cache.ts';
export { decideDrift, fieldsFingerprint, recordApply, renderingManager, type AppliedRecord, type DriftObservation, type DriftReason, type DriftVerdict, type ManagedFieldsEntry } from './drift.ts';
