// cosign signatures of OCI artifacts, verified offline at Fetch before the model blob is pulled.
// `cosign sign --key` (v3, its default new bundle format) stores a sigstore bundle v0.3 as an OCI
// artifact (artifactType application/vnd.dev.sigstore.bundle.v0.3+json) whose subject is the signed
// manifest, listed by the referrers API or, where the registry has none (CNCF distribution 3.0), in
// the referrers tag schema's index under the tag `sha256-<manifest hex>`. The bundle's DSSE envelope
// signs an in-toto statement of predicate type https://sigstore.dev/cosign/sign/v1 whose subject is
// the manifest digest. The node reads the referrers (API first, then the tag), fetches each bundle
// manifest and blob by digest (bounded, hashed), and accepts the artifact when one bundle names this
// manifest digest and is signed by the Model's public key; otherwise the first bundle's reason.
import { readFile, unlink } from 'node:fs/promises';
import { bundleFromJSON } from '@sigstore/bundle';
import { fetchToStaging, type FetchOptions } from './fetch.js';
import { MAX_BUNDLE_BYTES, parseBundlePolicy, verifyBundleSigner } from './signature.js';
import { failed, Reason, Stage, type ReasonCode, type StageResult } from './verdict.js';

export const SIGSTORE_BUNDLE_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
const INDEX_TYPE = 'application/vnd.oci.image.index.v1+json';
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const DIGEST = /^sha256:[0-9a-f]{64}$/;

export const OCI_SIGNATURE_LIMITS = {
  /** Referrer indexes and bundle manifests: a few KiB each. */
  manifestBytes: 256 * 1024,
  /** Bundles tried per artifact. */
  bundles: 8,
} as const;

type Refusal = { reason: ReasonCode; message: string };

