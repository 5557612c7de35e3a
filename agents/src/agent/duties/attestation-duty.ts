// The attestation duty: measures Secure Boot, the TPM and the PCRs against the plan's expected
// boot state on every plan and on its interval. A measurement that moved since the last run (a PCR
// the policy names, Secure Boot, the TPM's presence) is drift: the agent cannot undo a boot, so it
// reports the change and the new state is judged against the expected values. It also answers the
// operator's remote attestation: its TPM identity, credential activation at enrolment, and quotes
// over the operator's nonces with the boot event log. Only the operator's verification of those
// makes a node attested.
import { DutyStatus, type AttestationReport, type Command, type CommandResult, type NodePlan, type Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DriftKind, DutyReason } from '../../../../api/proto/duty-results.js';
import type { Attestor } from '../../attestation/attestation.js';
import { readBootEventLog, type AttestationTpm } from '../../attestation/tpm-attestation.js';
import type { AuditSink } from '../../audit/audit-sink.js';
import type { Duty, DutyContext, DutyOutcome } from '../node-agent.js';

/** SecAI OS re-attests every 5 minutes. */
export const ATTESTATION_INTERVAL_MS = 5 * 60_000;

export interface RemoteAttestation {
  tpm: AttestationTpm;
  /** The boot event log (binary_bios_measurements); none when the file does not exist. */
  eventLogPath: string;
  audit: AuditSink;
}

export class AttestationDuty implements Duty {
  readonly name = 'attestation' as const;
  private last: AttestationReport | undefined;
  /** Whether this process created the AK (a first enrolment on this TPM). */
  private akCreated = false;

  constructor(
    private readonly attestor: Attestor,
    readonly resyncMs = ATTESTATION_INTERVAL_MS,
    private readonly remote?: RemoteAttestation,
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

  async handleCommand(command: Command): Promise<CommandResult | undefined> {
    const body = command.body;
    if (body?.$case !== 'readAttestationIdentity' && body?.$case !== 'activateCredential' && body?.$case !== 'quote') return undefined;
    const answer = (result: CommandResult['body']): CommandResult => ({ id: command.id, error: '', body: result });
    const remote = this.remote;
    if (!remote) return { id: command.id, error: 'this node has no TPM configured for attestation', body: undefined };
    try {
      switch (body.$case) {
        case 'readAttestationIdentity': {
          const identity = await remote.tpm.identity();
          this.akCreated ||= identity.akCreated;
          return answer({
            $case: 'attestationIdentity',
            value: { ekPublic: identity.ekPublic, ekCertificate: identity.ekCertificate ?? Buffer.alloc(0), akPublic: identity.akPublic },
          });
        }
        case 'activateCredential': {
          const secret = await remote.tpm.activateCredential(Buffer.from(body.value.credentialBlob), Buffer.from(body.value.encryptedSecret));
          // The operator's enrolment challenge answered: the AK is bound to this TPM's EK.
          await remote.audit.record({ type: 'attestation.enrolled', data: { akCreated: this.akCreated } });
          return answer({ $case: 'activatedCredential', value: { secret } });
        }
        case 'quote': {
          const { nonce, pcrBank, pcrs } = body.value;
          const quote = await remote.tpm.quote(Buffer.from(nonce), pcrBank, pcrs);
          const log = await readBootEventLog(remote.eventLogPath);
          return answer({
            $case: 'quote',
            value: {
              attest: quote.attest,
              signature: quote.signature,
              pcrValues: quote.pcrValues,
              eventLog: 'log' in log ? log.log : Buffer.alloc(0),
              eventLogError: 'error' in log ? log.error : '',
            },
          });
        }
      }
    } catch (err) {
      return { id: command.id, error: (err as Error).message.slice(0, 1000), body: undefined };
    }
  }
}
