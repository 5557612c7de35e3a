// An InferenceService's status: on how many of the nodes chosen for it it is served, and why not
// on the others (reasons counted, per-node detail on SecAINode).
import type { InferenceServiceStatus, NodeServiceStatus } from '../../../../api/gen/crd-types.js';
import type { Exclusion } from '../../plan/node-plan.js';
import { setConditions, type ConditionInput } from '../../runtime/conditions.js';

export const Reason = {
  AllNodesServing: 'AllNodesServing',
  NotAllNodesServing: 'NotAllNodesServing',
  NoNodesSelected: 'NoNodesSelected',
  AuthTokenResolved: 'AuthTokenResolved',
  NotReported: 'NotReported',
} as const;

export interface ServiceNodeView {
  node: string;
  /** Why the node's plan leaves the service out, when it does. */
  excluded?: Exclusion;
  /** What the node reports about the service. */
  reported?: NodeServiceStatus;
}

export interface ServiceStatusInputs {
  generation: number;
  /** One entry per node the placement chose. */
  nodes: readonly ServiceNodeView[];
  token: { ok: true } | { ok: false; reason: string; message: string };
  existing: InferenceServiceStatus | undefined;
  now: number;
}

const MAX_REASONS = 32;

function notReadyReason(view: ServiceNodeView): string {
  if (view.excluded) return view.excluded.reason;
  if (!view.reported) return Reason.NotReported;
  return (view.reported.reason ?? view.reported.state).slice(0, 128);
}

export function computeServiceStatus(inputs: ServiceStatusInputs): InferenceServiceStatus {
  const serving = inputs.nodes.filter((n) => !n.excluded && n.reported?.state === 'Serving');
  const notReady = inputs.nodes.filter((n) => !serving.includes(n));
  const counts = new Map<string, number>();
  for (const view of notReady) counts.set(notReadyReason(view), (counts.get(notReadyReason(view)) ?? 0) + 1);
  const reasons = [...counts.entries()]
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1))
    .slice(0, MAX_REASONS)
    .map(([reason, nodes]) => ({ reason, nodes }));

  const selected = inputs.nodes.length;
  const ready: ConditionInput =
    selected === 0
      ? { type: 'Ready', status: 'False', reason: Reason.NoNodesSelected, message: 'the placement selects no fleet node' }
      : serving.length === selected
        ? { type: 'Ready', status: 'True', reason: Reason.AllNodesServing, message: `served on all ${selected} selected node(s)` }
        : {
            type: 'Ready',
            status: 'False',
            reason: Reason.NotAllNodesServing,
            message: `served on ${serving.length} of ${selected} node(s); ${reasons.map((r) => `${r.reason}: ${r.nodes}`).join(', ')}`,
          };
  const token: ConditionInput = inputs.token.ok
    ? { type: 'AuthTokenResolved', status: 'True', reason: Reason.AuthTokenResolved, message: 'the bearer token Secret resolves' }
    : { type: 'AuthTokenResolved', status: 'False', reason: inputs.token.reason, message: inputs.token.message };
  return {
    observedGeneration: inputs.generation,
    nodes: { selected, ready: serving.length, notReady: notReady.length },
    ...(reasons.length ? { notReadyReasons: reasons } : {}),
    conditions: setConditions(inputs.existing?.conditions, [ready, token].map((c) => ({ ...c, observedGeneration: inputs.generation })), inputs.now),
  };
}