/** GETs a small document into memory through fetch.ts (egress, redirects, limits); a refusal on failure. */
async function getSmall(url: string, stagingDir: string, options: FetchOptions, maxBytes: number, accept?: string, sha256?: string): Promise<Buffer | Refusal> {
  const got = await fetchToStaging(url, stagingDir, { ...options, maxBytes, ...(accept ? { accept } : {}), ...(sha256 ? { expectSha256: sha256 } : {}) });
  if (!got.file) return { reason: got.stage.reason, message: got.stage.message };
  try {
    return await readFile(got.file.path);
  } finally {
    await unlink(got.file.path).catch(() => undefined);
  }
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The bundle manifests an index (referrers API answer or tag-schema index) lists; pure. */
export function bundleReferrers(index: unknown, limits = OCI_SIGNATURE_LIMITS): string[] {
  const manifests = (index as { manifests?: unknown } | undefined)?.manifests;
  if (!Array.isArray(manifests)) return [];
  return manifests
    .filter((d: { artifactType?: unknown; digest?: unknown }) => d?.artifactType === SIGSTORE_BUNDLE_TYPE && typeof d.digest === 'string' && DIGEST.test(d.digest))
    .map((d: { digest: string }) => d.digest)
    .slice(0, limits.bundles);
}

/**
 * Checks one cosign bundle against the manifest digest and the public key; undefined when it holds.
 * Pure apart from sigstore's clock.
 */
export function verifyCosignBundle(bundleJson: string, manifestDigest: string, publicKeyPem: string): Refusal | undefined {
  const policy = { kind: 'key' as const, publicKeyPem };
  const parsed = parseBundlePolicy(policy);
  if ('status' in parsed) return { reason: parsed.reason, message: parsed.message };
  let bundle;
  try {
    bundle = bundleFromJSON(JSON.parse(bundleJson));
  } catch (e) {
    return { reason: Reason.BundleInvalid, message: `not a sigstore bundle: ${(e as Error).message.slice(0, 200)}` };
  }
  if (bundle.content.$case !== 'dsseEnvelope' || bundle.content.dsseEnvelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    return { reason: Reason.BundleInvalid, message: 'the bundle is not a DSSE envelope over an in-toto statement (cosign sign v3)' };
  }
  const statement = parseJson(Buffer.from(bundle.content.dsseEnvelope.payload)) as { predicateType?: unknown; subject?: unknown } | undefined;
  if (!statement) return { reason: Reason.BundleInvalid, message: 'the signed statement is not JSON' };
  if (statement.predicateType !== COSIGN_SIGN_PREDICATE) return { reason: Reason.PredicateTypeMismatch, message: `the statement's predicate type is ${String(statement.predicateType).slice(0, 100)}, not ${COSIGN_SIGN_PREDICATE}` };
  const hex = manifestDigest.slice('sha256:'.length);
  const subjects = Array.isArray(statement.subject) ? (statement.subject as { digest?: { sha256?: unknown } }[]) : [];
  if (!subjects.some((s) => s?.digest?.sha256 === hex)) return { reason: Reason.DigestNotSigned, message: `the signature is over another manifest, not ${manifestDigest.slice(0, 23)}...` };
  const signer = verifyBundleSigner(bundle, Buffer.from(hex, 'hex'), policy, parsed);
  return signer ? { reason: signer.reason, message: signer.message } : undefined;
}

/**
 * Finds and verifies the cosign signature of `manifestDigest` in `base` (https://registry/v2/repo);
 * undefined when one bundle verifies, else a Fetch failure.
 */
export async function verifyOciCosignSignature(base: string, manifestDigest: string, publicKeyPem: string, stagingDir: string, options: FetchOptions, limits = OCI_SIGNATURE_LIMITS): Promise<StageResult | undefined> {
  const fail = (reason: ReasonCode, message: string) => failed(Stage.Fetch, reason, `cosign signature: ${message}`);
  let referrers: string[] = [];
  const api = await getSmall(`${base}/referrers/${manifestDigest}?artifactType=${encodeURIComponent(SIGSTORE_BUNDLE_TYPE)}`, stagingDir, options, limits.manifestBytes, INDEX_TYPE);
  if (Buffer.isBuffer(api)) referrers = bundleReferrers(parseJson(api), limits);
  if (referrers.length === 0) {
    const tag = await getSmall(`${base}/manifests/sha256-${manifestDigest.slice(7)}`, stagingDir, options, limits.manifestBytes, INDEX_TYPE);
    if (Buffer.isBuffer(tag)) referrers = bundleReferrers(parseJson(tag), limits);
    else if (tag.reason !== Reason.HttpStatus && tag.reason !== Reason.NotFound) return fail(tag.reason, `the referrers tag: ${tag.message}`);
  }
  if (referrers.length === 0) return fail(Reason.OciSignatureMissing, `no sigstore bundle refers to ${manifestDigest.slice(0, 23)}... (referrers API and the sha256- tag)`);
  let first: Refusal | undefined;
  for (const digest of referrers) {
    const refusal = await verifyReferrer(base, digest, manifestDigest, publicKeyPem, stagingDir, options, limits);
    if (!refusal) return undefined;
    first ??= refusal;
  }
  return fail(first!.reason, first!.message);
}

async function verifyReferrer(base: string, digest: string, manifestDigest: string, publicKeyPem: string, stagingDir: string, options: FetchOptions, limits: typeof OCI_SIGNATURE_LIMITS): Promise<Refusal | undefined> {
  const bytes = await getSmall(`${base}/manifests/${digest}`, stagingDir, options, limits.manifestBytes, MANIFEST_TYPE, digest.slice(7));
  if (!Buffer.isBuffer(bytes)) return { reason: bytes.reason, message: `the bundle manifest: ${bytes.message}` };
  const manifest = parseJson(bytes) as { layers?: { mediaType?: unknown; digest?: unknown; size?: unknown }[] } | undefined;
  const layer = manifest?.layers?.find((l) => l?.mediaType === SIGSTORE_BUNDLE_TYPE);
  if (!layer || typeof layer.digest !== 'string' || !DIGEST.test(layer.digest) || typeof layer.size !== 'number' || layer.size > MAX_BUNDLE_BYTES) {
    return { reason: Reason.BundleInvalid, message: 'the bundle manifest has no sigstore bundle layer within the size limit' };
  }
  const bundle = await getSmall(`${base}/blobs/${layer.digest}`, stagingDir, options, MAX_BUNDLE_BYTES, undefined, layer.digest.slice(7));
  if (!Buffer.isBuffer(bundle)) return { reason: bundle.reason, message: `the bundle: ${bundle.message}` };
  return verifyCosignBundle(bundle.toString('utf8'), manifestDigest, publicKeyPem);
}
