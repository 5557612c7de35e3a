// Signed tree heads of a node's audit log and the check the operator runs on every new head: the
// head is signed by the node's key, the key is the one verified before, and the new tree contains
// the last verified tree (consistency proof). Pure; the only dependency is node:crypto.
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { ConsistencyProof, SignedTreeHead } from '../gen/proto/secai/fleet/v1/agent.js';
import { HASH_BYTES, MAX_TREE_SIZE, verifyConsistencyProof } from './merkle.js';

export const ED25519_PUBLIC_KEY_BYTES = 32;
export const ED25519_SIGNATURE_BYTES = 64;

/**
 * What a node signs for a tree head: four lines of ASCII, each ending in a newline —
 *   secai.io/audit-tree-head/v1
 *   <tree size, decimal>
 *   <root hash, 64 lowercase hex>
 *   <timestamp, Unix milliseconds, decimal>
 * The first line separates these signatures from anything else the key might ever sign.
 */
export const TREE_HEAD_CONTEXT = 'secai.io/audit-tree-head/v1';

export interface TreeHead {
  treeSize: number;
  rootHash: Uint8Array;
  timestampUnixMillis: number;
}

/** Why a head is malformed, or undefined when its fields are in range. */
export function treeHeadProblem(head: TreeHead): string | undefined {
  if (!Number.isSafeInteger(head.treeSize) || head.treeSize < 0 || head.treeSize > MAX_TREE_SIZE) {
    return `tree size ${head.treeSize} is not a non-negative safe integer`;
  }
  if (head.rootHash.length !== HASH_BYTES) return `root hash has ${head.rootHash.length} bytes, not ${HASH_BYTES}`;
  if (!Number.isSafeInteger(head.timestampUnixMillis) || head.timestampUnixMillis < 0) {
    return `timestamp ${head.timestampUnixMillis} is not a non-negative safe integer`;
  }
  return undefined;
}

/** The exact bytes a tree head signature covers. */
export function treeHeadSigningInput(head: TreeHead): Buffer {
  const problem = treeHeadProblem(head);
  if (problem) throw new RangeError(problem);
  const root = Buffer.from(head.rootHash).toString('hex');
  return Buffer.from(`${TREE_HEAD_CONTEXT}\n${head.treeSize}\n${root}\n${head.timestampUnixMillis}\n`, 'ascii');
}

/** SHA-256 (lowercase hex) of the raw 32-byte Ed25519 public key: how status and head files name a key. */
export function keyFingerprint(publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest('hex');
}

/** A KeyObject for a raw Ed25519 public key, or undefined when it is not 32 bytes. */
export function ed25519PublicKey(raw: Uint8Array): KeyObject | undefined {
  if (raw.length !== ED25519_PUBLIC_KEY_BYTES) return undefined;
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
  } catch {
    return undefined;
  }
}

/** Whether `head.signature` is a valid Ed25519 signature of the head by `publicKey` (raw 32 bytes). */
export function verifyTreeHeadSignature(head: SignedTreeHead, publicKey: Uint8Array): boolean {
  if (treeHeadProblem(head) !== undefined || head.signature.length !== ED25519_SIGNATURE_BYTES) return false;
  const key = ed25519PublicKey(publicKey);
  if (!key) return false;
  return verify(null, treeHeadSigningInput(head), key, head.signature);
}

/** What the verifier remembers about the last head it accepted from a node. */
export interface VerifiedHead {
  treeSize: number;
  rootHash: Uint8Array;
  /** keyFingerprint() of the node key that signed it. */
  keyFingerprint: string;
}

/** Stable failure codes (CamelCase, usable as condition reasons). */
export const HeadTransitionFailure = {
  /** A field is out of range: wrong hash, key or signature length, a negative size. */
  MalformedHead: 'MalformedHead',
  /** The public key is not the one the last verified head was signed with. */
  KeyChanged: 'KeyChanged',
  /** The signature does not verify under the public key. */
  BadSignature: 'BadSignature',
  /** The new head has fewer entries than the last verified one: the log was truncated or replaced. */
  TreeShrank: 'TreeShrank',
  /** Same size as the last verified head with another root: two histories of one size. */
  Fork: 'Fork',
  /** The tree grew but no consistency proof came with the head. */
  ProofMissing: 'ProofMissing',
  /** The consistency proof does not connect the last verified head to the new one. */
  ProofInvalid: 'ProofInvalid',
} as const;
export type HeadTransitionFailure = (typeof HeadTransitionFailure)[keyof typeof HeadTransitionFailure];

export type HeadTransitionResult =
  | { ok: true; verified: VerifiedHead; firstHead: boolean }
  | { ok: false; failure: HeadTransitionFailure; message: string };

