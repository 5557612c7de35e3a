import { createHash } from 'node:crypto';
import { SecureBootState, Tpm2Mode, VaultPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { AttestationFailure, evaluateAttestation, namedPcrs } from './attestation.js';

const value = (byte: number) => Buffer.alloc(32, byte);
const hex = (byte: number) => value(byte).toString('hex');
const plan = VaultPlan.fromPartial({
  policy: 'fleet-vault',
  tpm2Mode: Tpm2Mode.TPM2_MODE_OPTIONAL,
  pcrBank: 'sha256',
  pcrs: [0, 2, 4, 7],
  requireSecureBoot: true,
  expectedPcrs: [
    { index: 7, value: hex(7) },
    { index: 11, value: hex(11) },
  ],
});
const live = new Map([0, 2, 4, 7, 11].map((p) => [p, value(p)]));
const enabled = SecureBootState.SECURE_BOOT_STATE_ENABLED;

it('names the bound and the expected PCRs, and digests their live values in ascending order', () => {
  expect(namedPcrs(plan)).toEqual([0, 2, 4, 7, 11]);
  const verdict = evaluateAttestation(plan, { secureBoot: enabled, tpmPresent: true, pcrs: live }, 42);
  const digest = createHash('sha256');
  for (const p of [0, 2, 4, 7, 11]) digest.update(value(p));
  expect(verdict).toEqual({
    attested: true,
    failures: [],
    report: { secureBoot: enabled, tpmPresent: true, pcrBank: 'sha256', pcrDigest: digest.digest('hex'), mismatchedPcrs: [], checkedUnixMillis: 42 },
  });
});

it.each([
  ['a changed PCR', { secureBoot: enabled, tpmPresent: true, pcrs: new Map([...live, [11, value(99)]]) }, [AttestationFailure.PcrMismatch], [11]],
  ['Secure Boot off', { secureBoot: SecureBootState.SECURE_BOOT_STATE_DISABLED, tpmPresent: true, pcrs: live }, [AttestationFailure.SecureBootNotEnabled], []],
  ['Secure Boot unknown', { secureBoot: SecureBootState.SECURE_BOOT_STATE_UNKNOWN, tpmPresent: true, pcrs: live }, [AttestationFailure.SecureBootNotEnabled], []],
  ['no TPM', { secureBoot: enabled, tpmPresent: false }, [AttestationFailure.TpmAbsent], [7, 11]],
  ['unreadable PCRs', { secureBoot: enabled, tpmPresent: true }, [AttestationFailure.PcrUnreadable], [7, 11]],
])('is not attested with %s', (_name, facts, failures, mismatched) => {
  const verdict = evaluateAttestation(plan, facts, 0);
  expect(verdict.attested).toBe(false);
  expect(verdict.failures).toEqual(failures);
  expect(verdict.report.mismatchedPcrs).toEqual(mismatched);
});

it('needs no TPM when the plan expects no PCR values and does not require TPM2', () => {
  const relaxed = { ...plan, expectedPcrs: [], requireSecureBoot: false };
  expect(evaluateAttestation(relaxed, { secureBoot: SecureBootState.SECURE_BOOT_STATE_UNKNOWN, tpmPresent: false }, 0)).toMatchObject({
    attested: true,
    report: { pcrDigest: '', mismatchedPcrs: [] },
  });
  expect(evaluateAttestation({ ...relaxed, tpm2Mode: Tpm2Mode.TPM2_MODE_REQUIRED }, { secureBoot: enabled, tpmPresent: false }, 0).failures).toEqual([
    AttestationFailure.TpmAbsent,
  ]);
});
