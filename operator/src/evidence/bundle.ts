// The offline evidence bundle of one node (`kubectl secai evidence` / `verify`): what an auditor
// needs to check, without cluster access, that the node's history, boot and enforcement are what
// the fleet says. Four parts, each checked on its own and each named when it fails:
//   auditLog     the node's newest signed tree head and the consistency proof from the last head
//                the operator verified before (the node's Ed25519 key signs the heads);
//   attestation  a TPM2 quote over a fresh nonce, signed by the AK the operator enrolled by
//                credential activation, the quoted PCR values and the boot event log;
//   plan         the plan generation and digest the node holds, and the digest of its egress table
//                as read back from the kernel (the operator's word);
//   models       the quarantine manifest of every model the node trusts (the node's word).
// The operator signs a statement of the bundle's identity and each part's SHA-256 with its own
// Ed25519 evidence key, whose public key travels in the bundle (and in the cluster's ConfigMap
// `secai-evidence-key`, to pin it). Pure: building and verifying are functions of bytes.
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { verifyHeadTransition } from '../../../api/audit/tree-head.js';
import { canonicalJson } from '../../../api/canonical-json.js';
import { verifyQuote } from '../attestation/quote-verification.js';
import { parseTpm2bPublic } from '../attestation/tpm-structures.js';

export const EVIDENCE_API_VERSION = 'secai.io/evidence/v1';
export const EVIDENCE_PARTS = ['auditLog', 'attestation', 'plan', 'models'] as const;
export type EvidencePart = (typeof EVIDENCE_PARTS)[number];

/** Bytes are base64, hashes and digests lowercase hex. */
export interface AuditLogPart {
  nodeKey: string;
  verified: { treeSize: number; rootHash: string };
  head: { treeSize: number; rootHash: string; timestampUnixMillis: number; signature: string };
  proof: string[];
}

export interface AttestationPart {
  ekFingerprint: string;
  /** TPM2B_PUBLIC of the AK. */
  akPublic: string;
  nonce: string;
  pcrBank: string;
  pcrs: number[];
  attest: string;
  signature: string;
  pcrValues: { index: number; value: string }[];
  eventLog: string;
}

export interface PlanPart {
  generation: number;
  digest: string;
  appliedGeneration: number;
  appliedDigest: string;
  /** Of the egress table read back from the kernel. */
  rulesetDigest: string;
}

export interface ModelPart {
  sha256: string;
  /** The node's trust manifest, as it wrote it. */
  manifest: Record<string, unknown>;
}

export interface EvidenceParts {
  auditLog: AuditLogPart;
  attestation: AttestationPart;
  plan: PlanPart;
  models: ModelPart[];
}

export interface EvidenceBundle {
  apiVersion: typeof EVIDENCE_API_VERSION;
  node: string;
  requestId: string;
  collectedAt: string;
  parts: EvidenceParts;
  operator: { publicKey: string; fingerprint: string };
  signature: { partDigests: Record<EvidencePart, string>; value: string };
}

const sha256 = (text: string | Buffer) => createHash('sha256').update(text).digest('hex');

export function partDigest(part: unknown): string {
  return sha256(canonicalJson(part));
}

export function operatorKeyFingerprint(publicKey: KeyObject): string {
  return sha256(publicKey.export({ type: 'spki', format: 'der' }));
}

function statement(bundle: Pick<EvidenceBundle, 'apiVersion' | 'node' | 'requestId' | 'collectedAt' | 'operator'>, partDigests: Record<EvidencePart, string>): string {
  return canonicalJson({ apiVersion: bundle.apiVersion, node: bundle.node, requestId: bundle.requestId, collectedAt: bundle.collectedAt, operator: bundle.operator.fingerprint, partDigests });
}

export function signEvidence(input: { node: string; requestId: string; collectedAt: string; parts: EvidenceParts }, key: { privateKey: KeyObject; publicKey: KeyObject }): EvidenceBundle {
  const operator = { publicKey: key.publicKey.export({ type: 'spki', format: 'pem' }).toString(), fingerprint: operatorKeyFingerprint(key.publicKey) };
  const partDigests = Object.fromEntries(EVIDENCE_PARTS.map((p) => [p, partDigest(input.parts[p])])) as Record<EvidencePart, string>;
  const head = { apiVersion: EVIDENCE_API_VERSION, node: input.node, requestId: input.requestId, collectedAt: input.collectedAt, operator } as const;
  return { ...head, parts: input.parts, signature: { partDigests, value: sign(null, Buffer.from(statement(head, partDigests)), key.privateKey).toString('base64') } };
}

export interface Finding {
  part: EvidencePart | 'bundle' | 'operator';
  ok: boolean;
  /** What the part proves, or why it fails. */
  text: string;
}

const MAX_BUNDLE_MODELS = 256;
const b64 = (s: unknown) => Buffer.from(typeof s === 'string' ? s : '', 'base64');
const hexBytes = (s: unknown) => Buffer.from(typeof s === 'string' && /^[0-9a-f]*$/.test(s) ? s : '', 'hex');

/**
 * Verifies a bundle with no cluster access. `pinnedKey` is the operator evidence key the auditor
 * already trusts (PEM); without it the bundle's own key is reported by fingerprint.
 */
