// Offline sigstore verification of a model's bundle over the digest of the one pass, with
// @sigstore/verify + @sigstore/bundle + @sigstore/protobuf-specs (the top-level sigstore.verify()
// fetches a TUF root and fails offline). Nothing here touches the network or the artifact bytes:
// - message-signature bundles (cosign sign-blob): the bundle's digest must be ours, and the
//   signature is checked over our digest (digest-signature.ts), never over re-read bytes;
// - DSSE bundles (cosign attest-blob, in-toto statements): the signature covers the small
//   statement, whose subjects must name our digest.
// Keyed policies trust one public key. Keyless policies trust a supplied trusted_root.json, an
// exact issuer and an anchored subject pattern, and need a signed timestamp (RFC 3161 or a
// transparency-log entry) because without one sigstore cannot date the short-lived certificate.
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { bundleFromJSON, type Bundle } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { PolicyError, toSignedEntity, toTrustMaterial, VerificationError, Verifier, type SignedEntity } from '@sigstore/verify';
import { UnsupportedKeyError, verifyDigestSignature } from './digest-signature.js';
import type { ModelSigningPolicy } from './model-signature.js';
import { failed, passed, Reason, Stage, type ReasonCode, type StageResult } from './verdict.js';

export const MAX_BUNDLE_BYTES = 1024 * 1024;
export const MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024;

/** How a cosign / sigstore bundle over the artifact's own digest is verified. */
export type BundlePolicy =
  | { kind: 'key'; publicKeyPem: string }
  | { kind: 'keyless'; issuer: string; subjectPattern: string; trustedRootJson: string };

/** Either a bundle over the artifact's digest or an OpenSSF model signature (model-signature.ts). */
export type SignaturePolicy = BundlePolicy | ModelSigningPolicy;

/**
 * An anchored pattern starts with ^ and ends with an unescaped $, so that it cannot match a
 * longer identity (sigstore-js tests the SAN with an unanchored RegExp: 'dehamer' accepts
 * 'brian@dehamer.com').
 */
export function isAnchoredPattern(pattern: string): boolean {
  if (pattern.length < 2 || !pattern.startsWith('^') || !pattern.endsWith('$')) return false;
  let backslashes = 0;
  for (let i = pattern.length - 2; i >= 0 && pattern[i] === '\\'; i--) backslashes++;
  return backslashes % 2 === 0;
}

/** The key hint cosign writes: base64 SHA-256 of the DER SubjectPublicKeyInfo. */
export function publicKeyHint(key: KeyObject): string {
  return createHash('sha256').update(key.export({ format: 'der', type: 'spki' })).digest('base64');
}

const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

function fail(reason: ReasonCode, message: string): StageResult {
  return failed(Stage.Signature, reason, message);
}

function errorReason(e: unknown): ReasonCode {
  if (e instanceof PolicyError) return Reason.IdentityMismatch;
  if (!(e instanceof VerificationError)) return Reason.SignatureInvalid;
  switch (e.code) {
    case 'SIGNATURE_ERROR': return Reason.SignatureInvalid;
    case 'PUBLIC_KEY_ERROR': return Reason.KeyMismatch;
    case 'CERTIFICATE_ERROR': return Reason.CertificateUntrusted;
    case 'TIMESTAMP_ERROR': return Reason.TimestampInvalid;
    default: return e.code.startsWith('TLOG') ? Reason.TransparencyLogInvalid : Reason.SignatureInvalid;
  }
}

/** True when the in-toto statement lists a subject with our sha256 digest. */
function statementNamesDigest(payload: Buffer, digestHex: string): boolean {
  if (payload.length > MAX_BUNDLE_BYTES) return false;
  let statement: unknown;
  try {
    statement = JSON.parse(payload.toString('utf8'));
  } catch {
    return false;
  }
  const subjects = (statement as { subject?: unknown }).subject;
  if (!Array.isArray(subjects)) return false;
  return subjects.some((s: unknown) => typeof s === 'object' && s !== null && (s as { digest?: { sha256?: unknown } }).digest?.sha256 === digestHex);
}

/** The signed entity sigstore verifies, with the message signature checked over our digest. */
function signedEntity(bundle: Bundle, digest: Buffer): SignedEntity {
  const entity = toSignedEntity(bundle, Buffer.alloc(0));
  if (bundle.content.$case !== 'messageSignature') return entity;
  const { signature, messageDigest } = bundle.content.messageSignature;
  const claimed = Buffer.from(messageDigest?.digest ?? []);
  const sig = Buffer.from(signature);
  return {
    ...entity,
    signature: {
      signature: sig,
      compareSignature: (other) => sig.equals(other),
      compareDigest: (other) => claimed.equals(other),
      compareSignedDigest: (other) => claimed.equals(other),
      verifySignature: (key) => verifyDigestSignature(key, digest, sig),
    },
  };
}

interface ParsedPolicy {
  key?: KeyObject;
  trustedRoot: TrustedRoot;
  subject?: RegExp;
}

