import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { AUDIT_EVENT_TYPES } from './audit-sink.js';

export interface AuditLogMetrics {
  entries: Counter<'type'>;
  treeSize: Gauge;
  signedHeads: Counter;
  lastSignedHead: Gauge;
  appendDuration: Histogram;
  appendErrors: Counter;
}

export function auditLogMetrics(registry: Registry): AuditLogMetrics {
  const registers = [registry];
  const entries = new Counter({
    name: 'secai_agent_audit_entries_total',
    help: 'Entries appended to the node audit log, by event type.',
    labelNames: ['type'] as const,
    registers,
  });
  // Every type starts at zero so that rate() and absent() behave from the first scrape.
  for (const type of AUDIT_EVENT_TYPES) entries.inc({ type }, 0);
  return {
    entries,
    treeSize: new Gauge({ name: 'secai_agent_audit_tree_size', help: 'Entries in the node audit log (Merkle tree size).', registers }),
    signedHeads: new Counter({ name: 'secai_agent_audit_signed_heads_total', help: 'Tree heads the node signed.', registers }),
    lastSignedHead: new Gauge({
      name: 'secai_agent_audit_last_signed_head_timestamp_seconds',
      help: 'Timestamp of the latest signed tree head.',
      registers,
    }),
    appendDuration: new Histogram({
      name: 'secai_agent_audit_append_duration_seconds',
      help: 'Time to append one entry, fsync included.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    appendErrors: new Counter({ name: 'secai_agent_audit_append_errors_total', help: 'Entries that could not be appended.', registers }),
  };
}
