// SIMULATION ONLY. An egress duty that renders the node's ruleset exactly as a real node does but
// keeps it in memory instead of the kernel, so that one process can play a thousand agents in scale
// tests. Its reports carry the simulated ruleset's digest; nothing here enforces anything.
import { DutyStatus, EgressMode, EgressPlan, type EgressReport, type NodePlan, type Report } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DutyReason } from '../../../api/proto/duty-results.js';
import type { Duty, DutyOutcome } from '../agent/node-agent.js';
import { egressTableDigest } from '../egress/egress-table.js';
import { renderEgressRuleset } from '../egress/render-egress-ruleset.js';

/** A simulated table cannot drift: it is re-checked rarely. */
const SIMULATED_RESYNC_MS = 5 * 60_000;

export class SimulatedEgressDuty implements Duty {
  readonly name = 'egress' as const;
  readonly resyncMs = SIMULATED_RESYNC_MS;
  private report: EgressReport = { mode: EgressMode.EGRESS_MODE_UNSPECIFIED, rulesetDigest: '', droppedPackets: 0, auditedPackets: 0, allowEntries: 0 };
  private renderedKey: string | undefined;

  /** When each plan generation was enforced (in memory): scale tests read this. */
  readonly enforcedAt = new Map<number, number>();

  constructor(private readonly inboundTcpPorts: readonly number[] = []) {}

  async converge(plan: NodePlan): Promise<DutyOutcome> {
    const egress = plan.egress ?? { mode: EgressMode.EGRESS_MODE_ENFORCE, allow: [], torTransPort: 0, torDnsPort: 0, policies: [] };
    const key = JSON.stringify(EgressPlan.toJSON(egress));
    if (key !== this.renderedKey) {
      // Names are not resolved in simulation: host entries render as empty sets, as for a node whose
      // resolvers have not answered yet (fail closed).
      const rendered = renderEgressRuleset(egress, new Map(), { inboundTcpPorts: this.inboundTcpPorts });
      this.report = { mode: egress.mode, rulesetDigest: egressTableDigest(rendered.intent), droppedPackets: 0, auditedPackets: 0, allowEntries: rendered.allowEntries };
      this.renderedKey = key;
    }
    if (!this.enforcedAt.has(plan.generation)) this.enforcedAt.set(plan.generation, Date.now());
    return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message: 'simulated table rendered', readBackDigest: this.report.rulesetDigest };
  }

  async contribute(report: Report): Promise<void> {
    report.egress = { ...this.report };
  }
}
