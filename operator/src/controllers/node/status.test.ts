// SecAINode status and compliance as pure functions of reports, plan and connection.
import { HeadTransitionFailure } from '../../../../api/audit/tree-head.js';
import type { NodeDutyStatus, SecAINodeStatus } from '../../../../api/gen/crd-types.js';
import { AUDIT_FAILURE_PREFIX, verdictFromStatus } from '../../fleet/audit-verdicts.js';
import type { NodeObservations } from '../../fleet/intake.js';
import type { ReportedState } from '../../fleet/report-status.js';
import type { AttestationEnrolment, AttestationVerdict, AttestedQuote } from '../../attestation/attestation-verifier.js';
import { complianceOf, computeNodeStatus, withoutVolatileFields, type CurrentPlan } from './status.js';
import { hasNotCompliantTaint, taintsFor } from './taint.js';

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const D = (c: string) => c.repeat(64);
const plan: CurrentPlan = { generation: 4, digest: D('a'), vaultPolicy: 'fleet-vault', requireSecureBoot: true };

const converged = (duty: NodeDutyStatus['duty']): NodeDutyStatus => ({ duty, state: 'OK', reason: 'Converged', planGeneration: 4 });
const duties: NodeDutyStatus[] = (['egress', 'models', 'inference', 'vault', 'attestation', 'audit'] as const).map(converged);
const withDuty = (duty: NodeDutyStatus): NodeDutyStatus[] => duties.map((d) => (d.duty === duty.duty ? duty : d));

const applied: SecAINodeStatus = {
  plan: { generation: 4, digest: D('a'), appliedGeneration: 4, appliedDigest: D('a') },
  duties,
  egress: { mode: 'Enforce', rulesetDigest: D('b') },
  vault: { encrypted: true, sealed: true, locked: false, compliant: true, policy: 'fleet-vault' },
};
const drift = { kind: 'table-missing' as const, detail: 'the inet secai table is gone', detectedAt: '2026-06-01T11:59:00Z' };

it.each<[string, SecAINodeStatus, CurrentPlan, string, string]>([
  ['the current plan applied, egress enforced, vault compliant', applied, plan, 'True', 'Compliant'],
  ['no report yet', {}, plan, 'False', 'NeverReported'],
  ['an older plan applied', { ...applied, plan: { ...applied.plan!, appliedGeneration: 3 } }, plan, 'False', 'PlanNotApplied'],
  ['the same generation with another digest', { ...applied, plan: { ...applied.plan!, appliedDigest: D('c') } }, plan, 'False', 'PlanNotApplied'],
  ['a refused plan', { ...applied, plan: { ...applied.plan!, error: 'plan does not match its digest' } }, plan, 'False', 'PlanRefused'],
  ['an egress duty that failed', { ...applied, duties: withDuty({ duty: 'egress', state: 'Failed', reason: 'NftFailed', message: 'nft refused' }) }, plan, 'False', 'EgressNotEnforced'],
  ['another duty that failed', { ...applied, duties: withDuty({ duty: 'models', state: 'Failed', reason: 'Failed', message: 'store unwritable' }) }, plan, 'False', 'DutyFailed'],
  ['a duty that is still progressing', { ...applied, duties: withDuty({ duty: 'models', state: 'Progressing', reason: 'Progressing' }) }, plan, 'True', 'Compliant'],
  ['egress drift not yet repaired', { ...applied, duties: withDuty({ duty: 'egress', state: 'Drifted', reason: 'Drift', lastDrift: drift }) }, plan, 'False', 'EgressDrift'],
  ['store drift not yet repaired', { ...applied, duties: withDuty({ duty: 'models', state: 'Drifted', reason: 'Drift', lastDrift: { ...drift, kind: 'store-file-changed' } }) }, plan, 'False', 'StoreDrift'],
  ['a drift repaired before any status showed it', { ...applied, duties: withDuty({ duty: 'egress', state: 'OK', reason: 'Converged', lastDrift: { ...drift, repairedAt: '2026-06-01T11:59:01Z' } }) }, plan, 'False', 'EgressDrift'],
  ['no ruleset read back', { ...applied, egress: { mode: 'Enforce' } }, plan, 'False', 'EgressNotEnforced'],
  ['no vault report while a VaultPolicy applies', { ...applied, vault: undefined }, plan, 'False', 'VaultNotCompliant'],
  ['a vault checked against another policy', { ...applied, vault: { ...applied.vault!, policy: 'old' } }, plan, 'False', 'VaultPolicyMismatch'],
  ['a non-compliant vault', { ...applied, vault: { ...applied.vault!, compliant: false, reasons: ['CipherMismatch'] } }, plan, 'False', 'VaultNotCompliant'],
  ['no VaultPolicy: the vault does not matter', { ...applied, vault: undefined }, { ...plan, vaultPolicy: undefined }, 'True', 'Compliant'],
])('compliance with %s', (_, status, p, expected, reason) => {
  const c = complianceOf(status, p, duties);
  expect([c.status, c.reason]).toEqual([expected, reason]);
});

