// The audit duty: reports the latest signed tree head of the node's audit log and answers the
// operator's requests for a fresh head and for consistency proofs. The log outlives the duties
// (every duty records into it while stopping); its owner closes it last.
import type { Command, CommandResult, Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { AuditLog } from '../../audit/audit-log.js';
import type { Duty } from '../node-agent.js';

export class AuditDuty implements Duty {
  readonly name = 'audit';

  constructor(private readonly log: AuditLog) {}

  async apply(): Promise<void> {}

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
