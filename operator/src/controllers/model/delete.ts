// Deleting a Model: it has already dropped out of every plan; the deletion completes (the finalizer
// goes) once no node reports holding the artifact any more. A node that left the fleet has no
// SecAINode and so no longer counts.
import { API_VERSION } from '../../../../api/crd/common.js';
import { resourcePath } from '../../../../api/crd/paths.js';
import type { Model, ModelStatus } from '../../../../api/gen/crd-types.js';
import type { ModelControllerContext } from './context.js';
import { MODEL_FINALIZER } from '../../fleet/names.js';
import type { ReconcileContext } from '../../runtime/controller.js';
import { hasFinalizer, removeFinalizer } from '../../runtime/finalizers.js';
import { computeModelStatus } from './status.js';

export function nodesStillHolding(ctx: ModelControllerContext, model: Model): string[] {
  return ctx.caches.secaiNodes
    .list()
    .filter((n) => n.status?.models?.some((m) => m.name === model.metadata.name && m.sha256 === model.spec.sha256))
    .map((n) => n.metadata.name ?? '')
    .sort();
}

export async function reconcileModelDeletion(ctx: ModelControllerContext, model: Model, rc: ReconcileContext): Promise<void> {
  if (!hasFinalizer(model, MODEL_FINALIZER)) return;
  const name = model.metadata.name ?? '';
  const path = resourcePath('models', name);
  const holding = nodesStillHolding(ctx, model);
  if (holding.length === 0) {
    await removeFinalizer(ctx.client, path, model, MODEL_FINALIZER);
    ctx.applier.forget(path);
    rc.log.info('no node holds the artifact any more; deletion completes');
    await ctx.events.record(model, 'Normal', 'Removed', 'Delete', 'every node confirmed removal');
    return;
  }
  const status = computeModelStatus({
    model,
    nodes: holding.map((node) => ({ node, desired: false, reported: ctx.caches.secaiNodes.get(node)?.status?.models?.find((m) => m.name === name) })),
    removingFrom: holding,
    existing: ctx.applier.observedStatus<ModelStatus>(path, model),
    now: ctx.clock.now(),
  });
  await ctx.applier.applyStatus({ path, apiVersion: API_VERSION, kind: 'Model', name }, status, model);
}