it('a repaired drift is Compliant again once a status has shown it, and its message says when it was repaired', () => {
  const repaired = withDuty({ duty: 'egress', state: 'OK', reason: 'Converged', lastDrift: { ...drift, repairedAt: '2026-06-01T11:59:01Z' } });
  const first = complianceOf({ ...applied, duties: repaired }, plan, duties);
  expect(first).toMatchObject({ status: 'False', reason: 'EgressDrift', message: expect.stringContaining('repaired and read back at 2026-06-01T11:59:01Z') });
  expect(complianceOf({ ...applied, duties: repaired }, plan, repaired)).toMatchObject({ status: 'True', reason: 'Compliant' });
  // The next drift (another time) is news again.
  const again = withDuty({ duty: 'egress', state: 'OK', reason: 'Converged', lastDrift: { ...drift, detectedAt: '2026-06-01T12:10:00Z', repairedAt: '2026-06-01T12:10:00Z' } });
  expect(complianceOf({ ...applied, duties: again }, plan, repaired).reason).toBe('EgressDrift');
});

function report(over: Partial<ReportedState> = {}): ReportedState {
  return {
    appliedGeneration: 4,
    appliedDigest: D('a'),
    duties,
    egress: { mode: 'Enforce', rulesetDigest: D('b'), droppedPackets: 10, auditedPackets: 0, allowEntries: 3 },
    vault: { encrypted: true, sealed: true, locked: false, compliant: true, policy: 'fleet-vault' },
    attestation: { secureBoot: 'Enabled', tpmPresent: true },
    models: [{ name: 'm', sha256: D('d'), state: 'Trusted' }],
    inference: [],
    receivedAt: NOW - 5000,
    ...over,
  };
}
const session = { identity: { version: '1.2.3', protocolVersion: 1, capabilities: ['nftables'] }, connectedAt: NOW - 60_000, auditKey: Buffer.alloc(32) };

it('builds the status from a fresh report and a live session: Ready, Compliant; Attested waits for enrolment', () => {
  const obs: NodeObservations = { session, lastSeenAt: NOW - 5000, report: report() };
  const s = computeNodeStatus({ existing: undefined, objectGeneration: 2, plan, observations: obs, reconnectGraceOver: true, now: NOW });
  expect(s.agent).toEqual({ version: '1.2.3', protocolVersion: 1, connected: true, lastSeen: '2026-06-01T11:59:55Z', capabilities: ['nftables'] });
  expect(s.plan).toEqual({ generation: 4, digest: D('a'), appliedGeneration: 4, appliedDigest: D('a'), appliedAt: '2026-06-01T11:59:55Z' });
  expect(s.observedGeneration).toBe(2);
  expect(s.conditions?.map((c) => [c.type, c.status, c.reason, c.observedGeneration])).toEqual([
    ['Ready', 'True', 'Ready', 2],
    ['Compliant', 'True', 'Compliant', 2],
    ['Attested', 'Unknown', 'NotEnrolled', 2],
    ['AuditVerified', 'Unknown', 'AwaitingAuditHead', 2],
  ]);
});

