// SIMULATION ONLY. An egress duty that renders the node's ruleset exactly as a real node does but
// keeps it in memory instead of the kernel, so that one process can play a thousand agents in scale
// tests. Its reports carry the simulated ruleset's digest; nothing here enforces anything.
import { EgressMode, type EgressReport, type NodePlan, type Report } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { Duty } from '../agent/node-agent.js';
import { egressTableDigest } from '../egress/egress-table.js';
import { renderEgressRuleset } from '../egress/render-egress-ruleset.js';

export class SimulatedEgressDuty implements Duty {
  readonly name = 'egress (simulated)';
  private report: EgressReport = {
    mode: EgressMode.EGRESS_MODE_UNSPECIFIED,
    rulesetDigest: '',
    droppedPackets: 0,
    auditedPackets: 0,
    allowEntries: 0,
    error: '',
  };

  /** When each plan generation was enforced (in memory): scale tests read this. */
  readonly enforcedAt = new Map<number, number>();

  constructor(private readonly inboundTcpPorts: readonly number[] = []) {}

  async apply(plan: NodePlan): Promise<void> {
    const egress = plan.egress ?? { mode: EgressMode.EGRESS_MODE_ENFORCE, allow: [], torTransPort: 0, policies: [] };
    // Names are not resolved in simulation: host entries render as empty sets, as for a node whose
    // resolvers have not answered yet (fail closed).
    const rendered = renderEgressRuleset(egress, new Map(), { inboundTcpPorts: this.inboundTcpPorts });
    this.report = {
      mode: egress.mode,
      rulesetDigest: egressTableDigest(rendered.intent),
      droppedPackets: 0,
      auditedPackets: 0,
      allowEntries: rendered.allowEntries,
      error: '',
    };
    this.enforcedAt.set(plan.generation, Date.now());
  }

  async contribute(report: Report): Promise<void> {
    report.egress = { ...this.report };
  }
}