export function verifyEvidence(bundle: EvidenceBundle, pinnedKey?: string): Finding[] {
  const findings: Finding[] = [];
  const add = (part: Finding['part'], ok: boolean, text: string) => findings.push({ part, ok, text });
  if (bundle?.apiVersion !== EVIDENCE_API_VERSION || !bundle.parts || !bundle.signature?.partDigests) {
    add('bundle', false, `not a ${EVIDENCE_API_VERSION} evidence bundle`);
    return findings;
  }
  let key: KeyObject;
  try {
    key = createPublicKey(bundle.operator.publicKey);
  } catch {
    add('operator', false, 'the operator public key cannot be read');
    return findings;
  }
  const fingerprint = operatorKeyFingerprint(key);
  const signedOk =
    fingerprint === bundle.operator.fingerprint &&
    verify(null, Buffer.from(statement(bundle, bundle.signature.partDigests)), key, b64(bundle.signature.value));
  if (!signedOk) add('operator', false, 'the operator signature over the bundle does not verify: the bundle or its statement was altered');
  else if (pinnedKey !== undefined && operatorKeyFingerprint(createPublicKey(pinnedKey)) !== fingerprint) add('operator', false, `signed by operator key ${fingerprint.slice(0, 16)}, not the key given`);
  else add('operator', true, `signed by operator evidence key ${fingerprint.slice(0, 16)}${pinnedKey ? ' (the key given)' : ' (not pinned: compare with the cluster\'s secai-evidence-key ConfigMap)'} for node ${bundle.node}, collected ${bundle.collectedAt}`);

  for (const part of EVIDENCE_PARTS) {
    if (partDigest(bundle.parts[part]) !== bundle.signature.partDigests[part]) add(part, false, 'altered after the operator signed the bundle');
  }
  const altered = new Set(findings.filter((f) => !f.ok).map((f) => f.part));

  // auditLog: the node's own signature over its newest head, and the proof that it extends the last verified one.
  const a = bundle.parts.auditLog;
  const nodeKey = b64(a?.nodeKey);
  const base = { treeSize: a?.verified?.treeSize ?? 0, rootHash: hexBytes(a?.verified?.rootHash), keyFingerprint: sha256(nodeKey) };
  const head = { treeSize: a?.head?.treeSize ?? -1, rootHash: hexBytes(a?.head?.rootHash), timestampUnixMillis: a?.head?.timestampUnixMillis ?? 0, signature: b64(a?.head?.signature) };
  const proof = { fromSize: base.treeSize, toHead: head, hashes: (a?.proof ?? []).map(hexBytes) };
  const transition = verifyHeadTransition(base.treeSize > 0 ? base : undefined, head, base.treeSize > 0 ? proof : undefined, nodeKey);
  if (!transition.ok) add('auditLog', false, `${transition.failure}: ${transition.message}`);
  else if (!altered.has('auditLog')) add('auditLog', true, `the node's log of ${head.treeSize} entries, signed by node key ${base.keyFingerprint.slice(0, 16)}, extends the ${base.treeSize}-entry head the operator verified before (consistency proof of ${proof.hashes.length} hashes)`);

  // attestation: a quote of the enrolled AK over the bundle's nonce, its PCRs and the event log replayed to them.
  const t = bundle.parts.attestation;
  try {
    const ak = parseTpm2bPublic(b64(t.akPublic), 'the AK');
    const verdict = verifyQuote({
      ak,
      request: { nonce: hexBytes(t.nonce), issuedAt: 0, bank: t.pcrBank, pcrs: t.pcrs },
      usedNonces: [],
      evidence: { attest: b64(t.attest), signature: b64(t.signature), pcrValues: t.pcrValues.map((p) => ({ index: p.index, value: hexBytes(p.value) })), eventLog: b64(t.eventLog) },
      expected: { expectedPcrs: [] },
      now: 0,
      nonceMaxAgeMs: Number.MAX_SAFE_INTEGER,
    });
    if (!verdict.ok) add('attestation', false, `${verdict.reason}: ${verdict.message}`);
    else if (!altered.has('attestation')) {
      const log = verdict.quote.eventLog ? `; the boot event log (${verdict.quote.eventLog.events} events) replays to PCRs ${verdict.quote.eventLog.replayedPcrs.join(', ')}` : '; no boot event log';
      add('attestation', true, `the TPM holding the AK the operator enrolled (EK ${t.ekFingerprint.slice(0, 16)}) quoted ${t.pcrBank} PCRs ${t.pcrs.join(', ')} over the bundle's nonce${log}`);
    }
  } catch (error) {
    add('attestation', false, `cannot be read: ${(error as Error).message}`);
  }

  // plan: the operator's word, bound by its signature.
  const p = bundle.parts.plan;
  if (!altered.has('plan')) {
    const enforced = p.appliedGeneration === p.generation && p.appliedDigest === p.digest;
    add('plan', true, `the operator says the node ${enforced ? 'enforces' : 'does not yet enforce'} plan generation ${p.generation} (${p.digest.slice(0, 16)}), its egress table read back from the kernel as ${p.rulesetDigest.slice(0, 16) || 'nothing'}`);
  }

  // models: the node's manifests; each must name its own digest and a trusted verdict.
  const models = bundle.parts.models;
  if (!Array.isArray(models) || models.length > MAX_BUNDLE_MODELS) add('models', false, 'not a list of at most 256 manifests');
  else {
    const wrong = models.filter((m) => m.manifest?.sha256 !== m.sha256 || (m.manifest?.verdict as { trusted?: unknown } | undefined)?.trusted !== true);
    if (wrong.length > 0) add('models', false, `${wrong.length} manifest(s) do not name their digest with a trusted verdict: ${wrong.map((m) => String(m.sha256).slice(0, 16)).join(', ')}`);
    else if (!altered.has('models')) add('models', true, `${models.length} trusted model(s), each with the node's quarantine manifest: ${models.map((m) => `${String(m.manifest.name)} ${m.sha256.slice(0, 16)}`).join(', ') || 'none'}`);
  }
  return findings;
}
