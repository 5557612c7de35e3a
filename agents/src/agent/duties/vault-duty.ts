// The vault duty: enforces lock requests and auto-lock, and reports compliance with the plan's vault
// policy, on every plan and every check interval. It can lock; nothing in it can unlock. Each run
// re-reads the LUKS2 header: a header that changed since the last run (a keyslot or token added or
// removed, another cipher, the header gone) is drift. The agent cannot repair a header; it reports
// the change and judges the new header against the policy.
import { DutyStatus, type Command, type CommandResult, type NodePlan, type Report, type VaultReport } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DriftKind, DutyReason } from '../../../../api/proto/duty-results.js';
import type { VaultGuard } from '../../vault/vault-guard.js';
import type { Duty, DutyContext, DutyOutcome } from '../node-agent.js';

/** SecAI OS checks the vault every 30 s. */
export const VAULT_CHECK_INTERVAL_MS = 30_000;

export class VaultDuty implements Duty {
  readonly name = 'vault' as const;
  private last: VaultReport | undefined;
  private lastHeader: string | undefined;
  private ctx: DutyContext | undefined;

  constructor(
    private readonly guard: VaultGuard,
    readonly resyncMs = VAULT_CHECK_INTERVAL_MS,
  ) {}

  async converge(plan: NodePlan, ctx: DutyContext): Promise<DutyOutcome> {
    this.ctx = ctx;
    const vault = plan.vault;
    if (!vault?.policy) {
      this.last = { encrypted: false, sealed: false, locked: false, compliant: true, policy: '', reasons: [], lockEpoch: this.guard.lockEpoch };
      return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message: 'no VaultPolicy selects this node' };
    }
    await this.guard.enforce(vault);
    const report = await this.guard.check(vault);
    const header = this.guard.observedHeader;
    if (this.lastHeader !== undefined && header !== this.lastHeader) {
      await ctx.drift(DriftKind.VaultHeaderChanged, `the LUKS2 header changed (${describeHeader(this.lastHeader)} -> ${describeHeader(header)})`);
    }
    this.lastHeader = header;
    this.last = report;
    const verdict = report.compliant ? 'satisfies' : `does not satisfy (${report.reasons.join(', ')})`;
    return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message: `the vault ${verdict} VaultPolicy ${vault.policy}; ${report.locked ? 'locked' : 'open'}` };
  }

  async contribute(report: Report): Promise<void> {
    if (this.last) report.vault = this.last;
  }

  async handleCommand(command: Command): Promise<CommandResult | undefined> {
    if (command.body?.$case !== 'lockVault') return undefined;
    const locked = await this.guard.lock('command', command.body.value.reason);
    this.ctx?.wake();
    return { id: command.id, error: locked ? '' : 'the vault could not be locked', body: undefined };
  }
}

function describeHeader(observed: string | undefined): string {
  if (!observed) return 'unread';
  const [kind, digest] = observed.split(':');
  return digest ? `${kind} ${digest.slice(0, 12)}` : observed;
}
