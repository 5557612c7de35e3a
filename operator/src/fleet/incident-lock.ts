// A node whose audit log failed verification is treated as a security incident: when the VaultPolicy
// in its plan says relockOnIncident, the operator asks the agent to lock the vault (LockVault). It can
// only ever ask for a lock: there is no command that unlocks.
import type { SecAINode } from '../../../api/gen/crd-types.js';
import type { Logger } from 'pino';
import type { EventRecorder } from '../runtime/events.js';
import type { AgentCommander, AuditVerdict } from './audit-verdicts.js';
import type { PlanPublisher } from './plan-publisher.js';

export interface IncidentLockDeps {
  plans: PlanPublisher;
  commander: () => AgentCommander | undefined;
  secaiNode: (node: string) => SecAINode | undefined;
  events: EventRecorder;
  logger: Logger;
  timeoutMs?: number;
}

export async function lockVaultOnAuditFailure(deps: IncidentLockDeps, node: string, verdict: AuditVerdict): Promise<void> {
  const vault = deps.plans.current(node)?.plan.vault;
  const commander = deps.commander();
  if (!vault?.relockOnIncident || !commander || !verdict.failure) return;
  const reason = `audit log verification failed (${verdict.failure.reason})`;
  const log = deps.logger.child({ node, component: 'incident-lock' });
  const obj = deps.secaiNode(node);
  let outcome: string;
  try {
    const answer = await commander.sendCommand(node, { $case: 'lockVault', value: { reason } }, deps.timeoutMs ?? 30_000);
    outcome = answer.error;
  } catch (err) {
    outcome = (err as Error).message;
  }
  if (outcome) {
    log.warn({ err: outcome, policy: vault.policy }, 'could not have the vault locked after an audit failure');
    if (obj) await deps.events.record(obj, 'Warning', 'VaultLockFailed', 'LockVault', `VaultPolicy ${vault.policy} asks for a lock on incident: ${reason}; the agent answered: ${outcome}`.slice(0, 1024));
    return;
  }
  log.warn({ policy: vault.policy }, 'vault locked after an audit failure');
  if (obj) await deps.events.record(obj, 'Normal', 'VaultLocked', 'LockVault', `VaultPolicy ${vault.policy} asks for a lock on incident: ${reason}; the agent locked the vault`);
}
