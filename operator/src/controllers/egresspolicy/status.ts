// An EgressPolicy's status from one rollout step: node counts, the allowlist digest, the rollout's
// progress, and conditions (Ready summarises; Progressing follows the rollout).
import type { EgressPolicyStatus } from '../../../../api/gen/crd-types.js';
import { setConditions, type ConditionInput } from '../../runtime/conditions.js';
import type { RolloutOutcome } from './rollout.js';

export const Reason = {
  Enforced: 'Enforced',
  NoMatchingNodes: 'NoMatchingNodes',
  RolloutInProgress: 'RolloutInProgress',
  RolloutComplete: 'RolloutComplete',
  RolloutStopped: 'RolloutStopped',
  NodesFailed: 'NodesFailed',
  NodesPending: 'NodesPending',
} as const;

export function computeEgressStatus(
  generation: number,
  allowlistDigest: string,
  outcome: RolloutOutcome,
  existing: EgressPolicyStatus | undefined,
  now: number,
): EgressPolicyStatus {
  const { record, counts } = outcome;
  const c = (type: string, ok: boolean, reason: string, message: string): ConditionInput => ({
    type,
    status: ok ? 'True' : 'False',
    reason,
    message,
    observedGeneration: generation,
  });
  let ready: ConditionInput;
  if (record.state === 'Stopped') ready = c('Ready', false, Reason.RolloutStopped, record.message);
  else if (counts.failed > 0) ready = c('Ready', false, Reason.NodesFailed, `${counts.failed} node(s) failed: ${outcome.failures.map((f) => `${f.node}: ${f.reason}`).join('; ')}`);
  else if (record.state === 'Progressing') ready = c('Ready', false, Reason.RolloutInProgress, `enforced on ${counts.enforced} of ${counts.matched} node(s)`);
  else if (counts.matched === 0) ready = c('Ready', true, Reason.NoMatchingNodes, 'the selector matches no fleet node');
  else if (counts.pending > 0) ready = c('Ready', false, Reason.NodesPending, `enforced on ${counts.enforced} of ${counts.matched} node(s)`);
  else ready = c('Ready', true, Reason.Enforced, `enforced on all ${counts.matched} node(s)`);
  const progressing =
    record.state === 'Progressing'
      ? c('Progressing', true, Reason.RolloutInProgress, record.message || 'rolling out')
      : record.state === 'Stopped'
        ? c('Progressing', false, Reason.RolloutStopped, record.message)
        : c('Progressing', false, Reason.RolloutComplete, `generation ${record.targetGeneration} rolled out`);
  return {
    observedGeneration: generation,
    nodes: counts,
    allowlistDigest,
    rollout: {
      state: record.state,
      generation: record.targetGeneration,
      updated: outcome.updated,
      ...(record.message ? { message: record.message.slice(0, 1024) } : {}),
    },
    conditions: setConditions(existing?.conditions, [ready, progressing], now),
  };
}
