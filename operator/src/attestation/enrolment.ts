// What the operator checks before it trusts a node's TPM keys, as pure functions: the endorsement key
// (EK) is a TPM-resident restricted decryption key, matches its EK certificate where the TPM has one,
// and, when the fleet names EK CAs, chains to one of them; the attestation key (AK) is a TPM-resident
// restricted signing key (only such a key refuses to sign data that imitates a TPM quote). Then the
// AK's binding to the EK is proven by credential activation: makeCredential here, ActivateCredential
// on the node.
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import { attributeNames, ObjectAttribute as A, parseTpm2bPublic, TpmAlg, TpmParseError, tpmName, type TpmPublic } from './tpm-structures.js';
import { credentialParameters } from './make-credential.js';

/** Why enrolment failed (stable codes; they become the Attested condition's reason). */
export const EnrolmentFailure = {
  EndorsementKeyInvalid: 'EndorsementKeyInvalid',
  EndorsementCertificateInvalid: 'EndorsementCertificateInvalid',
  EndorsementCertificateUntrusted: 'EndorsementCertificateUntrusted',
  AttestationKeyInvalid: 'AttestationKeyInvalid',
  CredentialActivationFailed: 'CredentialActivationFailed',
} as const;
export type EnrolmentFailure = (typeof EnrolmentFailure)[keyof typeof EnrolmentFailure];

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: EnrolmentFailure; message: string };

const fail = <T>(reason: EnrolmentFailure, message: string): Checked<T> => ({ ok: false, reason, message });

/** An EK certificate is a few KiB; NV indices may pad it. */
const MAX_EK_CERTIFICATE = 8 * 1024;
const MIN_RSA_BITS = 2048;

/** SHA-256 (hex) of the key's SubjectPublicKeyInfo: the EK fingerprint, comparable with its certificate. */
export function keyFingerprint(pub: TpmPublic): string {
  return createHash('sha256').update(pub.key.export({ type: 'spki', format: 'der' })).digest('hex');
}

function missing(attributes: number, required: number[]): string[] {
  return required.filter((bit) => (attributes & bit) === 0).flatMap((bit) => attributeNames(bit));
}

/** The AK must be a restricted signing key that never leaves its TPM, with a signing scheme we verify. */
export function checkAttestationKey(tpm2bPublic: Buffer): Checked<{ ak: TpmPublic; name: Buffer }> {
  let ak: TpmPublic;
  try {
    ak = parseTpm2bPublic(tpm2bPublic, 'AK public area');
  } catch (err) {
    return fail(EnrolmentFailure.AttestationKeyInvalid, (err as Error).message);
  }
  const lacking = missing(ak.attributes, [A.fixedTPM, A.fixedParent, A.sensitiveDataOrigin, A.restricted, A.sign]);
  if (lacking.length > 0) return fail(EnrolmentFailure.AttestationKeyInvalid, `the AK is not a TPM-resident restricted signing key: it lacks ${lacking.join(', ')}`);
  if (ak.attributes & A.decrypt) return fail(EnrolmentFailure.AttestationKeyInvalid, 'the AK is also a decryption key');
  if (ak.symmetric.alg !== TpmAlg.NULL) return fail(EnrolmentFailure.AttestationKeyInvalid, 'the AK has a symmetric algorithm: it is a storage key, not a signing key');
  if (ak.type === 'rsa' && ak.keyBits < MIN_RSA_BITS) return fail(EnrolmentFailure.AttestationKeyInvalid, `an RSA AK of ${ak.keyBits} bits is too weak`);
  const schemes: number[] = ak.type === 'rsa' ? [TpmAlg.NULL, TpmAlg.RSASSA, TpmAlg.RSAPSS] : [TpmAlg.NULL, TpmAlg.ECDSA];
  if (!schemes.includes(ak.scheme.alg)) return fail(EnrolmentFailure.AttestationKeyInvalid, `the AK's signing scheme 0x${ak.scheme.alg.toString(16)} is not one the operator verifies`);
  if (ak.scheme.hashAlg === TpmAlg.SHA1) return fail(EnrolmentFailure.AttestationKeyInvalid, 'the AK signs with SHA-1');
  return { ok: true, value: { ak, name: tpmName(ak) } };
}

export interface EndorsementCertificateSummary {
  subject: string;
  issuer: string;
  serial: string;
  /** Whether it chains to one of the fleet's EK CAs (false when none are configured). */
  trusted: boolean;
}

/** The DER certificate at the start of an NV index's content (a TPM may pad it). */
function derPrefix(bytes: Buffer): Buffer {
  if (bytes.length < 4 || bytes[0] !== 0x30 || bytes[1] !== 0x82) throw new TpmParseError('not a DER certificate with a two-byte length');
  const length = 4 + bytes.readUInt16BE(2);
  if (length > bytes.length) throw new TpmParseError('the DER certificate is truncated');
  return bytes.subarray(0, length);
}

