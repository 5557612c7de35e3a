// The SecAINode status of one node, as a pure function of what the node reported (or, with no fresh
// report, what its status already says), its current plan and the agent's connection. It also
// decides compliance, which governs the not-compliant taint.
import type { Condition, NodeAttestationStatus, NodeAuditStatus, NodeDutyStatus, SecAINodeStatus } from '../../../../api/gen/crd-types.js';
import { driftReasonOf, type DutyName } from '../../../../api/proto/duty-results.js';
import type { AttestationVerdict } from '../../attestation/attestation-verifier.js';
import { AUDIT_FAILURE_PREFIX, type AuditVerdict } from '../../fleet/audit-verdicts.js';
import { findCondition, rfc3339Seconds, setConditions, type ConditionInput } from '../../runtime/conditions.js';
import type { NodeObservations } from '../../fleet/intake.js';
import { agentStatusOf } from '../../fleet/report-status.js';

export const Reason = {
  Compliant: 'Compliant',
  NeverReported: 'NeverReported',
  PlanNotApplied: 'PlanNotApplied',
  PlanRefused: 'PlanRefused',
  EgressNotEnforced: 'EgressNotEnforced',
  DutyFailed: 'DutyFailed',
  VaultNotCompliant: 'VaultNotCompliant',
  VaultPolicyMismatch: 'VaultPolicyMismatch',
  Ready: 'Ready',
  AgentDisconnected: 'AgentDisconnected',
  NotCompliant: 'NotCompliant',
  PlanTooLarge: 'PlanTooLarge',
  Attested: 'Attested',
  NotEnrolled: 'NotEnrolled',
  AwaitingQuote: 'AwaitingQuote',
  TpmAbsent: 'TpmAbsent',
  SecureBootDisabled: 'SecureBootDisabled',
  PcrMismatch: 'PcrMismatch',
  AuditVerified: 'Verified',
  AwaitingAuditHead: 'AwaitingAuditHead',
} as const;

export interface CurrentPlan {
  generation: number;
  digest: string;
  /** The VaultPolicy the plan applies, if any. */
  vaultPolicy?: string;
  requireSecureBoot: boolean;
  /** Set when the plan could not be published (it exceeds the channel's message limit). */
  tooLarge?: string;
}

export interface NodeStatusInputs {
  existing: SecAINodeStatus | undefined;
  objectGeneration: number;
  plan: CurrentPlan;
  observations: NodeObservations | undefined;
  /** Whether agents have had time to reconnect since this process started. */
  reconnectGraceOver: boolean;
  /** What this process concluded about the node's audit log; undefined: the status as it stands. */
  audit?: AuditVerdict | undefined;
  /** What this process verified of the node's TPM; undefined: the status as it stands. */
  attestation?: AttestationVerdict | undefined;
  now: number;
}

/** Whether a condition reason is one of the duties' drift reasons (EgressDrift, StoreDrift, ...). */
export function isDriftReason(reason: string | undefined): boolean {
  return reason !== undefined && reason.endsWith('Drift');
}

/**
 * A drift the node reported that this status does not yet show: its Warning Event is due, and
 * Compliant is False with its reason in the status that first shows it, even when the node
 * repaired it before the operator could write (a repair of milliseconds still leaves a record).
 */
export function unpublishedDrift(duty: NodeDutyStatus, published: readonly NodeDutyStatus[] | undefined): boolean {
  const before = published?.find((d) => d.duty === duty.duty)?.lastDrift;
  const now = duty.lastDrift;
  return !!now && (before?.detectedAt !== now.detectedAt || before.kind !== now.kind);
}

function driftMessage(duty: NodeDutyStatus): string {
  const d = duty.lastDrift!;
  const repaired = d.repairedAt ? `; repaired and read back at ${d.repairedAt}` : '; not repaired yet';
  return `${duty.duty}: ${d.kind} at ${d.detectedAt}: ${d.detail ?? 'no detail'}${repaired}`;
}

/**
 * Compliant: the node reports the current plan (generation and digest) accepted, every duty
 * converged on it (none Failed, none Drifted, no drift unpublished), egress enforced (a ruleset
 * read back from the kernel), and, when a VaultPolicy applies, a vault that satisfies that very
 * policy. `published` is the duties as the status being replaced shows them.
 */
