// Reconciles one InferenceService: rolls up where it is served into its status.
import { API_VERSION } from '../../../../api/crd/common.js';
import { resourcePath } from '../../../../api/crd/paths.js';
import type { InferenceServiceStatus } from '../../../../api/gen/crd-types.js';
import { plansPrimed, PRIMING_RETRY_MS } from '../../fleet/context.js';
import type { InferenceServiceControllerContext } from './context.js';
import { isDeleting } from '../../plan/models.js';
import { conditionTransition } from '../../runtime/conditions.js';
import type { ReconcileResult } from '../../runtime/controller.js';
import { computeServiceStatus } from './status.js';

export async function reconcileInferenceService(ctx: InferenceServiceControllerContext, name: string): Promise<ReconcileResult | void> {
  const path = resourcePath('inferenceservices', name);
  const service = ctx.caches.inferenceServices.get(name);
  if (!service || isDeleting(service)) {
    ctx.applier.forget(path);
    return;
  }
  if (!plansPrimed(ctx)) return { requeueAfterMs: PRIMING_RETRY_MS };
  const chosen = ctx.placement.assignments().get(name) ?? [];
  const token = ctx.resolver.secretKeySha256(service.spec.listen.authTokenSecretRef);
  const before = ctx.applier.observedStatus<InferenceServiceStatus>(path, service);
  const status = computeServiceStatus({
    generation: service.metadata.generation ?? 0,
    nodes: chosen.map((node) => {
      const excluded = ctx.plans.current(node)?.excludedServices.find((e) => e.name === name);
      const reported = ctx.caches.secaiNodes.get(node)?.status?.inference?.find((s) => s.service === name);
      return { node, ...(excluded ? { excluded } : {}), ...(reported ? { reported } : {}) };
    }),
    token: token.ok ? { ok: true } : { ok: false, reason: token.reason, message: token.message },
    existing: before,
    now: ctx.clock.now(),
  });
  await ctx.applier.applyStatus({ path, apiVersion: API_VERSION, kind: 'InferenceService', name }, status, service);
  for (const type of ['Ready', 'AuthTokenResolved']) {
    const change = conditionTransition(before?.conditions, status.conditions, type);
    // A new service's Ready=False is its starting state; a token that does not resolve is news at once.
    const announced = before?.conditions?.some((c) => c.type === type) || (type === 'AuthTokenResolved' && change?.status === 'False');
    if (change && announced) {
      await ctx.events.record(service, change.status === 'True' ? 'Normal' : 'Warning', change.reason, 'RollUp', change.message);
    }
  }
}
