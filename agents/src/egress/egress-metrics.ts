import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface EgressMetrics {
  applyDuration: Histogram;
  applyFailures: Counter<'reason'>;
  droppedPackets: Counter;
  auditedPackets: Counter;
  allowEntries: Gauge;
  fqdnRefreshFailures: Counter;
}

export const EGRESS_FAILURE_REASONS = ['render', 'nft', 'verify', 'repair'] as const;

export function egressMetrics(registry: Registry): EgressMetrics {
  const registers = [registry];
  const applyFailures = new Counter({
    name: 'secai_agent_egress_apply_failures_total',
    help: 'Egress tables that could not be applied (render, nft), whose read-back differed from the intent (verify), or whose drift could not be repaired (repair).',
    labelNames: ['reason'] as const,
    registers,
  });
  for (const reason of EGRESS_FAILURE_REASONS) applyFailures.inc({ reason }, 0);
  return {
    applyDuration: new Histogram({
      name: 'secai_agent_egress_apply_duration_seconds',
      help: 'Time to apply the egress table with nft and verify its read-back.',
      // The fleet's bars: 150 ms at 10,000 entries, 1 s at 100,000.
      buckets: [0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    applyFailures,
    droppedPackets: new Counter({
      name: 'secai_agent_egress_dropped_packets_total',
      help: 'Outbound packets the egress table dropped or rejected (DNS included).',
      registers,
    }),
    auditedPackets: new Counter({
      name: 'secai_agent_egress_audited_packets_total',
      help: 'Outbound packets audit mode let through that enforce mode would have dropped.',
      registers,
    }),
    allowEntries: new Gauge({ name: 'secai_agent_egress_allow_entries', help: 'Elements in the kernel allow and Tor sets.', registers }),
    fqdnRefreshFailures: new Counter({
      name: 'secai_agent_egress_fqdn_refresh_failures_total',
      help: 'FQDN refreshes that could not resolve a name or update its set elements.',
      registers,
    }),
  };
}
