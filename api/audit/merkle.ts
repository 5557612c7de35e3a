// RFC 6962 Merkle tree hashing, proof construction plans and proof verification (RFC 9162 §2.1.3.2
// and §2.1.4.2 give the verification algorithms for the RFC 6962 proofs). Pure: both the agent,
// which builds proofs over its on-disk tree, and the operator, which verifies them, use this file.
// Tree sizes and indexes are JavaScript numbers (safe integers), so every bit operation is written
// with arithmetic: JS bitwise operators truncate to 32 bits.
import { createHash } from 'node:crypto';

export const HASH_BYTES = 32;
/** A tree of 2^53 - 1 leaves needs at most 53 hashes per inclusion proof and 2 * 53 per consistency proof. */
export const MAX_TREE_SIZE = Number.MAX_SAFE_INTEGER;
export const MAX_INCLUSION_PROOF_HASHES = 64;
export const MAX_CONSISTENCY_PROOF_HASHES = 128;

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** SHA-256(0x00 || entry): the hash of one log entry. */
export function leafHash(entry: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(entry).digest();
}

/** SHA-256(0x01 || left || right): the hash of an interior node. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

/** The root of the empty tree, SHA-256 of the empty string. */
export function emptyTreeRoot(): Buffer {
  return createHash('sha256').digest();
}

/** The largest power of two strictly smaller than n (n >= 2): RFC 6962's split point k. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n <= MAX_TREE_SIZE;
}

/** MTH over leaf hashes held in memory (a reference for tests and small trees). */
export function rootOfLeafHashes(leaves: readonly Uint8Array[]): Buffer {
  const frontier = new MerkleFrontier();
  for (const leaf of leaves) frontier.append(leaf);
  return frontier.root();
}

/**
 * The right edge of a tree: the roots of its perfect subtrees, largest first (at most 53 hashes).
 * Appending is amortised O(1) hashing and the root is O(log n), so a verifier can stream a log of any
 * size and take the root at every size it needs.
 */
