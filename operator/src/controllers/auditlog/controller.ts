// Wiring of the audit log controller: a node is queued whenever its agent connects, reports or
// leaves, and when an administrator re-baselines it. The work queue gives it what the other
// controllers have: one reconcile per node at a time, deduplicated marks, backoff after errors,
// and controller-runtime's metrics.
import { Controller } from '../../runtime/controller.js';
import type { RuntimeMetrics } from '../../runtime/metrics.js';
import type { Logger } from 'pino';
import type { NodeReportIntake } from '../../fleet/intake.js';
import { AuditLogReconciler, type AuditLogDeps } from './reconcile.js';

export const AUDIT_LOG_CONTROLLER = 'auditlog';

/** Verifications in flight at once across the fleet (each is one command round trip). */
export const DEFAULT_AUDIT_CONCURRENCY = 16;

export interface AuditLogControllerDeps extends AuditLogDeps {
  intake: Pick<NodeReportIntake, 'onChange'>;
  logger: Logger;
  runtimeMetrics?: RuntimeMetrics;
  maxConcurrentReconciles?: number;
}

export function createAuditLogController(deps: AuditLogControllerDeps): Controller {
  const reconciler = new AuditLogReconciler(deps);
  const controller = new Controller({
    name: AUDIT_LOG_CONTROLLER,
    reconcile: (node, rc) => reconciler.reconcile(node, rc),
    logger: deps.logger,
    clock: deps.clock,
    maxConcurrentReconciles: deps.maxConcurrentReconciles ?? DEFAULT_AUDIT_CONCURRENCY,
    ...(deps.runtimeMetrics ? { metrics: deps.runtimeMetrics } : {}),
  });
  deps.intake.onChange((node) => controller.enqueue(node));
  deps.verdicts.onWork((node) => controller.enqueue(node));
  return controller;
}