/** The policy's key or trusted root; a broken policy is the operator's mistake, not the artifact's. */
export function parseBundlePolicy(policy: BundlePolicy): ParsedPolicy | StageResult {
  try {
    if (policy.kind === 'key') {
      return {
        key: createPublicKey(policy.publicKeyPem),
        trustedRoot: TrustedRoot.fromJSON({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] }),
      };
    }
    if (!isAnchoredPattern(policy.subjectPattern)) return fail(Reason.SignaturePolicyInvalid, `subject pattern ${policy.subjectPattern} is not anchored with ^ and $`);
    if (!policy.issuer) return fail(Reason.SignaturePolicyInvalid, 'keyless verification needs an issuer');
    if (policy.trustedRootJson.length > MAX_TRUSTED_ROOT_BYTES) return fail(Reason.SignaturePolicyInvalid, 'the trusted root is too large');
    return { subject: new RegExp(policy.subjectPattern), trustedRoot: TrustedRoot.fromJSON(JSON.parse(policy.trustedRootJson)) };
  } catch (e) {
    return fail(Reason.SignaturePolicyInvalid, `the signature policy is unusable: ${(e as Error).message.slice(0, 200)}`);
  }
}

/**
 * Checks who signed the bundle under the policy: the key (and its hint) or the certificate, its
 * chain, timestamps, log entries and identity; undefined when the signer is trusted. The caller has
 * checked what the bundle signs.
 */
export function verifyBundleSigner(bundle: Bundle, digest: Buffer, policy: BundlePolicy, parsed: ParsedPolicy): StageResult | undefined {
  const { key, trustedRoot, subject } = parsed;
  const material = bundle.verificationMaterial.content;
  if (policy.kind === 'key') {
    if (material.$case !== 'publicKey') return fail(Reason.KeyMismatch, 'the bundle carries a certificate; the policy expects a signature by its public key');
    const ours = publicKeyHint(key!);
    if (material.publicKey.hint && material.publicKey.hint !== ours) return fail(Reason.KeyMismatch, 'the bundle was signed with another key (its key hint differs)');
  } else if (material.$case === 'publicKey') {
    return fail(Reason.CertificateUntrusted, 'the bundle has no certificate; keyless verification needs one');
  }

  try {
    const trust = toTrustMaterial(trustedRoot, () => ({ publicKey: key!, validFor: () => true }));
    const verifier = new Verifier(trust, {
      tlogThreshold: 0,
      ctlogThreshold: 0,
      // A certificate is only as good as the time it is checked at: keyless needs a signed one.
      timestampThreshold: policy.kind === 'keyless' ? 1 : 0,
    });
    const entity = signedEntity(bundle, digest);
    if (policy.kind === 'key') {
      // The key is trusted at any time and transparency is not asked for, so timestamps and log
      // entries prove nothing here; left in, sigstore would reject them for want of their roots.
      entity.timestamps = [];
      entity.tlogEntries = [];
    }
    verifier.verify(entity, policy.kind === 'keyless' ? { subjectAlternativeName: subject, extensions: { issuer: policy.issuer } } : undefined);
  } catch (e) {
    if (e instanceof UnsupportedKeyError) return fail(Reason.AlgorithmUnsupported, e.message);
    return fail(errorReason(e), `signature verification failed: ${(e as Error).message.slice(0, 300)}`);
  }
  return undefined;
}

/**
 * Verifies `bundleJson` for the artifact whose SHA-256 is `digestHex` under `policy`. Pure apart
 * from the clock sigstore reads to check certificate validity against timestamps.
 */
export function verifySignatureOffline(bundleJson: Uint8Array | string, digestHex: string, policy: BundlePolicy): StageResult {
  const digest = Buffer.from(digestHex, 'hex');
  if (!/^[0-9a-f]{64}$/.test(digestHex)) return fail(Reason.SignaturePolicyInvalid, 'the digest to verify is not 64 lowercase hex digits');
  const parsed = parseBundlePolicy(policy);
  if ('stage' in parsed) return parsed;

  const text = typeof bundleJson === 'string' ? bundleJson : Buffer.from(bundleJson).toString('utf8');
  if (Buffer.byteLength(text) > MAX_BUNDLE_BYTES) return fail(Reason.BundleInvalid, `the bundle exceeds ${MAX_BUNDLE_BYTES} bytes`);
  let bundle: Bundle;
  try {
    bundle = bundleFromJSON(JSON.parse(text));
  } catch (e) {
    return fail(Reason.BundleInvalid, `the bundle is not a valid sigstore bundle: ${(e as Error).message.slice(0, 200)}`);
  }

  // Whose digest is signed.
  if (bundle.content.$case === 'messageSignature') {
    const md = bundle.content.messageSignature.messageDigest;
    if (!md || md.algorithm !== 1 /* SHA2_256 */) return fail(Reason.AlgorithmUnsupported, 'the bundle does not sign a SHA-256 message digest');
    if (!Buffer.from(md.digest).equals(digest)) return fail(Reason.DigestNotSigned, 'the bundle signs another artifact (its digest differs from this file\'s SHA-256)');
  } else {
    const envelope = bundle.content.dsseEnvelope;
    if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) return fail(Reason.BundleInvalid, `unsupported DSSE payload type ${envelope.payloadType}`);
    if (!statementNamesDigest(Buffer.from(envelope.payload), digestHex)) return fail(Reason.DigestNotSigned, 'the signed in-toto statement does not name this file\'s SHA-256');
  }

  const signer = verifyBundleSigner(bundle, digest, policy, parsed);
  if (signer) return signer;
  return passed(Stage.Signature, policy.kind === 'key' ? 'signed by the configured key' : 'signed by a certificate of the trusted root for the expected identity', {
    kind: policy.kind,
    content: bundle.content.$case,
  });
}
