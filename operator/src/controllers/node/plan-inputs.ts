// Gathers, from the caches, everything computeNodePlan needs for one node.
import type { SecAINode } from '../../../../api/gen/crd-types.js';
import type { NodeControllerContext } from './context.js';
import type { Node } from '../../fleet/caches.js';
import type { EgressPolicyVersion } from '../../plan/egress.js';
import { isDeleting } from '../../plan/models.js';
import type { NodePlanInputs } from '../../plan/node-plan.js';

export function trustedDigestsOf(ctx: NodeControllerContext, name: string, secaiNode: SecAINode | undefined): Set<string> {
  const reported = ctx.intake.observations(name)?.report?.models ?? secaiNode?.status?.models ?? [];
  return new Set(reported.filter((m) => m.state === 'Trusted').map((m) => m.sha256));
}

export function planInputsFor(
  ctx: NodeControllerContext,
  node: Node,
  secaiNode: SecAINode | undefined,
): { inputs: NodePlanInputs; egressRevisions: Record<string, string | undefined> } {
  const name = node.metadata.name ?? '';
  const egressPolicies: EgressPolicyVersion[] = [];
  const egressRevisions: Record<string, string | undefined> = {};
  for (const policy of ctx.caches.egressPolicies.list()) {
    if (isDeleting(policy)) continue;
    const { version, revision } = ctx.rollouts.versionFor(policy, name);
    egressRevisions[policy.metadata.name ?? ''] = revision;
    if (version) egressPolicies.push(version);
  }
  return {
    inputs: {
      node: {
        name,
        labels: node.metadata.labels ?? {},
        cordoned: secaiNode?.spec?.cordoned ?? false,
        trustedDigests: trustedDigestsOf(ctx, name, secaiNode),
      },
      egressPolicies,
      vaultPolicies: ctx.caches.vaultPolicies.list().filter((p) => !isDeleting(p)),
      models: ctx.caches.models.list(),
      services: ctx.caches.inferenceServices.list().filter((s) => !isDeleting(s)),
      serviceAssignments: ctx.placement.assignments(),
      resolver: ctx.resolver,
    },
    egressRevisions,
  };
}