export function complianceOf(status: SecAINodeStatus, plan: CurrentPlan, published?: readonly NodeDutyStatus[]): ConditionInput {
  const p = status.plan;
  const verdict = (ok: boolean, reason: string, message: string): ConditionInput => ({
    type: 'Compliant',
    status: ok ? 'True' : 'False',
    reason,
    message,
  });
  if (p?.appliedGeneration === undefined) return verdict(false, Reason.NeverReported, 'the agent has not reported an applied plan');
  const duties = status.duties ?? [];
  for (const duty of duties) {
    if (duty.state === 'Drifted' || unpublishedDrift(duty, published)) {
      return verdict(false, driftReasonOf(duty.duty as DutyName), duty.lastDrift ? driftMessage(duty) : `${duty.duty}: ${duty.message ?? 'drift'}`);
    }
  }
  const failed = duties.find((d) => d.state === 'Failed');
  if (failed?.duty === 'egress') return verdict(false, Reason.EgressNotEnforced, `egress (${failed.reason}): ${failed.message ?? 'no message'}`);
  if (failed) return verdict(false, Reason.DutyFailed, `${failed.duty} (${failed.reason}): ${failed.message ?? 'no message'}`);
  if (p.error) return verdict(false, Reason.PlanRefused, p.error);
  if (p.appliedGeneration !== plan.generation || p.appliedDigest !== plan.digest) {
    return verdict(false, Reason.PlanNotApplied, `the node applied plan generation ${p.appliedGeneration}; the current one is ${plan.generation}`);
  }
  if (!status.egress?.rulesetDigest) return verdict(false, Reason.EgressNotEnforced, 'the node reported no enforced egress ruleset');
  if (plan.vaultPolicy) {
    const v = status.vault;
    if (!v) return verdict(false, Reason.VaultNotCompliant, `the node reported no vault state for VaultPolicy ${plan.vaultPolicy}`);
    if (v.policy !== plan.vaultPolicy) {
      return verdict(false, Reason.VaultPolicyMismatch, `the node checked its vault against ${v.policy ?? 'no policy'}, not ${plan.vaultPolicy}`);
    }
    if (!v.compliant) {
      return verdict(false, Reason.VaultNotCompliant, `the vault does not satisfy VaultPolicy ${plan.vaultPolicy}: ${(v.reasons ?? []).join(', ') || 'no reason given'}`);
    }
  }
  return verdict(true, Reason.Compliant, `the node enforces plan generation ${plan.generation}`);
}

/**
 * status.attestation: what the agent reports about itself (Secure Boot from efivarfs, TPM presence),
 * overlaid with what the operator verified (attestation-verifier.ts): the enrolled keys, the last
 * verified quote, the PCR digest and mismatches from quoted values, Secure Boot from an event log
 * that replays to a quoted PCR 7, and why the last round failed. Without a verdict from this
 * process, the verified part stays as the status has it.
 */
export function attestationStatusOf(
  reported: NodeAttestationStatus | undefined,
  existing: NodeAttestationStatus | undefined,
  verdict: AttestationVerdict | undefined,
): NodeAttestationStatus | undefined {
  const VERIFIED = ['enrolment', 'quote', 'failure', 'secureBootVerified'] as const;
  if (!verdict) {
    if (!reported) return existing;
    const kept = Object.fromEntries(VERIFIED.filter((k) => existing?.[k] !== undefined).map((k) => [k, existing![k]]));
    const base = { ...reported, ...kept };
    if (existing?.quote) for (const k of ['pcrBank', 'pcrDigest', 'mismatchedPcrs', 'secureBoot'] as const) (base as Record<string, unknown>)[k] = existing[k];
    return base;
  }
  const base: NodeAttestationStatus = { ...(reported ?? existing ?? { secureBoot: 'Unknown', tpmPresent: verdict.enrolment !== undefined }) };
  for (const k of VERIFIED) delete base[k];
  const { enrolment, quote, failure } = verdict;
  if (enrolment) {
    base.tpmPresent = true;
    base.enrolment = {
      ekFingerprint: enrolment.ekFingerprint,
      ...(enrolment.ekCertificate ? { ekCertificate: enrolment.ekCertificate } : {}),
      akPublic: enrolment.akPublic.toString('base64'),
      akName: enrolment.akName.toString('hex'),
      enrolledAt: rfc3339Seconds(enrolment.enrolledAt),
    };
  }
  if (quote) {
    base.quote = quote.status;
    base.pcrBank = quote.status.pcrBank;
    if (quote.pcrDigest) base.pcrDigest = quote.pcrDigest;
    if (quote.mismatchedPcrs.length) base.mismatchedPcrs = quote.mismatchedPcrs;
    else delete base.mismatchedPcrs;
    if (quote.secureBoot) {
      base.secureBoot = quote.secureBoot;
      base.secureBootVerified = true;
    }
  }
  if (failure) base.failure = failure.message;
  return base;
}

