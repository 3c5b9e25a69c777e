import { STATUS_LIMITS, type Condition } from '../api/index.ts';

export interface ConditionUpdate {
  type: string;
  status: Condition['status'];
  reason: string;
  message: string;
}

function truncate(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}…`;
}

/**
 * Sets conditions the KEP-1623 way: lastTransitionTime moves only when the
 * status changes; reason, message and observedGeneration always follow.
 */
export function setConditions(current: readonly Condition[] | undefined, updates: readonly ConditionUpdate[], observedGeneration: number | undefined, now: Date): Condition[] {
  const next = [...(current ?? [])];
  for (const update of updates) {
    const index = next.findIndex((c) => c.type === update.type);
    const previous = next[index];
    const condition: Condition = {
      type: update.type,
      status: update.status,
      reason: update.reason,
      message: truncate(update.message, STATUS_LIMITS.conditionMessageLength),
      lastTransitionTime: previous?.status === update.status ? previous.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      ...(observedGeneration === undefined ? {} : { observedGeneration }),
    };
    if (index === -1) next.push(condition);
    else next[index] = condition;
  }
  return next;
}

/** Whether a condition changed in a way worth an Event. */
export function transitioned(before: readonly Condition[] | undefined, after: readonly Condition[], type: string): Condition | undefined {
  const old = before?.find((c) => c.type === type);
  const now = after.find((c) => c.type === type);
  if (now === undefined) return undefined;
  return old?.status !== now.status || old.reason !== now.reason ? now : undefined;
}

export function truncateMessage(text: string): string {
  return truncate(text, STATUS_LIMITS.errorMessageLength);
}
