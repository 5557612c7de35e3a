// The per-tensor hash tree recorded in the trusted-store manifest: an RFC 6962 Merkle tree
// (leaf hash SHA-256(0x00 || leaf), node hash SHA-256(0x01 || left || right), split at the
// largest power of two below n) whose leaves bind each tensor's name to the SHA-256 of its bytes.
// With it a later check can prove one tensor's bytes without re-reading the whole file.
import { createHash } from 'node:crypto';

export interface TensorDigest {
  name: string;
  /** SHA-256 of the tensor's data bytes (without padding). */
  sha256: Uint8Array;
}

/** Leaf data: u32 LE byte length of the name, the UTF-8 name, the 32-byte digest. */
export function tensorLeaf(tensor: TensorDigest): Buffer {
  const name = Buffer.from(tensor.name, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(name.length);
  return Buffer.concat([length, name, tensor.sha256]);
}

function leafHash(leaf: Uint8Array): Buffer {
  return createHash('sha256').update(Buffer.from([0])).update(leaf).digest();
}

function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(Buffer.from([1])).update(left).update(right).digest();
}

/** The root over the leaves in order; the hash of the empty string for no leaves (RFC 6962). */
export function merkleRoot(leaves: readonly Uint8Array[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  // Bottom-up over levels gives the same tree as RFC 6962's recursive split: a lone last node is
  // promoted unchanged, which is what the split at the largest power of two below n does.
  let level = leaves.map(leafHash);
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    level = next;
  }
  return level[0]!;
}

export function tensorMerkleRoot(tensors: readonly TensorDigest[]): string {
  return merkleRoot(tensors.map(tensorLeaf)).toString('hex');
}
