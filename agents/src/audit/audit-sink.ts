// What the node's duties record in the tamper-evident audit log. The log itself (Merkle tree,
// signed tree heads, proofs) implements AuditSink; duties depend only on this interface.

/** Security-relevant acts, as DESIGN.md §5 lists them. */
export const AUDIT_EVENT_TYPES = [
  'plan.applied',
  'plan.rejected',
  'egress.applied',
  'egress.drops',
  'egress.repaired',
  'model.promoted',
  'model.rejected',
  'model.contained',
  'model.removed',
  'model.verified',
  'model.suspended',
  'model.reverified',
  'service.started',
  'service.stopped',
  'service.failed',
  'vault.locked',
  'vault.lock-failed',
  'vault.checked',
  'attestation.checked',
  'attestation.enrolled',
  'identity.refused',
  'agent.started',
  'drift.detected',
  'drift.repaired',
  'tor.exited',
] as const;

export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

/** Flat values only: counts, states, digests, names. Never prompts, responses, tokens or model bytes. */
export type AuditValue = string | number | boolean | null;

export interface AuditEvent {
  type: AuditEventType;
  /** What the event is about (a model digest, a service name, a plan generation). */
  subject?: string;
  data: Record<string, AuditValue>;
}

export interface AuditSink {
  record(event: AuditEvent): Promise<void>;
}

/** Keeps events in memory: for unit tests of duties and for simulated agents. */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEvent[] = [];

  async record(event: AuditEvent): Promise<void> {
    this.events.push(structuredClone(event));
  }
}
