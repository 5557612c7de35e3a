// A Model's fleet-wide status from what each node reports about it and whether its plan asks for
// it: counts by state, a phase, the first rejection, and conditions.
import type { Model, ModelStatus, NodeModelStatus } from '../../../../api/gen/crd-types.js';
import { setConditions, type ConditionInput } from '../../runtime/conditions.js';

export const Reason = {
  AllNodesTrusted: 'AllNodesTrusted',
  Distributing: 'Distributing',
  Pending: 'Pending',
  NoNodesSelected: 'NoNodesSelected',
  Rejected: 'Rejected',
  Revoked: 'Revoked',
  Removing: 'Removing',
  Resolved: 'Resolved',
} as const;

export interface ModelNodeView {
  node: string;
  /** Whether the node's plan asks it to hold the model. */
  desired: boolean;
  /** What the node reports about an artifact of this name, if anything. */
  reported?: NodeModelStatus;
}

export interface ModelStatusInputs {
  model: Model;
  nodes: readonly ModelNodeView[];
  /** Whether the signature material resolves, and if not why (reason, message). */
  unresolved?: { reason: string; message: string };
  /** Nodes that still report the artifact while the Model is being deleted. */
  removingFrom?: readonly string[];
  existing: ModelStatus | undefined;
  now: number;
}

const IN_PROGRESS = new Set(['Pending', 'Fetching', 'Scanning']);

export function computeModelStatus(inputs: ModelStatusInputs): ModelStatus {
  const { model, nodes } = inputs;
  // A node reporting another digest under this name holds another artifact: it does not count.
  const ours = nodes.map((n) => ({ ...n, reported: n.reported?.sha256 === model.spec.sha256 ? n.reported : undefined }));
  const stateIs = (state: string) => ours.filter((n) => n.reported?.state === state);
  const trusted = stateIs('Trusted').length;
  const rejectedNodes = stateIs('Rejected').sort((a, b) => (a.node < b.node ? -1 : 1));
  const contained = stateIs('Contained').length;
  const desired = ours.filter((n) => n.desired).length;
  const pending = ours.filter((n) => n.desired && !['Trusted', 'Rejected', 'Contained'].includes(n.reported?.state ?? '')).length;
  const moving = ours.some((n) => n.desired && IN_PROGRESS.has(n.reported?.state ?? '') && n.reported?.state !== 'Pending');

  let phase: NonNullable<ModelStatus['phase']>;
  if (model.spec.revoked) phase = 'Revoked';
  else if (rejectedNodes.length > 0) phase = 'Rejected';
  else if (desired === 0) phase = 'Pending';
  else if (ours.filter((n) => n.desired && n.reported?.state === 'Trusted').length === desired) phase = 'Trusted';
  else if (trusted > 0 || moving) phase = 'Distributing';
  else phase = 'Pending';

  const first = rejectedNodes[0];
  const generation = model.metadata.generation ?? 0;
  const ready = (ok: boolean, reason: string, message: string): ConditionInput => ({ type: 'Ready', status: ok ? 'True' : 'False', reason, message });
  let readiness: ConditionInput;
  if (inputs.removingFrom) {
    readiness = ready(false, Reason.Removing, `being deleted: waiting for ${inputs.removingFrom.length} node(s) to confirm removal`);
  } else if (phase === 'Revoked') {
    readiness = ready(false, Reason.Revoked, `revoked (${model.spec.revokedReason ?? 'no reason given'}); ${contained} node(s) confirmed containment`);
  } else if (inputs.unresolved) {
    readiness = ready(false, inputs.unresolved.reason, `no node can verify it: ${inputs.unresolved.message}`);
  } else if (phase === 'Rejected') {
    readiness = ready(false, Reason.Rejected, `node ${first?.node} rejected it at stage ${first?.reported?.stage ?? 'unknown'}: ${first?.reported?.reason ?? 'no reason given'}`);
  } else if (phase === 'Trusted') {
    readiness = ready(true, Reason.AllNodesTrusted, `trusted on all ${desired} node(s) that must hold it`);
  } else if (desired === 0) {
    readiness = ready(false, Reason.NoNodesSelected, 'no fleet node must hold it (placement and services select none)');
  } else {
    readiness = ready(false, phase === 'Distributing' ? Reason.Distributing : Reason.Pending, `trusted on ${trusted} of ${desired} node(s)`);
  }
  const resolved: ConditionInput = inputs.unresolved
    ? { type: 'Resolved', status: 'False', reason: inputs.unresolved.reason, message: inputs.unresolved.message }
    : { type: 'Resolved', status: 'True', reason: Reason.Resolved, message: model.spec.signature ? 'signature material resolved' : 'no signature material to resolve' };

  return {
    observedGeneration: generation,
    phase,
    nodes: { desired, trusted, pending, rejected: rejectedNodes.length, contained },
    ...(first?.reported
      ? {
          rejection: {
            node: first.node.slice(0, 253),
            stage: (first.reported.stage ?? 'unknown').slice(0, 64),
            reason: (first.reported.reason ?? 'Unknown').slice(0, 128),
            ...(first.reported.message ? { message: first.reported.message.slice(0, 1024) } : {}),
          },
        }
      : {}),
    conditions: setConditions(inputs.existing?.conditions, [readiness, resolved].map((c) => ({ ...c, observedGeneration: generation })), inputs.now),
  };
}
