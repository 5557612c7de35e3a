// The verifier's pure parts: which PCRs a node is quoted over, and what a restarted operator reads
// back from SecAINode status (the enrolled keys, the last quote, a sticky key change), so that it
// holds the node to the keys enrolled before and writes nothing new.
import { generateKeyPairSync } from 'node:crypto';
import { VaultPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { AK_ATTRIBUTES, rsaPublic } from '../../../test/attestation/tpm-public.js';
import { computeNodeStatus } from '../controllers/node/status.js';
import { quoteSelection, verdictFromStatus, type AttestationVerdict } from './attestation-verifier.js';
import { checkAttestationKey } from './enrolment.js';
import { TpmAlg } from './tpm-structures.js';

it.each<[string, Partial<VaultPlan> | undefined, { bank: string; pcrs: number[] }]>([
  ['no VaultPolicy: the default selection', undefined, { bank: 'sha256', pcrs: [0, 2, 4, 7] }],
  ['the sealed PCRs and the expected ones, once each, ascending', { pcrBank: 'sha384', pcrs: [7, 0], expectedPcrs: [{ index: 16, value: '' }, { index: 7, value: '' }] }, { bank: 'sha384', pcrs: [0, 7, 16] }],
  ['a policy without PCRs', { pcrBank: 'sha256', pcrs: [] }, { bank: 'sha256', pcrs: [0, 2, 4, 7] }],
])('quotes %s', (_what, plan, expected) => {
  expect(quoteSelection(plan && VaultPlan.fromPartial(plan))).toEqual(expected);
});

describe('read back from status', () => {
  const NOW = Date.UTC(2026, 11, 7, 12, 0, 0);
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const checked = checkAttestationKey(rsaPublic(publicKey, { attributes: AK_ATTRIBUTES, scheme: [TpmAlg.RSASSA, TpmAlg.SHA256] }));
  if (!checked.ok) throw new Error(checked.message);
  const verdict: AttestationVerdict = {
    enrolment: { ekFingerprint: 'e'.repeat(64), ekCertificate: { subject: 'CN=unknown', issuer: 'CN=swtpm-localca', serial: '01', trusted: true }, akPublic: rsaPublic(publicKey, { attributes: AK_ATTRIBUTES, scheme: [TpmAlg.RSASSA, TpmAlg.SHA256] }), akName: checked.value.name, ak: checked.value.ak, enrolledAt: NOW - 60_000 },
    quote: {
      status: { verifiedAt: '2026-12-07T11:59:50Z', pcrBank: 'sha256', pcrs: [{ index: 7, value: '7'.repeat(64) }], resetCount: 2, eventLogEvents: 34, replayedPcrs: [7] },
      pcrDigest: '9'.repeat(64),
      mismatchedPcrs: [],
      secureBoot: 'Enabled',
      at: Date.parse('2026-12-07T11:59:50Z'),
    },
  };
  const plan = { generation: 1, digest: 'a'.repeat(64), requireSecureBoot: true };
  const status = (v: AttestationVerdict) => computeNodeStatus({ existing: undefined, objectGeneration: 1, plan, observations: undefined, reconnectGraceOver: true, attestation: v, now: NOW });

  it('gives back the enrolled keys and the last quote, and from them the very same status', () => {
    const written = status(verdict);
    const back = verdictFromStatus(written);
    expect(back.enrolment?.akName).toEqual(verdict.enrolment!.akName);
    expect(back.enrolment?.akPublic).toEqual(verdict.enrolment!.akPublic);
    expect(back).toMatchObject({ enrolment: { ekFingerprint: 'e'.repeat(64), enrolledAt: NOW - 60_000 }, quote: { pcrDigest: '9'.repeat(64), secureBoot: 'Enabled' } });
    expect(status(back)).toEqual(written);
  });

  it('keeps a key change sticky, and nothing else', () => {
    const changed = status({ ...verdict, failure: { reason: 'AttestationKeyChanged', message: 'another AK', at: NOW } });
    expect(verdictFromStatus(changed).failure).toMatchObject({ reason: 'AttestationKeyChanged', message: 'another AK' });
    const replayed = status({ ...verdict, failure: { reason: 'NonceReplayed', message: 'replayed', at: NOW } });
    expect(verdictFromStatus(replayed).failure).toBeUndefined();
  });

  it('trusts no AK from status that is not a restricted signing key, or whose Name does not match it', () => {
    const written = status(verdict);
    const wrongName = structuredClone(written);
    wrongName.attestation!.enrolment!.akName = '000b' + '0'.repeat(64);
    expect(verdictFromStatus(wrongName).enrolment).toBeUndefined();
    const notAnAk = structuredClone(written);
    notAnAk.attestation!.enrolment!.akPublic = rsaPublic(publicKey, { attributes: AK_ATTRIBUTES & ~(1 << 16) }).toString('base64');
    expect(verdictFromStatus(notAnAk).enrolment).toBeUndefined();
  });
});
