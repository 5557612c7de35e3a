// Wiring of the InferenceService controller: reconsidered when it changes, when nodes report or
// their plans change, and when Models or Secrets change.
import type { InferenceServiceControllerContext } from './context.js';
import { Controller } from '../../runtime/controller.js';
import { reconcileInferenceService } from './reconcile.js';

export const INFERENCE_SERVICE_CONTROLLER = 'inferenceservice';

export function createInferenceServiceController(ctx: InferenceServiceControllerContext): Controller {
  const controller = new Controller({
    name: INFERENCE_SERVICE_CONTROLLER,
    reconcile: (key) => reconcileInferenceService(ctx, key),
    logger: ctx.logger,
    clock: ctx.clock,
    ...(ctx.runtimeMetrics ? { metrics: ctx.runtimeMetrics } : {}),
  });
  const everyService = () => ctx.caches.inferenceServices.keys();
  controller.watch(ctx.caches.inferenceServices, (s) => [s.metadata.name ?? '']);
  controller.watch(ctx.caches.secaiNodes, everyService);
  controller.watch(ctx.caches.models, everyService);
  controller.watch(ctx.caches.secrets, everyService);
  controller.watch(ctx.caches.nodes, everyService);
  ctx.plans.onPublish(() => {
    for (const key of everyService()) controller.enqueue(key);
  });
  return controller;
}