function fail(failure: HeadTransitionFailure, message: string): HeadTransitionResult {
  return { ok: false, failure, message };
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/**
 * Accepts `newHead` from a node whose last verified head is `lastVerified` (undefined on first
 * contact, which trusts the key on first use), given the node's public key and a consistency proof
 * from lastVerified.treeSize to newHead. A node that lost or replaced its log cannot pass: a new key
 * is KeyChanged, an emptied log is TreeShrank, and a regrown log has no valid proof (ProofInvalid).
 */
export function verifyHeadTransition(
  lastVerified: VerifiedHead | undefined,
  newHead: SignedTreeHead,
  proof: ConsistencyProof | undefined,
  publicKey: Uint8Array,
): HeadTransitionResult {
  const problem = treeHeadProblem(newHead);
  if (problem) return fail(HeadTransitionFailure.MalformedHead, problem);
  if (publicKey.length !== ED25519_PUBLIC_KEY_BYTES) {
    return fail(HeadTransitionFailure.MalformedHead, `public key has ${publicKey.length} bytes, not ${ED25519_PUBLIC_KEY_BYTES}`);
  }
  const fingerprint = keyFingerprint(publicKey);
  if (lastVerified && fingerprint !== lastVerified.keyFingerprint) {
    return fail(HeadTransitionFailure.KeyChanged, `node key ${fingerprint} is not the verified key ${lastVerified.keyFingerprint}`);
  }
  if (!verifyTreeHeadSignature(newHead, publicKey)) {
    return fail(HeadTransitionFailure.BadSignature, `signature of the head of size ${newHead.treeSize} does not verify`);
  }
  const verified: VerifiedHead = { treeSize: newHead.treeSize, rootHash: Buffer.from(newHead.rootHash), keyFingerprint: fingerprint };
  if (!lastVerified) return { ok: true, verified, firstHead: true };
  const from = lastVerified.treeSize;
  if (newHead.treeSize < from) {
    return fail(HeadTransitionFailure.TreeShrank, `tree shrank from ${from} to ${newHead.treeSize} entries`);
  }
  if (newHead.treeSize === from) {
    if (Buffer.compare(Buffer.from(newHead.rootHash), Buffer.from(lastVerified.rootHash)) === 0) {
      return { ok: true, verified, firstHead: false };
    }
    return fail(HeadTransitionFailure.Fork, `two roots for size ${from}: verified ${hex(lastVerified.rootHash)}, now ${hex(newHead.rootHash)}`);
  }
  if (from === 0) return { ok: true, verified, firstHead: false };
  if (!proof) return fail(HeadTransitionFailure.ProofMissing, `tree grew from ${from} to ${newHead.treeSize} without a consistency proof`);
  if (proof.fromSize !== from) {
    return fail(HeadTransitionFailure.ProofInvalid, `proof starts at size ${proof.fromSize}, not at the verified size ${from}`);
  }
  if (proof.toHead && (proof.toHead.treeSize !== newHead.treeSize || Buffer.compare(proof.toHead.rootHash, newHead.rootHash) !== 0)) {
    return fail(HeadTransitionFailure.ProofInvalid, `proof leads to size ${proof.toHead.treeSize}, not to the new head`);
  }
  if (!verifyConsistencyProof(from, newHead.treeSize, lastVerified.rootHash, newHead.rootHash, proof.hashes)) {
    return fail(HeadTransitionFailure.ProofInvalid, `tree of size ${newHead.treeSize} does not extend the verified tree of size ${from}`);
  }
  return { ok: true, verified, firstHead: false };
}

/** The JSON form of a VerifiedHead that an auditor keeps outside the node (`secai-audit verify --head`). */
export interface VerifiedHeadJson {
  treeSize: number;
  rootHash: string;
  keyFingerprint: string;
}

export function verifiedHeadToJson(head: VerifiedHead): VerifiedHeadJson {
  return { treeSize: head.treeSize, rootHash: hex(head.rootHash), keyFingerprint: head.keyFingerprint };
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Parses a VerifiedHeadJson (already JSON-decoded), or throws saying which field is wrong. */
export function verifiedHeadFromJson(value: unknown): VerifiedHead {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('a verified head is a JSON object');
  const { treeSize, rootHash, keyFingerprint: fingerprint } = value as Record<string, unknown>;
  if (typeof treeSize !== 'number' || !Number.isSafeInteger(treeSize) || treeSize < 0) {
    throw new Error('treeSize must be a non-negative integer');
  }
  if (typeof rootHash !== 'string' || !SHA256_HEX.test(rootHash)) throw new Error('rootHash must be 64 lowercase hex digits');
  if (typeof fingerprint !== 'string' || !SHA256_HEX.test(fingerprint)) {
    throw new Error('keyFingerprint must be 64 lowercase hex digits');
  }
  return { treeSize, rootHash: Buffer.from(rootHash, 'hex'), keyFingerprint: fingerprint };
}