const enrolment: AttestationEnrolment = {
  ekFingerprint: D('e'),
  akPublic: Buffer.from('ak public area'),
  akName: Buffer.from('000b' + 'f'.repeat(64), 'hex'),
  ak: undefined as never,
  enrolledAt: NOW - 60_000,
};
const quoted = (over: Partial<AttestedQuote> = {}): AttestedQuote => ({
  status: { verifiedAt: '2026-06-01T11:59:50Z', pcrBank: 'sha256', pcrs: [{ index: 7, value: D('7') }], resetCount: 0, eventLogEvents: 34, replayedPcrs: [7] },
  pcrDigest: D('9'),
  mismatchedPcrs: [],
  secureBoot: 'Enabled',
  at: NOW - 10_000,
  ...over,
});

it.each<[string, Partial<ReportedState>, AttestationVerdict | undefined, string, string]>([
  ['a verified quote matching the expected values', {}, { enrolment, quote: quoted() }, 'True', 'Attested'],
  ['the agent\'s own word only, however good', { attestation: { secureBoot: 'Enabled', tpmPresent: true } }, undefined, 'Unknown', 'NotEnrolled'],
  ['an agent that reports no TPM', { attestation: { secureBoot: 'Enabled', tpmPresent: false } }, undefined, 'False', 'TpmAbsent'],
  ['an enrolled TPM not quoted yet', {}, { enrolment }, 'Unknown', 'AwaitingQuote'],
  ['quoted PCRs that differ from the expected values', {}, { enrolment, quote: quoted({ mismatchedPcrs: [7] }) }, 'False', 'PcrMismatch'],
  ['Secure Boot off in the verified event log while required', {}, { enrolment, quote: quoted({ secureBoot: 'Disabled' }) }, 'False', 'SecureBootDisabled'],
  ['Secure Boot not proven (no event log) while required', { attestation: { secureBoot: 'Enabled', tpmPresent: true } }, { enrolment, quote: quoted({ secureBoot: undefined }) }, 'False', 'SecureBootDisabled'],
  ['a refused quote', {}, { enrolment, quote: quoted(), failure: { reason: 'NonceReplayed', message: 'replayed', at: NOW } }, 'False', 'NonceReplayed'],
  ['a changed attestation key', {}, { enrolment, failure: { reason: 'AttestationKeyChanged', message: 'another AK', at: NOW } }, 'False', 'AttestationKeyChanged'],
])('Attested reflects %s', (_, over, verdict, status, reason) => {
  const s = computeNodeStatus({ existing: undefined, objectGeneration: 1, plan, observations: { session, report: report(over) }, reconnectGraceOver: true, attestation: verdict, now: NOW });
  expect(s.conditions?.find((c) => c.type === 'Attested')).toMatchObject({ status, reason });
});

it('shows the verified boot state over the agent\'s own report, and keeps it while this process has no verdict', () => {
  const verdict = { enrolment, quote: quoted({ mismatchedPcrs: [7] }), failure: { reason: 'QuoteTimeout' as const, message: 'x', at: NOW } };
  const reported = report({ attestation: { secureBoot: 'Unknown', tpmPresent: true, pcrDigest: D('1'), mismatchedPcrs: [] } });
  const s = computeNodeStatus({ existing: undefined, objectGeneration: 1, plan, observations: { session, report: reported }, reconnectGraceOver: true, attestation: verdict, now: NOW });
  expect(s.attestation).toEqual({
    secureBoot: 'Enabled',
    secureBootVerified: true,
    tpmPresent: true,
    pcrBank: 'sha256',
    pcrDigest: D('9'),
    mismatchedPcrs: [7],
    enrolment: { ekFingerprint: D('e'), akPublic: Buffer.from('ak public area').toString('base64'), akName: '000b' + 'f'.repeat(64), enrolledAt: '2026-06-01T11:59:00Z' },
    quote: quoted().status,
    failure: 'x',
  });
  // A restarted operator (no verdict yet) keeps the verified part and the condition, whatever the agent says.
  const later = computeNodeStatus({ existing: s, objectGeneration: 1, plan, observations: { session, report: reported }, reconnectGraceOver: true, now: NOW + 1000 });
  expect(later.attestation).toEqual(s.attestation);
  expect(later.conditions?.find((c) => c.type === 'Attested')).toMatchObject({ status: 'False', reason: 'QuoteTimeout' });
  // The time of the last quote alone never justifies a write.
  const requoted = computeNodeStatus({ existing: s, objectGeneration: 1, plan, observations: { session, report: reported }, reconnectGraceOver: true, attestation: { ...verdict, quote: quoted({ mismatchedPcrs: [7], status: { ...quoted().status, verifiedAt: '2026-06-01T12:05:00Z' } }) }, now: NOW + 1000 });
  expect(withoutVolatileFields(requoted)).toEqual(withoutVolatileFields(s));
});

