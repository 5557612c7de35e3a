// Wiring of the Node → SecAINode controller: which changes wake which node.
import type { SecAINode } from '../../../../api/gen/crd-types.js';
import type { FleetContext } from '../../fleet/context.js';
import { Controller } from '../../runtime/controller.js';
import type { Informer, KubeObject } from '../../runtime/informer.js';
import { NodeReconciler } from './reconcile.js';

export const NODE_CONTROLLER = 'secainode';

export function createNodeController(ctx: FleetContext, opts: { maxConcurrentReconciles?: number } = {}): Controller {
  const reconciler = new NodeReconciler(ctx);
  const controller = new Controller({
    name: NODE_CONTROLLER,
    reconcile: (key, rc) => reconciler.reconcile(key, rc),
    logger: ctx.logger,
    clock: ctx.clock,
    maxConcurrentReconciles: opts.maxConcurrentReconciles ?? 4,
    ...(ctx.runtimeMetrics ? { metrics: ctx.runtimeMetrics } : {}),
  });
  const { caches } = ctx;
  const fleetNodes = () => caches.nodes.keys();
  const everyNode = () => {
    for (const name of fleetNodes()) controller.enqueue(name);
  };

  controller.watch(caches.nodes, (n) => [n.metadata.name ?? '']);
  // A cordon changes where services are placed, which can move them between nodes.
  controller.watch(caches.secaiNodes as Informer<SecAINode>, (n) => [n.metadata.name ?? '']);
  caches.secaiNodes.addHandler({ onUpdate: (a, b) => void ((a.spec?.cordoned ?? false) !== (b.spec?.cordoned ?? false) && everyNode()) });
  const everyNodeOnChange = (informer: Informer<KubeObject>) => controller.watch(informer, () => fleetNodes());
  for (const informer of [caches.models, caches.egressPolicies, caches.vaultPolicies, caches.inferenceServices, caches.configMaps, caches.secrets]) {
    everyNodeOnChange(informer as unknown as Informer<KubeObject>);
  }
  ctx.rollouts.onChange(() => everyNode());
  ctx.intake.onChange((node) => controller.enqueue(node));
  return controller;
}
