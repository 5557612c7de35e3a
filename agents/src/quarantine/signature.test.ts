// Offline verification of bundles made by the real cosign: keyed and keyless (own CA, loopback
// TSA), message signatures and DSSE attestations, and each way a signature must be refused.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSigningLab, TEST_IDENTITY, TEST_ISSUER, type SigningLab } from '../../../test/quarantine/signing-fixtures.js';
import { tinyModelBytes } from '../../../test/support/tiny-model.js';
import { isAnchoredPattern, verifySignatureOffline, type BundlePolicy } from './signature.js';
import { Reason } from './verdict.js';

let lab: SigningLab;
let dir: string;
let model: string;
let digest: string;
let otherModel: string;
const bundles: Record<string, string> = {};

beforeAll(async () => {
  lab = await startSigningLab();
  dir = mkdtempSync(join(tmpdir(), 'signature-test-'));
  model = join(dir, 'model.gguf');
  const bytes = tinyModelBytes();
  writeFileSync(model, bytes);
  digest = createHash('sha256').update(bytes).digest('hex');
  otherModel = join(dir, 'other.gguf');
  writeFileSync(otherModel, tinyModelBytes(2));
  bundles.keyed = await lab.signBlob(model);
  bundles.otherKey = await lab.signBlob(model, 'other');
  bundles.otherFile = await lab.signBlob(otherModel);
  bundles.attestation = await lab.attestBlob(model);
  bundles.keyless = await lab.signKeyless(model);
  bundles.keylessOtherCa = await lab.signKeyless(model, { ca: 'other' });
  bundles.keylessNoTimestamp = await lab.signKeyless(model, { timestamp: false });
}, 120_000);

afterAll(async () => {
  await lab?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const key = (): BundlePolicy => ({ kind: 'key', publicKeyPem: lab.publicKeyPem });
const keyless = (change: Partial<Extract<BundlePolicy, { kind: 'keyless' }>> = {}): BundlePolicy => ({
  kind: 'keyless',
  issuer: TEST_ISSUER,
  subjectPattern: `^${TEST_IDENTITY.replaceAll('.', '\\.')}$`,
  trustedRootJson: lab.trustedRootJson,
  ...change,
});

/** Flips one character of the base64 signature inside a bundle. */
function tamperSignature(bundle: string): string {
  const json = JSON.parse(bundle);
  const sig: string = json.messageSignature.signature;
  const bytes = Buffer.from(sig, 'base64');
  bytes[bytes.length - 2]! ^= 0x01;
  json.messageSignature.signature = bytes.toString('base64');
  return JSON.stringify(json);
}

it('accepts a keyed message signature over the digest of the one pass', () => {
  expect(verifySignatureOffline(bundles.keyed!, digest, key())).toMatchObject({ status: 'passed', details: { kind: 'key', content: 'messageSignature' } });
});

it('accepts a keyed DSSE attestation naming the digest', () => {
  expect(verifySignatureOffline(bundles.attestation!, digest, key())).toMatchObject({ status: 'passed', details: { content: 'dsseEnvelope' } });
});

it('accepts a keyless signature from the trusted CA, timestamped by the trusted TSA, for the expected identity', () => {
  expect(verifySignatureOffline(bundles.keyless!, digest, keyless())).toMatchObject({ status: 'passed', details: { kind: 'keyless' } });
});

describe('refuses', () => {
  it.each([
    ['a signature over another digest', () => verifySignatureOffline(bundles.otherFile!, digest, key()), Reason.DigestNotSigned],
    ['a bundle checked against another file', () => verifySignatureOffline(bundles.keyed!, createHash('sha256').update('x').digest('hex'), key()), Reason.DigestNotSigned],
    ['an attestation for another file', () => verifySignatureOffline(bundles.attestation!, createHash('sha256').update('x').digest('hex'), key()), Reason.DigestNotSigned],
    ['a signature by another key', () => verifySignatureOffline(bundles.otherKey!, digest, key()), Reason.KeyMismatch],
    ['a bundle checked against another key', () => verifySignatureOffline(bundles.keyed!, digest, { kind: 'key', publicKeyPem: lab.otherPublicKeyPem }), Reason.KeyMismatch],
    ['a tampered signature', () => verifySignatureOffline(tamperSignature(bundles.keyed!), digest, key()), Reason.SignatureInvalid],
    ['a tampered keyless signature', () => verifySignatureOffline(tamperSignature(bundles.keyless!), digest, keyless()), Reason.TimestampInvalid],
    ['a tampered bundle that no longer parses', () => verifySignatureOffline(bundles.keyed!.replace('messageSignature', 'messageSignatur'), digest, key()), Reason.BundleInvalid],
    ['bytes that are not JSON', () => verifySignatureOffline('{"mediaType":', digest, key()), Reason.BundleInvalid],
    ['a certificate from an untrusted CA', () => verifySignatureOffline(bundles.keylessOtherCa!, digest, keyless()), Reason.CertificateUntrusted],
    ['a certificate checked against another trusted root', () => verifySignatureOffline(bundles.keyless!, digest, keyless({ trustedRootJson: lab.otherTrustedRootJson })), Reason.CertificateUntrusted],
    ['another identity', () => verifySignatureOffline(bundles.keyless!, digest, keyless({ subjectPattern: '^ops@secai\\.example$' })), Reason.IdentityMismatch],
    ['another issuer', () => verifySignatureOffline(bundles.keyless!, digest, keyless({ issuer: 'https://accounts.example' })), Reason.IdentityMismatch],
    ['a keyless signature without a signed timestamp', () => verifySignatureOffline(bundles.keylessNoTimestamp!, digest, keyless()), Reason.TimestampInvalid],
    ['a keyed bundle under a keyless policy', () => verifySignatureOffline(bundles.keyed!, digest, keyless()), Reason.CertificateUntrusted],
    ['a certificate bundle under a key policy', () => verifySignatureOffline(bundles.keyless!, digest, key()), Reason.KeyMismatch],
    ['an unanchored identity pattern', () => verifySignatureOffline(bundles.keyless!, digest, keyless({ subjectPattern: 'secai\\.example' })), Reason.SignaturePolicyInvalid],
    ['a pattern whose $ is escaped', () => verifySignatureOffline(bundles.keyless!, digest, keyless({ subjectPattern: '^release@secai\\.example\\$' })), Reason.SignaturePolicyInvalid],
    ['an unusable public key', () => verifySignatureOffline(bundles.keyed!, digest, { kind: 'key', publicKeyPem: 'not a key' }), Reason.SignaturePolicyInvalid],
    ['an unusable trusted root', () => verifySignatureOffline(bundles.keyless!, digest, keyless({ trustedRootJson: '[' })), Reason.SignaturePolicyInvalid],
  ])('%s', (_name, verify, reason) => {
    expect(verify()).toMatchObject({ stage: 'Signature', status: 'failed', reason });
  });
});

it('an identity pattern must be anchored at both ends', () => {
  expect(isAnchoredPattern('^a@b\\.c$')).toBe(true);
  expect(isAnchoredPattern('^a@b\\\\$')).toBe(true);
  for (const p of ['a@b\\.c', '^a@b', 'a@b$', '^a\\$', '^']) expect(isAnchoredPattern(p)).toBe(false);
});
