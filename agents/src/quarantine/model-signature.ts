// Offline verification of an OpenSSF model signature (OMS, the PyPI `model-signing` 1.x format): a
// sigstore bundle whose DSSE envelope carries an in-toto statement of predicate type
// https://model_signing/signature/v1.0. The predicate lists every file of the signed model with its
// SHA-256 ("resources"); the subject's digest is the SHA-256 over those digests in order. The
// artifact the node holds is one file of that model, so the check is: the envelope is signed by
// whom the policy trusts, the manifest is consistent, and it names our file with our digest (the
// digest of the one pass; the bytes are never read again).
//
// Methods, as `model_signing verify` has them:
// - key: a public key (the bundle's key hint, when present, must name it);
// - certificate: a signing certificate in the bundle that chains to a supplied CA chain
//   (intermediates and root), checked as of the certificate's notBefore (model_signing's rule:
//   there is no signed time), with digitalSignature key usage or the codeSigning extended usage;
// - sigstore: a Fulcio-style certificate for an identity and issuer, against a supplied
//   trusted_root.json, with a signed timestamp or transparency-log entry (signature.ts).
// Bundle parsing, DSSE pre-authentication encoding, X.509 parsing and chain building are
// @sigstore/bundle, @sigstore/core and @sigstore/verify; the statement checks are ours (no Node
// library reads the model_signing predicate).
import { createHash, createPublicKey, X509Certificate as NodeX509Certificate, verify as verifySignatureBytes, type KeyObject } from 'node:crypto';
import { bundleFromJSON, type Bundle } from '@sigstore/bundle';
import { dsse, X509Certificate } from '@sigstore/core';
import { Bundle as ProtoBundle } from '@sigstore/protobuf-specs';
import { VerificationError } from '@sigstore/verify';
import { verifyCertificateChain } from '@sigstore/verify/dist/key/certificate.js';
import { MAX_BUNDLE_BYTES, parseBundlePolicy, publicKeyHint, verifyBundleSigner, type BundlePolicy, type SignaturePolicy } from './signature.js';
import { failed, passed, Reason, Stage, type ReasonCode, type StageResult } from './verdict.js';

export const OMS_PREDICATE_TYPE = 'https://model_signing/signature/v1.0';
const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** A model of this many files is far larger than any the fleet runs. */
export const MAX_MANIFEST_RESOURCES = 100_000;
export const MAX_CERTIFICATE_CHAIN_BYTES = 256 * 1024;
const MAX_CHAIN_CERTIFICATES = 10;
const EKU_CODE_SIGNING = '1.3.6.1.5.5.7.3.3';

export type ModelSigningMethod =
  | { kind: 'key'; publicKeyPem: string }
  | { kind: 'certificate'; certificateChainPem: string }
  | { kind: 'sigstore'; issuer: string; subjectPattern: string; trustedRootJson: string };

export interface ModelSigningPolicy {
  kind: 'model-signing';
  method: ModelSigningMethod;
  /** The artifact's path in the signed model; absent when the model was signed as this one file. */
  file?: string;
}

/**
 * The policy for a verification method: an OpenSSF model signature when `modelSigning` is given,
 * else a cosign bundle over the artifact (which has no certificate-chain method: undefined).
 */
export function signaturePolicyOf(method: ModelSigningMethod, modelSigning?: { file?: string }): SignaturePolicy | undefined {
  if (modelSigning) return { kind: 'model-signing', method, ...modelSigning };
  if (method.kind === 'key') return method;
  if (method.kind === 'sigstore') return { ...method, kind: 'keyless' };
  return undefined;
}

function fail(reason: ReasonCode, message: string): StageResult {
  return failed(Stage.Signature, reason, message);
}

/** The hash model_signing signs with for an EC key: the curve's own (ec_key.get_ec_key_hash). */
function hashForKey(key: KeyObject): string | undefined {
  if (key.asymmetricKeyType !== 'ec') return undefined;
  return { 'prime256v1': 'sha256', 'secp384r1': 'sha384', 'secp521r1': 'sha512' }[key.asymmetricKeyDetails?.namedCurve ?? ''];
}

function verifyEnvelope(bundle: Bundle, key: KeyObject): StageResult | undefined {
  if (bundle.content.$case !== 'dsseEnvelope') return fail(Reason.BundleInvalid, 'the bundle has no DSSE envelope; a model signature signs an in-toto statement');
  const envelope = bundle.content.dsseEnvelope;
  const hash = hashForKey(key);
  if (!hash) return fail(Reason.AlgorithmUnsupported, 'model signatures are verified for P-256, P-384 and P-521 keys only');
  if (envelope.signatures.length !== 1) return fail(Reason.BundleInvalid, `the envelope has ${envelope.signatures.length} signatures; a model signature has one`);
  const signed = dsse.preAuthEncoding(envelope.payloadType, Buffer.from(envelope.payload));
  if (!verifySignatureBytes(hash, signed, key, Buffer.from(envelope.signatures[0]!.sig))) return fail(Reason.SignatureInvalid, 'the envelope signature does not verify with the signer\'s key');
  return undefined;
}

function pemCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.slice(0, MAX_CHAIN_CERTIFICATES + 1).map((b) => X509Certificate.parse(b));
}

/** model_signing's rule: KeyUsage digitalSignature, or else the codeSigning extended key usage. */
function canSign(cert: X509Certificate, der: Buffer): boolean {
  if (cert.extKeyUsage?.digitalSignature) return true;
  return (new NodeX509Certificate(der).keyUsage ?? []).includes(EKU_CODE_SIGNING);
}

function checkSigner(bundle: Bundle, digest: Buffer, method: ModelSigningMethod): StageResult | undefined {
  const material = bundle.verificationMaterial.content;
  if (method.kind === 'key') {
    let key: KeyObject;
    try {
      key = createPublicKey(method.publicKeyPem);
    } catch (e) {
      return fail(Reason.SignaturePolicyInvalid, `the public key is unusable: ${(e as Error).message.slice(0, 200)}`);
    }
    if (material.$case !== 'publicKey') return fail(Reason.KeyMismatch, 'the bundle carries a certificate; the policy expects a signature by its public key');
    // model_signing's hint is hex SHA-256 of the key's PEM; cosign's (attest-blob) base64 SHA-256 of its DER.
    const hints = [createHash('sha256').update(key.export({ format: 'pem', type: 'spki' })).digest('hex'), publicKeyHint(key)];
    if (material.publicKey.hint && !hints.includes(material.publicKey.hint)) return fail(Reason.KeyMismatch, 'the bundle was signed with another key (its key hint differs)');
    return verifyEnvelope(bundle, key);
  }
  if (method.kind === 'certificate') {
    let anchors: X509Certificate[];
    try {
      if (method.certificateChainPem.length > MAX_CERTIFICATE_CHAIN_BYTES) return fail(Reason.SignaturePolicyInvalid, 'the certificate chain is too large');
      anchors = pemCertificates(method.certificateChainPem);
    } catch (e) {
      return fail(Reason.SignaturePolicyInvalid, `the certificate chain is unusable: ${(e as Error).message.slice(0, 200)}`);
    }
    if (anchors.length === 0 || anchors.length > MAX_CHAIN_CERTIFICATES) return fail(Reason.SignaturePolicyInvalid, `the certificate chain must hold 1 to ${MAX_CHAIN_CERTIFICATES} PEM certificates`);
    let der: Buffer;
    if (material.$case === 'x509CertificateChain' && material.x509CertificateChain.certificates[0]) der = Buffer.from(material.x509CertificateChain.certificates[0].rawBytes);
    else if (material.$case === 'certificate') der = Buffer.from(material.certificate.rawBytes);
    else return fail(Reason.CertificateUntrusted, 'the bundle has no signing certificate; the policy expects one from its CA chain');
    const leaf = X509Certificate.parse(Buffer.from(der));
    try {
      const start = new Date(Math.min(...anchors.map((c) => c.notBefore.getTime())));
      const end = new Date(Math.max(...anchors.map((c) => c.notAfter.getTime())));
      verifyCertificateChain(leaf.notBefore, leaf, [{ certChain: anchors, validFor: { start, end } }]);
    } catch (e) {
      const cause = e instanceof VerificationError && e.cause instanceof Error ? `: ${e.cause.message}` : '';
      return fail(Reason.CertificateUntrusted, `the signing certificate does not chain to the supplied CA chain${cause}`.slice(0, 300));
    }
    if (!canSign(leaf, der)) return fail(Reason.CertificateUntrusted, 'the signing certificate allows neither digital signatures nor code signing');
    return verifyEnvelope(bundle, createPublicKey({ key: leaf.publicKey, format: 'der', type: 'spki' }));
  }
  const keyless: BundlePolicy = { kind: 'keyless', issuer: method.issuer, subjectPattern: method.subjectPattern, trustedRootJson: method.trustedRootJson };
  const parsed = parseBundlePolicy(keyless);
  return 'stage' in parsed ? parsed : verifyBundleSigner(bundle, digest, keyless, parsed);
}

interface Resource {
  name: string;
  digest: string;
}

