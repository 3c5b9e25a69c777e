export { vetKubeconfig, type KubeconfigPolicy, type KubeconfigProblem, type VettedKubeconfig } from './kubeconfig-vetting.ts';
export { MemberApi, MemberApiError, MemberKubeConfig, type ApiResource, type ObjectRef } from './member-api.ts';
export { MemberQueue, MemberUnavailableError, type RateLimitSettings } from './member-queue.ts';
export { MemberRegistry, type EnsureResult, type Member, type MemberSpec } from './member-registry.ts';
export { probeMember, type ProbeResult } from './probe.ts';
export { MemberWatchCache, type CacheEvent, type CacheScope, type CachedObject, type MemberCacheOptions } from './member-cache.ts';
