// Reconciles one VaultPolicy: rolls up selection, conflicts and compliance into its status.
import { API_VERSION } from '../../../../api/crd/common.js';
import { resourcePath } from '../../../../api/crd/paths.js';
import type { VaultPolicyStatus } from '../../../../api/gen/crd-types.js';
import { plansPrimed, PRIMING_RETRY_MS } from '../../fleet/context.js';
import type { VaultPolicyControllerContext } from './context.js';
import { matchesSelector } from '../../plan/label-selector.js';
import { isDeleting } from '../../plan/models.js';
import { conditionTransition } from '../../runtime/conditions.js';
import type { ReconcileResult } from '../../runtime/controller.js';
import { computeVaultStatus } from './status.js';

export async function reconcileVaultPolicy(ctx: VaultPolicyControllerContext, name: string): Promise<ReconcileResult | void> {
  const path = resourcePath('vaultpolicies', name);
  const policy = ctx.caches.vaultPolicies.get(name);
  if (!policy || isDeleting(policy)) {
    ctx.applier.forget(path);
    return;
  }
  if (!plansPrimed(ctx)) return { requeueAfterMs: PRIMING_RETRY_MS };
  const matched = ctx.caches.nodes
    .list()
    .filter((n) => matchesSelector(policy.spec.nodeSelector, n.metadata.labels ?? {}))
    .map((n) => {
      const node = n.metadata.name ?? '';
      const appliedPolicy = ctx.plans.current(node)?.plan.vault?.policy;
      const reported = ctx.caches.secaiNodes.get(node)?.status?.vault;
      return { node, ...(appliedPolicy ? { appliedPolicy } : {}), ...(reported ? { reported } : {}) };
    });
  const before = ctx.applier.observedStatus<VaultPolicyStatus>(path, policy);
  const status = computeVaultStatus({ policy: name, generation: policy.metadata.generation ?? 0, matched, existing: before, now: ctx.clock.now() });
  await ctx.applier.applyStatus({ path, apiVersion: API_VERSION, kind: 'VaultPolicy', name }, status, policy);
  for (const type of ['Ready', 'Shadowed']) {
    const change = conditionTransition(before?.conditions, status.conditions, type);
    if (!change || !before?.conditions?.some((c) => c.type === type)) continue;
    const warning = (type === 'Ready' && change.status === 'False') || (type === 'Shadowed' && change.status === 'True');
    await ctx.events.record(policy, warning ? 'Warning' : 'Normal', change.reason, 'RollUp', change.message);
  }
}