/**
 * Whether `cert` was issued by one of `anchors` or by an intermediate among them that chains to
 * one (at most four links). The anchors are the CAs the fleet administrator configured.
 */
function chainsTo(cert: X509Certificate, anchors: readonly X509Certificate[]): boolean {
  let current = cert;
  for (let depth = 0; depth < 4; depth++) {
    const issuer = anchors.find((a) => current.checkIssued(a) && current.verify(a.publicKey));
    if (!issuer) return false;
    if (issuer.checkIssued(issuer) || depth === 3) return true;
    current = issuer;
  }
  return false;
}

export interface EndorsementOptions {
  /** The fleet's EK CAs; when set, an EK without a certificate that chains to one is refused. */
  ekCas?: readonly X509Certificate[];
}

/**
 * The EK must be a TPM-resident restricted decryption key (what credential activation needs), and
 * its certificate, where the TPM has one, must certify exactly this key.
 */
export function checkEndorsementKey(
  tpm2bPublic: Buffer,
  certificate: Buffer | undefined,
  options: EndorsementOptions = {},
): Checked<{ ek: TpmPublic; fingerprint: string; certificate?: EndorsementCertificateSummary }> {
  let ek: TpmPublic;
  try {
    ek = parseTpm2bPublic(tpm2bPublic, 'EK public area');
    credentialParameters(ek);
  } catch (err) {
    return fail(EnrolmentFailure.EndorsementKeyInvalid, (err as Error).message);
  }
  const lacking = missing(ek.attributes, [A.fixedTPM, A.fixedParent, A.restricted, A.decrypt]);
  if (lacking.length > 0) return fail(EnrolmentFailure.EndorsementKeyInvalid, `the EK is not a TPM-resident restricted decryption key: it lacks ${lacking.join(', ')}`);
  if (ek.attributes & A.sign) return fail(EnrolmentFailure.EndorsementKeyInvalid, 'the EK is also a signing key');
  if (ek.keyBits < MIN_RSA_BITS) return fail(EnrolmentFailure.EndorsementKeyInvalid, `an RSA EK of ${ek.keyBits} bits is too weak`);
  const fingerprint = keyFingerprint(ek);
  const anchors = options.ekCas ?? [];
  if (!certificate || certificate.length === 0) {
    if (anchors.length > 0) return fail(EnrolmentFailure.EndorsementCertificateUntrusted, 'the TPM has no EK certificate, and the fleet requires one from its EK CAs');
    return { ok: true, value: { ek, fingerprint } };
  }
  if (certificate.length > MAX_EK_CERTIFICATE) return fail(EnrolmentFailure.EndorsementCertificateInvalid, `an EK certificate of ${certificate.length} bytes`);
  let cert: X509Certificate;
  let certified: Buffer;
  try {
    cert = new X509Certificate(derPrefix(certificate));
    // The certificate parses lazily: its key may still be undecodable.
    certified = cert.publicKey.export({ type: 'spki', format: 'der' });
  } catch (err) {
    return fail(EnrolmentFailure.EndorsementCertificateInvalid, `the EK certificate does not parse: ${(err as Error).message}`);
  }
  const presented = ek.key.export({ type: 'spki', format: 'der' });
  if (certified.length !== presented.length || !timingSafeEqual(certified, presented)) {
    return fail(EnrolmentFailure.EndorsementCertificateInvalid, 'the EK certificate certifies another key than the EK the node presented');
  }
  let trusted: boolean;
  try {
    trusted = anchors.length > 0 && chainsTo(cert, anchors);
  } catch (err) {
    return fail(EnrolmentFailure.EndorsementCertificateInvalid, `the EK certificate's signature cannot be checked: ${(err as Error).message}`);
  }
  if (anchors.length > 0 && !trusted) return fail(EnrolmentFailure.EndorsementCertificateUntrusted, `the EK certificate (issuer ${cert.issuer.replaceAll('\n', ', ')}) does not chain to the fleet's EK CAs`);
  const summary = { subject: cert.subject.replaceAll('\n', ', ').slice(0, 256), issuer: cert.issuer.replaceAll('\n', ', ').slice(0, 256), serial: cert.serialNumber.slice(0, 64), trusted };
  return { ok: true, value: { ek, fingerprint, certificate: summary } };
}

/** The operator's secret back from ActivateCredential, compared in constant time. */
export function credentialActivated(expected: Buffer, returned: Buffer): boolean {
  return returned.length === expected.length && timingSafeEqual(returned, expected);
}

/** Parses PEM certificates (the EK CA bundle). */
export function parseCertificateBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => new X509Certificate(block));
}