export class MerkleFrontier {
  private readonly nodes: { height: number; hash: Buffer }[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  append(leaf: Uint8Array): void {
    if (leaf.length !== HASH_BYTES) throw new Error(`a leaf hash has ${HASH_BYTES} bytes, got ${leaf.length}`);
    if (this.count >= MAX_TREE_SIZE) throw new Error('tree is full');
    let node: { height: number; hash: Buffer } = { height: 0, hash: Buffer.from(leaf) };
    for (let last = this.nodes.at(-1); last && last.height === node.height; last = this.nodes.at(-1)) {
      this.nodes.pop();
      node = { height: node.height + 1, hash: nodeHash(last.hash, node.hash) };
    }
    this.nodes.push(node);
    this.count += 1;
  }

  root(): Buffer {
    const last = this.nodes.at(-1);
    if (!last) return emptyTreeRoot();
    let hash = last.hash;
    for (let i = this.nodes.length - 2; i >= 0; i--) hash = nodeHash(this.nodes[i]!.hash, hash);
    return hash;
  }
}

/** A half-open range [begin, end) of leaves whose subtree hash (MTH of D[begin:end]) a proof needs. */
export interface LeafRange {
  begin: number;
  end: number;
}

/** The subtree ranges of RFC 6962 §2.1.1 PATH(index, D[size]), in proof order (leaf side first). */
export function inclusionProofRanges(index: number, size: number): LeafRange[] {
  if (!isSize(size) || !Number.isSafeInteger(index) || index < 0 || index >= size) {
    throw new RangeError(`no inclusion proof for leaf ${index} in a tree of ${size}`);
  }
  const ranges: LeafRange[] = [];
  let begin = 0;
  let end = size;
  // Walk from the root down to the leaf; each step records the sibling subtree, so reverse at the end.
  while (end - begin > 1) {
    const k = splitPoint(end - begin);
    if (index < begin + k) {
      ranges.push({ begin: begin + k, end });
      end = begin + k;
    } else {
      ranges.push({ begin, end: begin + k });
      begin += k;
    }
  }
  return ranges.reverse();
}

/** The subtree ranges of RFC 6962 §2.1.2 PROOF(fromSize, D[toSize]), in proof order. */
export function consistencyProofRanges(fromSize: number, toSize: number): LeafRange[] {
  if (!isSize(fromSize) || !isSize(toSize) || fromSize > toSize) {
    throw new RangeError(`no consistency proof from ${fromSize} to ${toSize}`);
  }
  if (fromSize === 0 || fromSize === toSize) return [];
  const ranges: LeafRange[] = [];
  // SUBPROOF(m, D[begin:end], b), unrolled: each step records one subtree, deepest last, so reverse.
  let m = fromSize;
  let begin = 0;
  let end = toSize;
  let startsFromOldRoot = true;
  while (m !== end - begin) {
    const n = end - begin;
    const k = splitPoint(n);
    if (m <= k) {
      ranges.push({ begin: begin + k, end });
      end = begin + k;
    } else {
      ranges.push({ begin, end: begin + k });
      begin += k;
      m -= k;
      startsFromOldRoot = false;
    }
  }
  if (!startsFromOldRoot) ranges.push({ begin, end });
  return ranges.reverse();
}

/**
 * Splits a proof range into aligned perfect subtrees (largest first). RFC 6962 proof ranges always
 * start at a multiple of a power of two at least as large as the range, so each piece is a node a
 * store can keep; folding the pieces from the right gives the range's MTH.
 */
export function perfectSubtrees(range: LeafRange): { begin: number; height: number }[] {
  const pieces: { begin: number; height: number }[] = [];
  let begin = range.begin;
  let remaining = range.end - range.begin;
  if (!Number.isSafeInteger(begin) || begin < 0 || !Number.isSafeInteger(remaining) || remaining <= 0) {
    throw new RangeError(`bad leaf range [${range.begin}, ${range.end})`);
  }
  while (remaining > 0) {
    let width = 1;
    let height = 0;
    while (width * 2 <= remaining) {
      width *= 2;
      height += 1;
    }
    if (begin % width !== 0) throw new RangeError(`leaf range [${range.begin}, ${range.end}) is not a Merkle subtree`);
    pieces.push({ begin, height });
    begin += width;
    remaining -= width;
  }
  return pieces;
}

/** Combines the hashes of perfectSubtrees(range), in the same order, into the range's MTH. */
export function foldPerfectSubtrees(hashes: readonly Uint8Array[]): Buffer {
  const last = hashes.at(-1);
  if (!last) throw new RangeError('no subtrees to fold');
  let hash: Buffer = Buffer.from(last);
  for (let i = hashes.length - 2; i >= 0; i--) hash = nodeHash(hashes[i]!, hash);
  return hash;
}

function isHash(value: Uint8Array | undefined): value is Uint8Array {
  return value !== undefined && value.length === HASH_BYTES;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

const isOdd = (n: number) => n % 2 === 1;
const half = (n: number) => Math.floor(n / 2);

/** The root that an inclusion proof leads to, or undefined when the proof has the wrong shape. */
export function rootFromInclusionProof(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
): Buffer | undefined {
  if (!isSize(size) || !Number.isSafeInteger(index) || index < 0 || index >= size) return undefined;
  if (!isHash(leaf) || proof.length > MAX_INCLUSION_PROOF_HASHES || !proof.every(isHash)) return undefined;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) return undefined;
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 ? r : undefined;
}

/** RFC 9162 §2.1.3.2: whether `proof` shows the leaf at `index` in the tree of `size` with `root`. */
export function verifyInclusionProof(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const computed = rootFromInclusionProof(leaf, index, size, proof);
  return computed !== undefined && isHash(root) && sameBytes(computed, root);
}

/**
 * RFC 9162 §2.1.4.2: whether `proof` shows that the tree of `fromSize` with `fromRoot` is a prefix of
 * the tree of `toSize` with `toRoot`. Equal sizes need an empty proof and equal roots; the empty tree
 * is a prefix of every tree.
 */
export function verifyConsistencyProof(
  fromSize: number,
  toSize: number,
  fromRoot: Uint8Array,
  toRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isSize(fromSize) || !isSize(toSize) || fromSize > toSize) return false;
  if (!isHash(fromRoot) || !isHash(toRoot)) return false;
  if (proof.length > MAX_CONSISTENCY_PROOF_HASHES || !proof.every(isHash)) return false;
  if (fromSize === toSize) return proof.length === 0 && sameBytes(fromRoot, toRoot);
  if (fromSize === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  // When fromSize is a power of two the old root is itself a node of the new tree and is not sent.
  const path = isPowerOfTwo(fromSize) ? [fromRoot, ...proof] : [...proof];
  let fn = fromSize - 1;
  let sn = toSize - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && sameBytes(fr, fromRoot) && sameBytes(sr, toRoot);
}

function isPowerOfTwo(n: number): boolean {
  let p = 1;
  while (p < n) p *= 2;
  return p === n;
}
