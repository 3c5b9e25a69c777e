export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

/** Exponential with full jitter in the upper half, so many keys failing together do not retry in step. */
export function backoffDelay(policy: BackoffPolicy, failures: number, random: () => number = Math.random): number {
  const exponential = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exponential / 2 + (random() * exponential) / 2);
}
