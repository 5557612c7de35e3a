// The audit duty: signs a tree head of the node's audit log whenever it grew, reports the latest
// head and answers the operator's requests for a fresh head and for consistency proofs. Each run
// also checks the segment files against what the log wrote: a sealed segment changed or gone, or
// an open segment of another length, is drift. History cannot be repaired on the node; the
// operator's consistency proofs decide whether it still extends every head it verified. The log
// outlives the duties (every duty records into it while stopping); its owner closes it last.
import { DutyStatus, type Command, type CommandResult, type NodePlan, type Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DriftKind, DutyReason } from '../../../../api/proto/duty-results.js';
import type { AuditLog } from '../../audit/audit-log.js';
import type { Duty, DutyContext, DutyOutcome } from '../node-agent.js';

/** How often a new head is signed (when entries were added) and the segment files are checked. */
export const AUDIT_HEAD_INTERVAL_MS = 60_000;

export class AuditDuty implements Duty {
  readonly name = 'audit' as const;
  /** Changes already reported: they stay on disk, and count as drift once. */
  private readonly reported = new Set<string>();

  constructor(
    private readonly log: AuditLog,
    readonly resyncMs = AUDIT_HEAD_INTERVAL_MS,
  ) {}

  async converge(_plan: NodePlan, ctx: DutyContext): Promise<DutyOutcome> {
    const changes = await this.log.checkSegments();
    const fresh = changes.filter((change) => !this.reported.has(change));
    if (fresh.length > 0) await ctx.drift(DriftKind.AuditLogChanged, fresh.join('; '));
    for (const change of fresh) this.reported.add(change);
    if (this.log.grewSinceStoredHead) await this.log.signTreeHead();
    const message = changes.length > 0 ? `the log's files changed behind it: ${changes.join('; ')}` : `${this.log.size} entries, segment files as written`;
    return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message };
  }

  async contribute(report: Report): Promise<void> {
    report.auditHead = await this.log.signTreeHead();
  }

  async handleCommand(command: Command): Promise<CommandResult | undefined> {
    const body = command.body;
    if (body?.$case === 'signTreeHead') {
      return { id: command.id, error: '', body: { $case: 'treeHead', value: await this.log.signTreeHead() } };
    }
    if (body?.$case === 'proveConsistency') {
      if (body.value.fromSize > this.log.size) {
        // The operator verified a larger tree than the node now has: history was lost or rewritten.
        return { id: command.id, error: `log has ${this.log.size} entries, fewer than ${body.value.fromSize}`, body: undefined };
      }
      return { id: command.id, error: '', body: { $case: 'consistencyProof', value: await this.log.proveConsistency(body.value.fromSize) } };
    }
    return undefined;
  }
}