/**
 * Attested: True only from a quote the operator verified (fresh, signed by the enrolled AK, its
 * event log replayed), whose PCRs match the expected values and, where the VaultPolicy requires
 * it, whose verified event log shows Secure Boot on. The agent's own report never makes it True.
 */
function attestationOf(status: SecAINodeStatus, plan: CurrentPlan, verdict: AttestationVerdict | undefined, existing: SecAINodeStatus | undefined): ConditionInput {
  const a = status.attestation;
  const c = (s: Condition['status'], reason: string, message: string): ConditionInput => ({ type: 'Attested', status: s, reason, message });
  if (!verdict) {
    const kept = findCondition(existing?.conditions, 'Attested');
    if (kept && existing?.attestation?.enrolment) return c(kept.status, kept.reason, kept.message);
    if (a && !a.tpmPresent) return c('False', Reason.TpmAbsent, 'the node reports no TPM: nothing can vouch for its boot state');
    return c('Unknown', Reason.NotEnrolled, 'the operator has not enrolled this node\'s TPM yet');
  }
  if (verdict.failure) return c('False', verdict.failure.reason, verdict.failure.message);
  const q = verdict.quote;
  if (!verdict.enrolment) return c('Unknown', Reason.NotEnrolled, 'the operator has not enrolled this node\'s TPM yet');
  if (!q || !a) return c('Unknown', Reason.AwaitingQuote, 'the TPM is enrolled; no quote verified yet');
  if (plan.requireSecureBoot && !(a.secureBootVerified && a.secureBoot === 'Enabled')) {
    return c(
      'False',
      Reason.SecureBootDisabled,
      a.secureBootVerified ? `the verified boot event log shows Secure Boot ${a.secureBoot}; the VaultPolicy requires it` : 'no verified boot event log shows Secure Boot enabled; the VaultPolicy requires it',
    );
  }
  if (q.mismatchedPcrs.length) return c('False', Reason.PcrMismatch, `quoted PCRs ${q.mismatchedPcrs.join(', ')} differ from the expected values`);
  const log = q.status.eventLogEvents !== undefined ? `; the event log of ${q.status.eventLogEvents} events replays PCR ${(q.status.replayedPcrs ?? []).join(', ') || 'none'}` : '; no event log';
  return c('True', Reason.Attested, `quote over ${q.status.pcrBank}:${q.status.pcrs.map((p) => p.index).join(',')} verified with the enrolled AK${log}`);
}

