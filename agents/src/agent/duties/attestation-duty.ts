// The attestation duty: measures Secure Boot, the TPM and the PCRs against the plan's expected
// boot state on every plan and every few minutes.
import type { AttestationReport, NodePlan, Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { Attestor } from '../../attestation/attestation.js';
import type { Duty } from '../node-agent.js';
import { RoundTimer } from './repeat.js';

/** SecAI OS re-attests every 5 minutes. */
export const ATTESTATION_INTERVAL_MS = 5 * 60_000;

export class AttestationDuty implements Duty {
  readonly name = 'attestation';
  private plan: NodePlan | undefined;
  private last: AttestationReport | undefined;
  private readonly timer: RoundTimer;

  constructor(
    private readonly attestor: Attestor,
    private readonly changed: () => void,
    intervalMs = ATTESTATION_INTERVAL_MS,
  ) {
    this.timer = new RoundTimer(intervalMs, () => this.round());
  }

  async apply(plan: NodePlan): Promise<void> {
    this.plan = plan;
    await this.round();
    this.timer.ensureStarted();
  }

  private async round(): Promise<void> {
    if (!this.plan?.vault) return;
    const { report } = await this.attestor.attest(this.plan.vault);
    const comparable = (r: AttestationReport | undefined) => JSON.stringify(r && { ...r, checkedUnixMillis: 0 });
    const changed = comparable(report) !== comparable(this.last);
    this.last = report;
    if (changed) this.changed();
  }

  async contribute(report: Report): Promise<void> {
    if (this.last) report.attestation = this.last;
  }

  async stop(): Promise<void> {
    this.timer.stop();
  }
}
