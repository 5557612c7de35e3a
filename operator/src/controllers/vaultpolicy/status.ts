// A VaultPolicy's status: the nodes it selects, those where it wins over other policies (applied),
// and how many of those report a compliant vault, with non-compliance reasons counted.
import type { NodeVaultStatus, VaultPolicyStatus } from '../../../../api/gen/crd-types.js';
import { setConditions, type ConditionInput } from '../../runtime/conditions.js';

export const Reason = {
  AllNodesCompliant: 'AllNodesCompliant',
  NodesNotCompliant: 'NodesNotCompliant',
  AwaitingReports: 'AwaitingReports',
  NoMatchingNodes: 'NoMatchingNodes',
  ShadowedEverywhere: 'ShadowedEverywhere',
  ShadowedByHigherPriority: 'ShadowedByHigherPriority',
  NotShadowed: 'NotShadowed',
} as const;

export interface VaultNodeView {
  node: string;
  /** The VaultPolicy the node's plan applies (this one or a winner over it). */
  appliedPolicy?: string;
  reported?: NodeVaultStatus;
}

export interface VaultStatusInputs {
  policy: string;
  generation: number;
  /** The nodes this policy's selector matches. */
  matched: readonly VaultNodeView[];
  existing: VaultPolicyStatus | undefined;
  now: number;
}

const MAX_REASONS = 32;

export function computeVaultStatus(inputs: VaultStatusInputs): VaultPolicyStatus {
  const applied = inputs.matched.filter((n) => n.appliedPolicy === inputs.policy);
  const shadowed = inputs.matched.filter((n) => n.appliedPolicy !== undefined && n.appliedPolicy !== inputs.policy);
  // A report about another policy (an older plan) says nothing about this one.
  const reportedHere = applied.filter((n) => n.reported?.policy === inputs.policy);
  const compliant = reportedHere.filter((n) => n.reported?.compliant).length;
  const nonCompliantNodes = reportedHere.filter((n) => !n.reported?.compliant);
  const counts = new Map<string, number>();
  for (const n of nonCompliantNodes) {
    const reasons = n.reported?.reasons?.length ? n.reported.reasons : ['Unspecified'];
    for (const r of new Set(reasons.map((x) => x.slice(0, 128)))) counts.set(r, (counts.get(r) ?? 0) + 1);
  }
  const reasons = [...counts.entries()]
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1))
    .slice(0, MAX_REASONS)
    .map(([reason, nodes]) => ({ reason, nodes }));
  const unknown = applied.length - compliant - nonCompliantNodes.length;

  let ready: ConditionInput;
  if (inputs.matched.length === 0) ready = { type: 'Ready', status: 'True', reason: Reason.NoMatchingNodes, message: 'the selector matches no fleet node' };
  else if (applied.length === 0) ready = { type: 'Ready', status: 'False', reason: Reason.ShadowedEverywhere, message: 'a higher-priority VaultPolicy applies on every matching node' };
  else if (nonCompliantNodes.length > 0) {
    ready = { type: 'Ready', status: 'False', reason: Reason.NodesNotCompliant, message: `${nonCompliantNodes.length} of ${applied.length} node(s) are not compliant: ${reasons.map((r) => r.reason).join(', ')}` };
  } else if (unknown > 0) ready = { type: 'Ready', status: 'False', reason: Reason.AwaitingReports, message: `${unknown} of ${applied.length} node(s) have not reported against this policy` };
  else ready = { type: 'Ready', status: 'True', reason: Reason.AllNodesCompliant, message: `all ${applied.length} node(s) comply` };

  const winners = [...new Set(shadowed.map((n) => n.appliedPolicy))].sort();
  const shadow: ConditionInput = shadowed.length
    ? { type: 'Shadowed', status: 'True', reason: Reason.ShadowedByHigherPriority, message: `shadowed on ${shadowed.length} node(s) by ${winners.join(', ')}` }
    : { type: 'Shadowed', status: 'False', reason: Reason.NotShadowed, message: 'applies on every node it selects' };

  return {
    observedGeneration: inputs.generation,
    nodes: { matched: inputs.matched.length, applied: applied.length, compliant, nonCompliant: nonCompliantNodes.length, unknown },
    ...(reasons.length ? { nonCompliantReasons: reasons } : {}),
    conditions: setConditions(inputs.existing?.conditions, [ready, shadow].map((c) => ({ ...c, observedGeneration: inputs.generation })), inputs.now),
  };
}
