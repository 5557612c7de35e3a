// Wiring of the EgressPolicy controller: reconsidered when it changes, when fleet Nodes or node
// reports change, when plans change, and when its rollout record changes (or is orphaned).
import type { EgressPolicyControllerContext } from './context.js';
import { Controller } from '../../runtime/controller.js';
import { reconcileEgressPolicy } from './reconcile.js';

export const EGRESS_POLICY_CONTROLLER = 'egresspolicy';

export function createEgressPolicyController(ctx: EgressPolicyControllerContext): Controller {
  const controller = new Controller({
    name: EGRESS_POLICY_CONTROLLER,
    reconcile: (key, rc) => reconcileEgressPolicy(ctx, key, rc),
    logger: ctx.logger,
    clock: ctx.clock,
    ...(ctx.runtimeMetrics ? { metrics: ctx.runtimeMetrics } : {}),
  });
  const everyPolicy = () => ctx.caches.egressPolicies.keys();
  controller.watch(ctx.caches.egressPolicies, (p) => [p.metadata.name ?? '']);
  controller.watch(ctx.caches.nodes, everyPolicy);
  controller.watch(ctx.caches.secaiNodes, everyPolicy);
  // Records of deleted policies are found here and removed.
  controller.watch(ctx.caches.configMaps, () => ctx.rollouts.policies());
  ctx.plans.onPublish(() => {
    for (const key of everyPolicy()) controller.enqueue(key);
  });
  return controller;
}
