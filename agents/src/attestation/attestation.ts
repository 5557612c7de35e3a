// Node attestation: Secure Boot state, TPM presence and the live PCR values, compared with what the
// plan expects (VaultPlan.expected_pcrs, require_secure_boot), reported as an AttestationReport.
// The comparison is pure; the Attestor gathers the facts, counts them and audits changes.
import { createHash } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { SecureBootState, Tpm2Mode, type AttestationReport, type VaultPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { AuditSink } from '../audit/audit-sink.js';
import type { PcrValues } from './pcr-policy.js';
import { readSecureBootState } from './secure-boot.js';
import type { TpmClient } from './tpm2-tools.js';

/** Why a node is not attested (stable codes). */
export const AttestationFailure = {
  SecureBootNotEnabled: 'SecureBootNotEnabled',
  TpmAbsent: 'TpmAbsent',
  PcrMismatch: 'PcrMismatch',
  PcrUnreadable: 'PcrUnreadable',
} as const;
export type AttestationFailure = (typeof AttestationFailure)[keyof typeof AttestationFailure];

export interface AttestationFacts {
  secureBoot: SecureBootState;
  tpmPresent: boolean;
  /** Live values of the PCRs the plan names, in the plan's bank; undefined when they could not be read. */
  pcrs?: PcrValues;
}

export interface AttestationVerdict {
  report: AttestationReport;
  attested: boolean;
  failures: AttestationFailure[];
}

/** The PCRs the plan names: those the vault key is bound to and those with expected values. */
export function namedPcrs(plan: VaultPlan): number[] {
  return [...new Set([...plan.pcrs, ...plan.expectedPcrs.map((e) => e.index)])].sort((a, b) => a - b);
}

const DEFAULT_BANK = 'sha256';

/**
 * Compares the facts with the plan. pcr_digest is SHA-256 over the live values of the named PCRs in
 * ascending order (the composite a PolicyPCR would hash); a PCR is mismatched when its live value
 * differs from the expected one or cannot be read.
 */
export function evaluateAttestation(plan: VaultPlan, facts: AttestationFacts, checkedUnixMillis: number): AttestationVerdict {
  const bank = plan.pcrBank || DEFAULT_BANK;
  const names = namedPcrs(plan);
  const live = facts.pcrs;
  let pcrDigest = '';
  if (live && names.length > 0 && names.every((p) => live.has(p))) {
    const hash = createHash('sha256');
    for (const pcr of names) hash.update(live.get(pcr)!);
    pcrDigest = hash.digest('hex');
  }
  const mismatchedPcrs = plan.expectedPcrs
    .filter((expected) => live?.get(expected.index)?.toString('hex') !== expected.value.toLowerCase())
    .map((e) => e.index)
    .sort((a, b) => a - b);

  const failures: AttestationFailure[] = [];
  if (plan.requireSecureBoot && facts.secureBoot !== SecureBootState.SECURE_BOOT_STATE_ENABLED) failures.push(AttestationFailure.SecureBootNotEnabled);
  const needsTpm = plan.tpm2Mode === Tpm2Mode.TPM2_MODE_REQUIRED || plan.expectedPcrs.length > 0;
  if (needsTpm && !facts.tpmPresent) failures.push(AttestationFailure.TpmAbsent);
  else if (facts.tpmPresent && names.length > 0 && !live) failures.push(AttestationFailure.PcrUnreadable);
  if (mismatchedPcrs.length > 0 && facts.tpmPresent && live) failures.push(AttestationFailure.PcrMismatch);

  return {
    report: {
      secureBoot: facts.secureBoot,
      tpmPresent: facts.tpmPresent,
      pcrBank: bank,
      pcrDigest,
      mismatchedPcrs,
      checkedUnixMillis,
    },
    attested: failures.length === 0,
    failures,
  };
}

const SECURE_BOOT_LABELS: [SecureBootState, string][] = [
  [SecureBootState.SECURE_BOOT_STATE_ENABLED, 'enabled'],
  [SecureBootState.SECURE_BOOT_STATE_DISABLED, 'disabled'],
  [SecureBootState.SECURE_BOOT_STATE_UNKNOWN, 'unknown'],
];

export interface AttestorOptions {
  /** The node's TPM; undefined when the node has none configured. */
  tpm?: TpmClient;
  /** /sys/firmware/efi on a host. */
  efiDir?: string;
  audit: AuditSink;
  registry: Registry;
  logger?: Logger;
  clock?: () => number;
}

export class Attestor {
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly metrics;
  private lastAudited: string | undefined;

  constructor(private readonly options: AttestorOptions) {
    this.logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'attestation' });
    this.clock = options.clock ?? Date.now;
    const registers = [options.registry];
    this.metrics = {
      attested: new Gauge({ name: 'secai_agent_attestation_attested', help: 'Whether the node matches its expected boot state.', registers }),
      tpmPresent: new Gauge({ name: 'secai_agent_attestation_tpm_present', help: 'Whether a TPM 2.0 answers.', registers }),
      secureBoot: new Gauge({
        name: 'secai_agent_attestation_secure_boot',
        help: 'The Secure Boot state (1 for the current state).',
        labelNames: ['state'] as const,
        registers,
      }),
      mismatchedPcrs: new Gauge({ name: 'secai_agent_attestation_mismatched_pcrs', help: 'PCRs whose live value differs from the expected one.', registers }),
      checks: new Counter({ name: 'secai_agent_attestation_checks_total', help: 'Attestation rounds run.', registers }),
    };
  }

  private async gather(plan: VaultPlan): Promise<AttestationFacts> {
    const secureBoot = await readSecureBootState(this.options.efiDir);
    const tpm = this.options.tpm;
    const tpmPresent = tpm ? await tpm.isPresent() : false;
    if (!tpm || !tpmPresent) return { secureBoot, tpmPresent };
    const names = namedPcrs(plan);
    try {
      return { secureBoot, tpmPresent, pcrs: await tpm.readPcrs(plan.pcrBank || DEFAULT_BANK, names) };
    } catch (error) {
      this.logger.warn({ err: (error as Error).message }, 'cannot read PCRs');
      return { secureBoot, tpmPresent };
    }
  }

  /** Measures the node against the plan; records an audit entry when the outcome changes. */
  async attest(plan: VaultPlan): Promise<AttestationVerdict> {
    const verdict = evaluateAttestation(plan, await this.gather(plan), this.clock());
    const { report } = verdict;
    const m = this.metrics;
    m.checks.inc();
    m.attested.set(Number(verdict.attested));
    m.tpmPresent.set(Number(report.tpmPresent));
    m.mismatchedPcrs.set(report.mismatchedPcrs.length);
    for (const [state, label] of SECURE_BOOT_LABELS) m.secureBoot.set({ state: label }, Number(report.secureBoot === state));
    const summary = JSON.stringify([verdict.attested, verdict.failures, report.secureBoot, report.tpmPresent, report.pcrDigest, report.mismatchedPcrs]);
    if (summary !== this.lastAudited) {
      await this.options.audit.record({
        type: 'attestation.checked',
        data: {
          attested: verdict.attested,
          failures: verdict.failures.join(','),
          secureBoot: SECURE_BOOT_LABELS.find(([s]) => s === report.secureBoot)?.[1] ?? 'unknown',
          tpmPresent: report.tpmPresent,
          pcrBank: report.pcrBank,
          pcrDigest: report.pcrDigest,
          mismatchedPcrs: report.mismatchedPcrs.join(','),
        },
      });
      this.lastAudited = summary;
      this.logger.info({ attested: verdict.attested, failures: verdict.failures, mismatchedPcrs: report.mismatchedPcrs }, 'attestation changed');
    }
    return verdict;
  }
}
