// What every controller is given: the clients, the caches and the shared fleet state. Controllers
// never import each other; what they share lives here.
import type { Logger } from 'pino';
import type { ReferenceResolver } from '../plan/references.js';
import type { Applier } from '../runtime/apply.js';
import type { Clock } from '../runtime/clock.js';
import type { EventRecorder } from '../runtime/events.js';
import type { KubeClient } from '../runtime/kube-client.js';
import type { RuntimeMetrics } from '../runtime/metrics.js';
import type { AttestationVerdicts } from '../attestation/attestation-verifier.js';
import type { AuditVerdicts } from './audit-verdicts.js';
import type { FleetCaches } from './caches.js';
import type { NodeReportIntake } from './intake.js';
import type { FleetMetrics } from './metrics.js';
import type { PlanPublisher } from './plan-publisher.js';
import type { RolloutRecords } from './rollout-records.js';
import type { ServicePlacement } from './service-placement.js';

export interface FleetSettings {
  /** Counters and lastSeen in SecAINode status are refreshed at most this often (ms). */
  statusRefreshMs: number;
  /** After a restart, how long agents have to reconnect before their nodes show disconnected (ms). */
  agentReconnectGraceMs: number;
  /** When this process started (ms). */
  startedAt: number;
}

export interface FleetContext {
  client: KubeClient;
  applier: Applier;
  caches: FleetCaches;
  resolver: ReferenceResolver;
  plans: PlanPublisher;
  intake: NodeReportIntake;
  /** What the audit log controller concluded about each node's log; it goes into SecAINode status. */
  auditVerdicts?: AuditVerdicts;
  /** What remote attestation verified of each node's TPM; it goes into SecAINode status. */
  attestation?: AttestationVerdicts;
  rollouts: RolloutRecords;
  placement: ServicePlacement;
  events: EventRecorder;
  clock: Clock;
  logger: Logger;
  namespace: string;
  settings: FleetSettings;
  runtimeMetrics?: RuntimeMetrics;
  fleetMetrics?: FleetMetrics;
}

/** Roll-ups of fleet state wait until every fleet node has a plan computed by this process. */
export function plansPrimed(ctx: Pick<FleetContext, 'plans' | 'caches'>): boolean {
  return ctx.plans.primed(ctx.caches.nodes.keys());
}

/** How long a roll-up waits before trying again while plans are not primed. */
export const PRIMING_RETRY_MS = 500;
