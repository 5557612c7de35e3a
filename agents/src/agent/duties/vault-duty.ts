// The vault duty: enforces lock requests and auto-lock, and reports compliance with the plan's vault
// policy, on every plan and every check interval. It can lock; nothing in it can unlock.
import type { Command, CommandResult, NodePlan, Report, VaultReport } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { VaultGuard } from '../../vault/vault-guard.js';
import type { Duty } from '../node-agent.js';
import { RoundTimer } from './repeat.js';

/** SecAI OS checks the vault every 30 s. */
export const VAULT_CHECK_INTERVAL_MS = 30_000;

export class VaultDuty implements Duty {
  readonly name = 'vault';
  private plan: NodePlan | undefined;
  private last: VaultReport | undefined;
  private readonly timer: RoundTimer;

  constructor(
    private readonly guard: VaultGuard,
    private readonly changed: () => void,
    intervalMs = VAULT_CHECK_INTERVAL_MS,
  ) {
    this.timer = new RoundTimer(intervalMs, () => this.round());
  }

  async apply(plan: NodePlan): Promise<void> {
    this.plan = plan;
    await this.round();
    this.timer.ensureStarted();
  }

  private async round(): Promise<void> {
    const vault = this.plan?.vault;
    if (!vault?.policy) {
      this.last = { encrypted: false, sealed: false, locked: false, compliant: true, policy: '', reasons: [], lockEpoch: this.guard.lockEpoch };
      return;
    }
    await this.guard.enforce(vault);
    const report = await this.guard.check(vault);
    if (JSON.stringify(report) !== JSON.stringify(this.last)) {
      this.last = report;
      this.changed();
    }
  }

  async contribute(report: Report): Promise<void> {
    if (this.last) report.vault = this.last;
  }

  async handleCommand(command: Command): Promise<CommandResult | undefined> {
    if (command.body?.$case !== 'lockVault') return undefined;
    const locked = await this.guard.lock('command', command.body.value.reason);
    await this.round();
    return { id: command.id, error: locked ? '' : 'the vault could not be locked', body: undefined };
  }

  async stop(): Promise<void> {
    this.timer.stop();
  }
}
