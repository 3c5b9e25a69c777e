export { describeApiError, errorCode, type ApiFailure } from './api-errors.ts';
export { backoffDelay, type BackoffPolicy } from './backoff.ts';
export { HeldBytes, OverHeldLimitError } from './held-bytes.ts';
export { SupervisedInformer, type InformerEvent, type ListedCollection, type SupervisedInformerOptions } from './informer-supervisor.ts';
export { TerminalError, WorkQueue, type Reconcile, type ReconcileOutcome, type ReconcileResult, type WorkQueueOptions } from './work-queue.ts';
export { FencedError, LeaderElector, unfenced, type Fence, type Lease, type LeaseStore, type LeaderElectionOptions } from './leader-election.ts';
export { forgetSecretValues, readSecretKeys, secretSource, type SecretLike, type SecretValues } from './secret-data.ts';
