// Reconciles one Model: guards its deletion with a finalizer, rolls up what nodes report into its
// status, and announces phase changes.
import { API_VERSION } from '../../../../api/crd/common.js';
import { resourcePath } from '../../../../api/crd/paths.js';
import type { Model, ModelStatus } from '../../../../api/gen/crd-types.js';
import { plansPrimed, PRIMING_RETRY_MS } from '../../fleet/context.js';
import type { ModelControllerContext } from './context.js';
import { MODEL_FINALIZER } from '../../fleet/names.js';
import { isDeleting, modelPlanOf } from '../../plan/models.js';
import { conditionTransition } from '../../runtime/conditions.js';
import type { ReconcileContext, ReconcileResult } from '../../runtime/controller.js';
import { addFinalizer } from '../../runtime/finalizers.js';
import { reconcileModelDeletion } from './delete.js';
import { computeModelStatus, type ModelNodeView } from './status.js';

const PHASE_EVENTS: Partial<Record<NonNullable<ModelStatus['phase']>, { type: 'Normal' | 'Warning'; reason: string }>> = {
  Distributing: { type: 'Normal', reason: 'Distributing' },
  Trusted: { type: 'Normal', reason: 'Trusted' },
  Rejected: { type: 'Warning', reason: 'Rejected' },
  Revoked: { type: 'Warning', reason: 'Revoked' },
};

export function modelNodeViews(ctx: ModelControllerContext, name: string): ModelNodeView[] {
  return ctx.caches.nodes.keys().map((node) => ({
    node,
    desired: ctx.plans.current(node)?.plan.models.some((m) => m.name === name) ?? false,
    reported: ctx.caches.secaiNodes.get(node)?.status?.models?.find((m) => m.name === name),
  }));
}

export async function reconcileModel(ctx: ModelControllerContext, name: string, rc: ReconcileContext): Promise<ReconcileResult | void> {
  const path = resourcePath('models', name);
  const model = ctx.caches.models.get(name);
  if (!model) {
    ctx.applier.forget(path);
    return;
  }
  if (isDeleting(model)) return reconcileModelDeletion(ctx, model, rc);
  // The update that adds the finalizer wakes this reconcile again.
  if (await addFinalizer(ctx.client, path, model, MODEL_FINALIZER)) return;
  if (!plansPrimed(ctx)) return { requeueAfterMs: PRIMING_RETRY_MS };

  const resolution = modelPlanOf(model, ctx.resolver);
  const before = ctx.applier.observedStatus<ModelStatus>(path, model);
  const status = computeModelStatus({
    model,
    nodes: modelNodeViews(ctx, name),
    ...(resolution.ok ? {} : { unresolved: { reason: resolution.reason, message: resolution.message } }),
    existing: before,
    now: ctx.clock.now(),
  });
  await ctx.applier.applyStatus({ path, apiVersion: API_VERSION, kind: 'Model', name }, status, model);
  await announce(ctx, model, before, status);
}

async function announce(ctx: ModelControllerContext, model: Model, before: ModelStatus | undefined, after: ModelStatus): Promise<void> {
  const phase = after.phase;
  const event = phase ? PHASE_EVENTS[phase] : undefined;
  if (event && phase !== before?.phase) {
    const ready = after.conditions?.find((c) => c.type === 'Ready');
    await ctx.events.record(model, event.type, event.reason, 'RollUp', ready?.message ?? phase ?? '');
  }
  const resolved = conditionTransition(before?.conditions, after.conditions, 'Resolved');
  if (resolved?.status === 'False') await ctx.events.record(model, 'Warning', resolved.reason, 'ResolveSignature', resolved.message);
}
