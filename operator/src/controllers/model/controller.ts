// Wiring of the Model controller: a Model is reconsidered when it changes, when any node reports,
// when a ConfigMap or Secret it may refer to changes, and when any node's plan changes.
import type { ModelControllerContext } from './context.js';
import { Controller } from '../../runtime/controller.js';
import { reconcileModel } from './reconcile.js';

export const MODEL_CONTROLLER = 'model';

export function createModelController(ctx: ModelControllerContext): Controller {
  const controller = new Controller({
    name: MODEL_CONTROLLER,
    reconcile: (key, rc) => reconcileModel(ctx, key, rc),
    logger: ctx.logger,
    clock: ctx.clock,
    ...(ctx.runtimeMetrics ? { metrics: ctx.runtimeMetrics } : {}),
  });
  const everyModel = () => ctx.caches.models.keys();
  controller.watch(ctx.caches.models, (m) => [m.metadata.name ?? '']);
  controller.watch(ctx.caches.secaiNodes, everyModel);
  controller.watch(ctx.caches.configMaps, everyModel);
  controller.watch(ctx.caches.secrets, everyModel);
  ctx.plans.onPublish(() => {
    for (const key of everyModel()) controller.enqueue(key);
  });
  return controller;
}
