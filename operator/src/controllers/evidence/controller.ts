// Wiring of the evidence controller: a SecAINode is queued when it changes (the request is an
// annotation on it) and when its agent connects (a request may wait for the agent).
import type { Logger } from 'pino';
import type { SecAINode } from '../../../../api/gen/crd-types.js';
import type { NodeReportIntake } from '../../fleet/intake.js';
import { Controller } from '../../runtime/controller.js';
import type { Informer } from '../../runtime/informer.js';
import type { RuntimeMetrics } from '../../runtime/metrics.js';
import { EVIDENCE_REQUEST_ANNOTATION, EvidenceReconciler, type EvidenceDeps } from './reconcile.js';

export const EVIDENCE_CONTROLLER = 'evidence';

export interface EvidenceControllerDeps extends EvidenceDeps {
  secaiNodes: Informer<SecAINode>;
  intake: Pick<NodeReportIntake, 'onChange'>;
  logger: Logger;
  runtimeMetrics?: RuntimeMetrics;
}

export function createEvidenceController(deps: EvidenceControllerDeps): Controller {
  const reconciler = new EvidenceReconciler(deps);
  const controller = new Controller({
    name: EVIDENCE_CONTROLLER,
    reconcile: (node, rc) => reconciler.reconcile(node, rc),
    logger: deps.logger,
    clock: deps.clock,
    maxConcurrentReconciles: 2,
    ...(deps.runtimeMetrics ? { metrics: deps.runtimeMetrics } : {}),
  });
  controller.watch(deps.secaiNodes, (n) => (n.metadata.annotations?.[EVIDENCE_REQUEST_ANNOTATION] !== undefined ? [n.metadata.name ?? ''] : []));
  deps.intake.onChange((node) => {
    if (deps.secaiNode(node)?.metadata.annotations?.[EVIDENCE_REQUEST_ANNOTATION] !== undefined) controller.enqueue(node);
  });
  return controller;
}
