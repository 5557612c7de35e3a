// metav1.Condition bookkeeping: lastTransitionTime moves only when the status changes, and is
// truncated to seconds as the API server stores it.
import type { Condition } from '../../../api/gen/crd-types.js';

export type ConditionStatus = Condition['status'];

export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  /** CamelCase, from a constant. */
  reason: string;
  message: string;
  observedGeneration?: number;
}

/** The API server's bound on a condition message. */
const MAX_MESSAGE_LENGTH = 32_768;

export function rfc3339Seconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Returns the conditions with `input` set; the order of existing conditions is kept. */
export function setCondition(existing: readonly Condition[] | undefined, input: ConditionInput, nowMs: number): Condition[] {
  const conditions = [...(existing ?? [])];
  const index = conditions.findIndex((c) => c.type === input.type);
  const previous = index >= 0 ? conditions[index] : undefined;
  const next: Condition = {
    type: input.type,
    status: input.status,
    ...(input.observedGeneration !== undefined ? { observedGeneration: input.observedGeneration } : {}),
    lastTransitionTime:
      previous && previous.status === input.status ? previous.lastTransitionTime : rfc3339Seconds(nowMs),
    reason: input.reason,
    message: input.message.length > MAX_MESSAGE_LENGTH ? `${input.message.slice(0, MAX_MESSAGE_LENGTH - 1)}…` : input.message,
  };
  if (index >= 0) conditions[index] = next;
  else conditions.push(next);
  return conditions;
}

export function setConditions(existing: readonly Condition[] | undefined, inputs: readonly ConditionInput[], nowMs: number): Condition[] {
  return inputs.reduce<Condition[]>((acc, input) => setCondition(acc, input, nowMs), [...(existing ?? [])]);
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function conditionStatus(conditions: readonly Condition[] | undefined, type: string): ConditionStatus {
  return findCondition(conditions, type)?.status ?? 'Unknown';
}

/** The condition of `type` in `after` if its status or reason differs from `before` (for Events on transitions). */
export function conditionTransition(
  before: readonly Condition[] | undefined,
  after: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  const a = findCondition(before, type);
  const b = findCondition(after, type);
  if (!b) return undefined;
  return !a || a.status !== b.status || a.reason !== b.reason ? b : undefined;
}