function readinessOf(status: SecAINodeStatus, compliance: ConditionInput, plan: CurrentPlan): ConditionInput {
  const c = (ok: boolean, reason: string, message: string): ConditionInput => ({ type: 'Ready', status: ok ? 'True' : 'False', reason, message });
  if (plan.tooLarge) return c(false, Reason.PlanTooLarge, plan.tooLarge);
  if (!status.agent?.connected) return c(false, Reason.AgentDisconnected, 'the agent holds no channel to the operator');
  if (compliance.status !== 'True') return c(false, Reason.NotCompliant, compliance.message);
  return c(true, Reason.Ready, 'the agent is connected and the node is compliant');
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/**
 * status.audit and AuditVerified from the verdict. treeSize and rootHash are the head the operator
 * verified last, or, after a failure, the head it rejected (when well-formed); verifiedTreeSize,
 * verifiedAt and keyFingerprint are the last verified head; `failure` says why the log was rejected.
 * The failure reason is the condition's reason (the api/audit failure code). Failures are sticky:
 * once written they stay as they are until the node is re-baselined.
 */
export function auditOf(existing: SecAINodeStatus | undefined, verdict: AuditVerdict | undefined): { audit?: NodeAuditStatus; condition: ConditionInput } {
  const c = (status: Condition['status'], reason: string, message: string): ConditionInput => ({ type: 'AuditVerified', status, reason, message });
  const awaiting = () => c('Unknown', Reason.AwaitingAuditHead, 'the operator has not verified a signed audit head of this node yet');
  if (!verdict) {
    const kept = findCondition(existing?.conditions, 'AuditVerified');
    return { ...(existing?.audit ? { audit: existing.audit } : {}), condition: kept ? c(kept.status, kept.reason, kept.message) : awaiting() };
  }
  const v = verdict.verified;
  const verified = v ? { verifiedTreeSize: v.head.treeSize, verifiedAt: rfc3339Seconds(v.at), keyFingerprint: v.head.keyFingerprint } : {};
  const f = verdict.failure;
  if (f) {
    const condition = c('False', f.reason, `${AUDIT_FAILURE_PREFIX}${f.message}`);
    if (existing?.audit?.failure === f.message) return { audit: existing.audit, condition };
    const previous = existing?.audit ? { treeSize: existing.audit.treeSize, rootHash: existing.audit.rootHash } : undefined;
    const shown = f.head ?? (v ? { treeSize: v.head.treeSize, rootHash: hex(v.head.rootHash) } : previous);
    return { ...(shown ? { audit: { ...shown, ...verified, failure: f.message } } : {}), condition };
  }
  if (!v) return { condition: awaiting() };
  return {
    audit: { treeSize: v.head.treeSize, rootHash: hex(v.head.rootHash), ...verified },
    condition: c('True', Reason.AuditVerified, `the log of ${v.head.treeSize} entries extends every head verified before, signed by key ${v.head.keyFingerprint.slice(0, 16)}`),
  };
}

/** Fields that change with every report; they alone never justify a write before the refresh interval. */
export function withoutVolatileFields(status: SecAINodeStatus | undefined): SecAINodeStatus | undefined {
  if (!status) return status;
  const copy = structuredClone(status);
  if (copy.agent) delete copy.agent.lastSeen;
  if (copy.egress) {
    delete copy.egress.droppedPackets;
    delete copy.egress.auditedPackets;
  }
  if (copy.attestation) {
    delete copy.attestation.checkedAt;
    if (copy.attestation.quote) copy.attestation.quote.verifiedAt = '';
  }
  for (const duty of copy.duties ?? []) delete duty.checkedAt;
  return copy;
}

export function computeNodeStatus(inputs: NodeStatusInputs): SecAINodeStatus {
  const { existing, observations: obs, plan, now } = inputs;
  const report = obs?.report;
  const lastSeen = obs?.lastSeenAt !== undefined ? rfc3339Seconds(obs.lastSeenAt) : existing?.agent?.lastSeen;

  let agent;
  if (obs?.session) agent = agentStatusOf(obs.session.identity, true, lastSeen);
  else if (obs?.disconnectedAt !== undefined || (existing?.agent && inputs.reconnectGraceOver)) {
    agent = { ...(existing?.agent ?? {}), connected: false, ...(lastSeen ? { lastSeen } : {}) };
  } else agent = existing?.agent ?? { connected: false };

  const status: SecAINodeStatus = { observedGeneration: inputs.objectGeneration, agent };
  if (report) {
    const sameApplied = existing?.plan?.appliedGeneration === report.appliedGeneration && existing.plan.appliedDigest === report.appliedDigest;
    status.plan = {
      generation: plan.generation,
      digest: plan.digest,
      appliedGeneration: report.appliedGeneration,
      ...(report.appliedDigest ? { appliedDigest: report.appliedDigest } : {}),
      appliedAt: sameApplied && existing?.plan?.appliedAt ? existing.plan.appliedAt : rfc3339Seconds(report.receivedAt),
      ...(report.planError ? { error: report.planError } : {}),
    };
    if (report.duties.length) status.duties = report.duties;
    if (report.tor) status.tor = report.tor;
    if (report.egress) status.egress = report.egress;
    if (report.vault) status.vault = report.vault;
    if (report.models.length) status.models = report.models;
    if (report.inference.length) status.inference = report.inference;
  } else {
    status.plan = { ...(existing?.plan ?? {}), generation: plan.generation, digest: plan.digest };
    for (const key of ['duties', 'tor', 'egress', 'vault', 'models', 'inference'] as const) {
      if (existing?.[key] !== undefined) (status as Record<string, unknown>)[key] = existing[key];
    }
  }

  // No plan could ever be published for this node (the first one was already too large).
  if (!plan.digest) delete status.plan;

  const attestation = attestationStatusOf(report?.attestation, existing?.attestation, inputs.attestation);
  if (attestation) status.attestation = attestation;

  const audit = auditOf(existing, inputs.audit);
  if (audit.audit) status.audit = audit.audit;

  const compliance = complianceOf(status, plan, existing?.duties);
  const withGeneration = (c: ConditionInput): ConditionInput => ({ ...c, observedGeneration: inputs.objectGeneration });
  status.conditions = setConditions(
    existing?.conditions,
    [readinessOf(status, compliance, plan), compliance, attestationOf(status, plan, inputs.attestation, existing), audit.condition].map(withGeneration),
    now,
  );
  return status;
}
