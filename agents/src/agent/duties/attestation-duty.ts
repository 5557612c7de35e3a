// The attestation duty: measures Secure Boot, the TPM and the PCRs against the plan's expected
// boot state on every plan and every few minutes (the node's own view, reported), and answers the
// operator's remote attestation: its TPM identity, credential activation at enrolment, and quotes
// over the operator's nonces with the boot event log. Only the operator's verification of those
// makes a node attested.
import type { AttestationReport, Command, CommandResult, NodePlan, Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { Attestor } from '../../attestation/attestation.js';
import { readBootEventLog, type AttestationTpm } from '../../attestation/tpm-attestation.js';
import type { AuditSink } from '../../audit/audit-sink.js';
import type { Duty } from '../node-agent.js';
import { RoundTimer } from './repeat.js';

/** SecAI OS re-attests every 5 minutes. */
export const ATTESTATION_INTERVAL_MS = 5 * 60_000;

export interface RemoteAttestation {
  tpm: AttestationTpm;
  /** The boot event log (binary_bios_measurements); none when the file does not exist. */
  eventLogPath: string;
  audit: AuditSink;
}

export class AttestationDuty implements Duty {
  readonly name = 'attestation';
  private plan: NodePlan | undefined;
  private last: AttestationReport | undefined;
  private readonly timer: RoundTimer;
  /** Whether this process created the AK (a first enrolment on this TPM). */
  private akCreated = false;

  constructor(
    private readonly attestor: Attestor,
    private readonly changed: () => void,
    intervalMs = ATTESTATION_INTERVAL_MS,
    private readonly remote?: RemoteAttestation,
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

  async stop(): Promise<void> {
    this.timer.stop();
  }
}