it('keeps what the status says when this process has no report (after a restart), until agents had time to reconnect', () => {
  const existing = computeNodeStatus({ existing: undefined, objectGeneration: 1, plan, observations: { session, lastSeenAt: NOW - 5000, report: report() }, reconnectGraceOver: true, now: NOW });
  const restarted = computeNodeStatus({ existing, objectGeneration: 1, plan, observations: undefined, reconnectGraceOver: false, now: NOW + 1000 });
  expect(restarted).toEqual(existing);
  const later = computeNodeStatus({ existing, objectGeneration: 1, plan, observations: undefined, reconnectGraceOver: true, now: NOW + 120_000 });
  expect(later.agent?.connected).toBe(false);
  expect(later.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('AgentDisconnected');
  // Compliance does not depend on the connection: the node keeps enforcing the plan it has.
  expect(later.conditions?.find((c) => c.type === 'Compliant')?.status).toBe('True');
});

it('keeps appliedAt while the node reports the same applied plan, and moves it with a new one', () => {
  const first = computeNodeStatus({ existing: undefined, objectGeneration: 1, plan, observations: { session, report: report() }, reconnectGraceOver: true, now: NOW });
  const same = computeNodeStatus({ existing: first, objectGeneration: 1, plan, observations: { session, report: report({ receivedAt: NOW + 60_000 }) }, reconnectGraceOver: true, now: NOW + 60_000 });
  expect(same.plan?.appliedAt).toBe(first.plan?.appliedAt);
  const next = { ...plan, generation: 5, digest: D('e') };
  const moved = computeNodeStatus({ existing: first, objectGeneration: 1, plan: next, observations: { session, report: report({ appliedGeneration: 5, appliedDigest: D('e'), receivedAt: NOW + 60_000 }) }, reconnectGraceOver: true, now: NOW + 60_000 });
  expect(moved.plan?.appliedAt).toBe('2026-06-01T12:01:00Z');
});

it('tells counters and timestamps apart from state', () => {
  const a = computeNodeStatus({ existing: undefined, objectGeneration: 1, plan, observations: { session, lastSeenAt: NOW, report: report() }, reconnectGraceOver: true, now: NOW });
  const counters = computeNodeStatus({ existing: a, objectGeneration: 1, plan, observations: { session, lastSeenAt: NOW + 30_000, report: report({ egress: { ...report().egress!, droppedPackets: 99 } }) }, reconnectGraceOver: true, now: NOW + 30_000 });
  const state = computeNodeStatus({ existing: a, objectGeneration: 1, plan, observations: { session, lastSeenAt: NOW + 30_000, report: report({ models: [] }) }, reconnectGraceOver: true, now: NOW + 30_000 });
  expect(counters).not.toEqual(a);
  expect(withoutVolatileFields(counters)).toEqual(withoutVolatileFields(a));
  expect(withoutVolatileFields(state)).not.toEqual(withoutVolatileFields(a));
});

it('reports a plan that could not be published', () => {
  const s = computeNodeStatus({ existing: undefined, objectGeneration: 1, plan: { generation: 0, digest: '', requireSecureBoot: false, tooLarge: 'the plan is 9000000 bytes' }, observations: { session }, reconnectGraceOver: true, now: NOW });
  expect(s.plan).toBeUndefined();
  expect(s.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'PlanTooLarge' });
});

