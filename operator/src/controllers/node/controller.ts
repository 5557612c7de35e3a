// Wiring of the Node → SecAINode controller: which changes wake which node. A change that concerns
// one node queues that node; a fleet-wide change replans every node at once (PlanFanOut), then
// queues them all for their status.
import type { SecAINode } from '../../../../api/gen/crd-types.js';
import type { ConfigMap } from '../../fleet/caches.js';
import type { NodeControllerContext } from './context.js';
import { ROLLOUT_RECORD_LABEL } from '../../fleet/names.js';
import { isDeleting } from '../../plan/models.js';
import { Controller } from '../../runtime/controller.js';
import type { Informer, KubeObject } from '../../runtime/informer.js';
import { PlanFanOut } from './plan-fanout.js';
import { NodePlanner } from './planner.js';
import { NodeReconciler } from './reconcile.js';

export const NODE_CONTROLLER = 'secainode';

/** Node reconciles in flight: each spends its time waiting on status and taint writes. */
export const DEFAULT_NODE_CONCURRENCY = 16;

export function createNodeController(ctx: NodeControllerContext, opts: { maxConcurrentReconciles?: number } = {}): Controller {
  const planner = new NodePlanner(ctx);
  const reconciler = new NodeReconciler(ctx, planner);
  const controller = new Controller({
    name: NODE_CONTROLLER,
    reconcile: (key, rc) => reconciler.reconcile(key, rc),
    logger: ctx.logger,
    clock: ctx.clock,
    maxConcurrentReconciles: opts.maxConcurrentReconciles ?? DEFAULT_NODE_CONCURRENCY,
    ...(ctx.runtimeMetrics ? { metrics: ctx.runtimeMetrics } : {}),
  });
  const fanOut = new PlanFanOut({ ctx, planner, enqueue: (node) => controller.enqueue(node), active: () => controller.running });
  const { caches } = ctx;
  const replanFleet = () => fanOut.request();

  controller.watch(caches.nodes, (n) => [n.metadata.name ?? '']);
  controller.watch(caches.secaiNodes as Informer<SecAINode>, (n) => [n.metadata.name ?? '']);
  // A cordon changes where services are placed, which can move them between nodes.
  caches.secaiNodes.addHandler({ onUpdate: (a, b) => void ((a.spec?.cordoned ?? false) !== (b.spec?.cordoned ?? false) && replanFleet()) });
  for (const informer of [caches.models, caches.vaultPolicies, caches.inferenceServices, caches.secrets]) {
    (informer as unknown as Informer<KubeObject>).addHandler({ onAdd: replanFleet, onUpdate: replanFleet, onDelete: replanFleet });
  }
  // An EgressPolicy reaches plans through its rollout record (below), except when it goes: deleting
  // a policy takes effect everywhere at once.
  caches.egressPolicies.addHandler({ onUpdate: (a, b) => void (isDeleting(a) !== isDeleting(b) && replanFleet()), onDelete: replanFleet });
  // Rollout records are ConfigMaps too; their changes come through ctx.rollouts.
  const referenced = (cm: ConfigMap) => cm.metadata.labels?.[ROLLOUT_RECORD_LABEL] !== 'true';
  caches.configMaps.addHandler({
    onAdd: (cm) => void (referenced(cm) && replanFleet()),
    onUpdate: (a, b) => void ((referenced(a) || referenced(b)) && replanFleet()),
    onDelete: (cm) => void (referenced(cm) && replanFleet()),
  });
  ctx.rollouts.onChange(replanFleet);
  ctx.intake.onChange((node) => controller.enqueue(node));
  ctx.auditVerdicts?.onVerdict((node) => controller.enqueue(node));
  ctx.attestation?.onVerdict((node) => controller.enqueue(node));
  return controller;
}