/** The statement's manifest, or why it is not a model signature we can check. */
function readManifest(payload: Buffer): { resources: Resource[] } | StageResult {
  let statement: Record<string, unknown>;
  try {
    statement = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  } catch {
    return fail(Reason.ManifestInvalid, 'the signed statement is not JSON');
  }
  if (typeof statement !== 'object' || statement === null || statement._type !== IN_TOTO_STATEMENT_TYPE) return fail(Reason.ManifestInvalid, `the signed statement is not an in-toto ${IN_TOTO_STATEMENT_TYPE}`);
  if (statement.predicateType !== OMS_PREDICATE_TYPE) return fail(Reason.PredicateTypeMismatch, `the statement's predicate type is ${String(statement.predicateType).slice(0, 200)}, not ${OMS_PREDICATE_TYPE}`);
  const subjects = statement.subject;
  const rootDigest = Array.isArray(subjects) && subjects.length === 1 ? (subjects[0] as { digest?: { sha256?: unknown } }).digest?.sha256 : undefined;
  if (typeof rootDigest !== 'string') return fail(Reason.ManifestInvalid, 'the statement must have one subject with a sha256 digest');
  const predicate = statement.predicate as { serialization?: { method?: unknown; hash_type?: unknown }; resources?: unknown } | undefined;
  if (predicate?.serialization?.method !== 'files' || predicate.serialization.hash_type !== 'sha256') {
    return fail(Reason.AlgorithmUnsupported, `the manifest serializes the model as ${String(predicate?.serialization?.method).slice(0, 40)} with ${String(predicate?.serialization?.hash_type).slice(0, 40)}; only whole files with sha256 are checked`);
  }
  const list = predicate.resources;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_MANIFEST_RESOURCES) return fail(Reason.ManifestInvalid, `the manifest must list 1 to ${MAX_MANIFEST_RESOURCES} files`);
  const resources: Resource[] = [];
  const root = createHash('sha256');
  for (const r of list as unknown[]) {
    const { name, algorithm, digest } = (r ?? {}) as Record<string, unknown>;
    if (typeof name !== 'string' || name.length === 0 || name.length > 4096 || algorithm !== 'sha256' || typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest)) {
      return fail(Reason.ManifestInvalid, 'every manifest entry needs a name, algorithm sha256 and a 64-hex digest');
    }
    root.update(Buffer.from(digest, 'hex'));
    resources.push({ name, digest });
  }
  if (root.digest('hex') !== rootDigest) return fail(Reason.ManifestInvalid, 'the manifest is inconsistent: its files do not hash to the subject digest');
  return { resources };
}

/**
 * Verifies an OMS bundle for the artifact whose SHA-256 is `digestHex`. Pure apart from the clock
 * the sigstore method reads to check certificate validity against its timestamps.
 */
export function verifyModelSignatureOffline(bundleJson: string, digestHex: string, policy: ModelSigningPolicy): StageResult {
  if (!/^[0-9a-f]{64}$/.test(digestHex)) return fail(Reason.SignaturePolicyInvalid, 'the digest to verify is not 64 lowercase hex digits');
  if (Buffer.byteLength(bundleJson) > MAX_BUNDLE_BYTES) return fail(Reason.BundleInvalid, `the bundle exceeds ${MAX_BUNDLE_BYTES} bytes`);
  let bundle: Bundle;
  try {
    // model_signing's certificate method writes a v0.3 bundle with a whole x509CertificateChain,
    // which @sigstore/bundle's validation refuses (v0.3 allows only one certificate): the key and
    // certificate methods read the bundle with the protobuf-specs parser and check what they use.
    const json: unknown = JSON.parse(bundleJson);
    bundle = policy.method.kind === 'sigstore' ? bundleFromJSON(json) : (ProtoBundle.fromJSON(json) as Bundle);
    if (!bundle.verificationMaterial?.content) throw new Error('no verification material');
  } catch (e) {
    return fail(Reason.BundleInvalid, `the model signature is not a valid sigstore bundle: ${(e as Error).message.slice(0, 200)}`);
  }
  if (bundle.content?.$case !== 'dsseEnvelope') return fail(Reason.BundleInvalid, 'the bundle has no DSSE envelope; a model signature signs an in-toto statement');
  const envelope = bundle.content.dsseEnvelope;
  if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) return fail(Reason.BundleInvalid, `unsupported DSSE payload type ${envelope.payloadType.slice(0, 100)}`);

  // Who signed first: nothing the statement says counts before its signer is trusted.
  let signer: StageResult | undefined;
  try {
    signer = checkSigner(bundle, Buffer.from(digestHex, 'hex'), policy.method);
  } catch (e) {
    signer = fail(Reason.SignatureInvalid, `signature verification failed: ${(e as Error).message.slice(0, 300)}`);
  }
  if (signer && signer.status === 'failed') return signer;

  const manifest = readManifest(Buffer.from(envelope.payload));
  if ('stage' in manifest) return manifest;
  let entry: Resource | undefined;
  if (policy.file !== undefined) {
    entry = manifest.resources.find((r) => r.name === policy.file);
    if (!entry) return fail(Reason.ModelFileNotSigned, `the signed manifest lists ${manifest.resources.length} file(s) and not ${policy.file}`);
  } else {
    if (manifest.resources.length !== 1) return fail(Reason.ModelFileNotSigned, `the signed manifest lists ${manifest.resources.length} files; name the model's file in it`);
    entry = manifest.resources[0]!;
  }
  if (entry.digest !== digestHex) return fail(Reason.DigestNotSigned, `the signed manifest gives ${entry.name} another SHA-256 than this file's`);
  return passed(Stage.Signature, `an OpenSSF model signature (${policy.method.kind}) over ${entry.name}`, { kind: `model-signing/${policy.method.kind}`, file: entry.name, files: manifest.resources.length });
}