describe('the not-compliant taint', () => {
  const other = { key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' };
  const ours = { key: 'secai.io/not-compliant', effect: 'NoSchedule' };
  it.each<[string, { key: string; effect: string }[] | undefined, boolean, { key: string; effect: string }[] | undefined]>([
    ['added to a node without taints', undefined, false, [ours]],
    ['added next to other taints', [other], false, [other, ours]],
    ['left alone when present', [other, ours], false, undefined],
    ['removed, keeping other taints', [ours, other], true, [other]],
    ['left alone when absent and compliant', [other], true, undefined],
  ])('%s', (_, taints, compliant, expected) => {
    expect(taintsFor(taints, compliant)).toEqual(expected);
  });
  it('is told apart from a taint with the same key and another effect', () => {
    expect(hasNotCompliantTaint([{ key: 'secai.io/not-compliant', effect: 'NoExecute' }])).toBe(false);
  });
});

describe('status.audit and AuditVerified', () => {
  const key = D('e');
  const verifiedAt = NOW - 60_000;
  const verified = (treeSize: number, root: string) => ({ head: { treeSize, rootHash: Buffer.from(D(root), 'hex'), keyFingerprint: key }, at: verifiedAt });
  const condition = (s: SecAINodeStatus) => s.conditions?.find((c) => c.type === 'AuditVerified');
  const statusWith = (audit: Parameters<typeof computeNodeStatus>[0]['audit'], existing?: SecAINodeStatus) =>
    computeNodeStatus({ existing, objectGeneration: 1, plan, observations: { session, lastSeenAt: NOW, report: report() }, reconnectGraceOver: true, audit, now: NOW });

  it('is Unknown until a head is verified, and keeps what status says while this process knows nothing', () => {
    expect(condition(statusWith({}))).toMatchObject({ status: 'Unknown', reason: 'AwaitingAuditHead' });
    const before = statusWith({ verified: verified(12, '1') });
    const kept = statusWith(undefined, before);
    expect(kept.audit).toEqual(before.audit);
    expect(condition(kept)).toEqual(condition(before));
  });

  it('shows the verified head as the latest and the last verified one', () => {
    const s = statusWith({ verified: verified(12, '1') });
    expect(s.audit).toEqual({ treeSize: 12, rootHash: D('1'), verifiedTreeSize: 12, verifiedAt: '2026-06-01T11:59:00Z', keyFingerprint: key });
    expect(condition(s)).toMatchObject({ status: 'True', reason: 'Verified' });
  });

  it('shows a rejected head next to the last verified one, with the failure as reason and message', () => {
    const failure = { reason: HeadTransitionFailure.TreeShrank, message: 'tree shrank from 12 to 3 entries', at: NOW, head: { treeSize: 3, rootHash: D('3') } };
    const s = statusWith({ verified: verified(12, '1'), failure }, statusWith({ verified: verified(12, '1') }));
    expect(s.audit).toEqual({ treeSize: 3, rootHash: D('3'), verifiedTreeSize: 12, verifiedAt: '2026-06-01T11:59:00Z', keyFingerprint: key, failure: 'tree shrank from 12 to 3 entries' });
    expect(condition(s)).toMatchObject({ status: 'False', reason: 'TreeShrank', message: `${AUDIT_FAILURE_PREFIX}tree shrank from 12 to 3 entries` });
  });

  it.each([
    ['a verified head', { verified: verified(40, '4') }],
    ['a failure with its head', { verified: verified(40, '4'), failure: { reason: HeadTransitionFailure.Fork, message: 'two roots for size 40', at: NOW, head: { treeSize: 40, rootHash: D('5') } } }],
    ['a failure without a head', { verified: verified(40, '4'), failure: { reason: HeadTransitionFailure.ProofMissing, message: 'no proof', at: NOW } }],
    ['a failure on the first head', { failure: { reason: HeadTransitionFailure.BadSignature, message: 'signature does not verify', at: NOW } }],
  ])('reads back %s from status and computes the very same status from it (a restarted operator writes nothing)', (_what, verdict) => {
    const written = statusWith(verdict as Parameters<typeof statusWith>[0]);
    const reread = verdictFromStatus(written);
    expect(reread?.failure?.reason).toBe((verdict as { failure?: { reason: string } }).failure?.reason);
    if (!('failure' in verdict)) expect(reread?.verified?.head.treeSize).toBe(40);
    expect(statusWith(reread, written)).toEqual(written);
  });

  it('reads no baseline from a status an older operator wrote without verifying', () => {
    expect(verdictFromStatus({ audit: { treeSize: 5, rootHash: D('1') } })).toBeUndefined();
  });
});
