// The attestation duty: measures Secure Boot, the TPM and the PCRs against the plan's expected
// boot state on every plan and on its interval. A measurement that moved since the last run (a PCR
// the policy names, Secure Boot, the TPM's presence) is drift: the agent cannot undo a boot, so it
// reports the change and the new state is judged against the expected values.
import { DutyStatus, type AttestationReport, type NodePlan, type Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DriftKind, DutyReason } from '../../../../api/proto/duty-results.js';
import type { Attestor } from '../../attestation/attestation.js';
import type { Duty, DutyContext, DutyOutcome } from '../node-agent.js';

/** SecAI OS re-attests every 5 minutes. */
export const ATTESTATION_INTERVAL_MS = 5 * 60_000;

export class AttestationDuty implements Duty {
  readonly name = 'attestation' as const;
  private last: AttestationReport | undefined;

  constructor(
    private readonly attestor: Attestor,
    readonly resyncMs = ATTESTATION_INTERVAL_MS,
  ) {}

  async converge(plan: NodePlan, ctx: DutyContext): Promise<DutyOutcome> {
    if (!plan.vault) return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message: 'the plan names no expected boot state' };
    const { report, attested, failures } = await this.attestor.attest(plan.vault);
    const previous = this.last;
    if (previous) {
      if (previous.pcrBank === report.pcrBank && previous.pcrDigest !== report.pcrDigest) {
        await ctx.drift(DriftKind.PcrChanged, `the ${report.pcrBank || 'PCR'} digest over the policy's PCRs changed (${previous.pcrDigest.slice(0, 12) || 'none'} -> ${report.pcrDigest.slice(0, 12) || 'none'})`);
      } else if (previous.secureBoot !== report.secureBoot || previous.tpmPresent !== report.tpmPresent) {
        await ctx.drift(DriftKind.BootStateChanged, `Secure Boot ${previous.secureBoot} -> ${report.secureBoot}, TPM present ${previous.tpmPresent} -> ${report.tpmPresent}`);
      }
    }
    this.last = report;
    const message = attested ? 'the boot state matches the expected values' : `the boot state differs from the expected values: ${failures.join(', ')}`;
    return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message };
  }

  async contribute(report: Report): Promise<void> {
    if (this.last) report.attestation = this.last;
  }
}
