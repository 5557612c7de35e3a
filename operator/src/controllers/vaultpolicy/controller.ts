// Wiring of the VaultPolicy controller: reconsidered when it changes, when Nodes or node reports
// change, and when plans change (another policy may now win).
import type { VaultPolicyControllerContext } from './context.js';
import { Controller } from '../../runtime/controller.js';
import { reconcileVaultPolicy } from './reconcile.js';

export const VAULT_POLICY_CONTROLLER = 'vaultpolicy';

export function createVaultPolicyController(ctx: VaultPolicyControllerContext): Controller {
  const controller = new Controller({
    name: VAULT_POLICY_CONTROLLER,
    reconcile: (key) => reconcileVaultPolicy(ctx, key),
    logger: ctx.logger,
    clock: ctx.clock,
    ...(ctx.runtimeMetrics ? { metrics: ctx.runtimeMetrics } : {}),
  });
  const everyPolicy = () => ctx.caches.vaultPolicies.keys();
  controller.watch(ctx.caches.vaultPolicies, everyPolicy);
  controller.watch(ctx.caches.secaiNodes, everyPolicy);
  controller.watch(ctx.caches.nodes, everyPolicy);
  ctx.plans.onPublish(() => {
    for (const key of everyPolicy()) controller.enqueue(key);
  });
  return controller;
}
