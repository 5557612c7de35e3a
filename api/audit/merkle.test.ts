import fc from 'fast-check';
import {
  MerkleFrontier,
  consistencyProofRanges,
  emptyTreeRoot,
  foldPerfectSubtrees,
  inclusionProofRanges,
  leafHash,
  nodeHash,
  perfectSubtrees,
  rootOfLeafHashes,
  verifyConsistencyProof,
  verifyInclusionProof,
  type LeafRange,
} from './merkle.js';

// The test tree of RFC 6962 implementations (Certificate Transparency, Trillian, transparency-dev):
// eight leaves of 0 to 16 bytes, with the published roots of every prefix and a few published proofs.
const CT_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'];
const CT_ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const H = {
  leaf0: '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  leaf1: '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
  leaves01: 'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  leaves23: '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
  leaf4: 'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
  leaf5: '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
  leaves67: 'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
  leaves0123: 'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  leaves4567: '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
};

const ctLeafHashes = CT_LEAVES.map((leaf) => leafHash(Buffer.from(leaf, 'hex')));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytes = (h: string) => Buffer.from(h, 'hex');

/** Proof hashes for ranges, computed the slow way (MTH of each slice). */
function proofFor(ranges: LeafRange[], leaves: Buffer[]): Buffer[] {
  return ranges.map((r) => rootOfLeafHashes(leaves.slice(r.begin, r.end)));
}

function randomLeaves(n: number, seed: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`entry ${seed} ${i}`)));
}

describe('RFC 6962 hashing', () => {
  it('separates leaves from nodes with the 0x00 and 0x01 prefixes', () => {
    expect(hex(leafHash(Buffer.alloc(0)))).toBe(H.leaf0);
    expect(hex(nodeHash(ctLeafHashes[0]!, ctLeafHashes[1]!))).toBe(H.leaves01);
    expect(hex(emptyTreeRoot())).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it.each(CT_ROOTS.map((root, i) => [i + 1, root] as const))('gives the published root of the first %i test leaves', (size, root) => {
    expect(hex(rootOfLeafHashes(ctLeafHashes.slice(0, size)))).toBe(root);
  });
});

describe('inclusion proofs against the published vectors', () => {
  const cases: [index: number, size: number, proof: string[]][] = [
    [0, 1, []],
    [0, 8, [H.leaf1, H.leaves23, H.leaves4567]],
    [5, 8, [H.leaf4, H.leaves67, H.leaves0123]],
    [2, 3, [H.leaves01]],
    [1, 5, [H.leaf0, H.leaves23, H.leaf4]],
  ];

  it.each(cases)('leaf %i of %i', (index, size, proof) => {
    const built = proofFor(inclusionProofRanges(index, size), ctLeafHashes);
    expect(built.map(hex)).toEqual(proof);
    expect(verifyInclusionProof(ctLeafHashes[index]!, index, size, proof.map(bytes), bytes(CT_ROOTS[size - 1]!))).toBe(true);
  });

  it('rejects a proof for another leaf, index, size or root', () => {
    const proof = [H.leaf1, H.leaves23, H.leaves4567].map(bytes);
    const root = bytes(CT_ROOTS[7]!);
    expect(verifyInclusionProof(ctLeafHashes[1]!, 0, 8, proof, root)).toBe(false);
    expect(verifyInclusionProof(ctLeafHashes[0]!, 1, 8, proof, root)).toBe(false);
    // Leaf 0 has the same path shape in trees of 5 to 8 leaves; the signed head, not the proof, binds the size.
    expect(verifyInclusionProof(ctLeafHashes[0]!, 0, 4, proof, root)).toBe(false);
    expect(verifyInclusionProof(ctLeafHashes[0]!, 0, 8, proof, bytes(CT_ROOTS[6]!))).toBe(false);
    expect(verifyInclusionProof(ctLeafHashes[0]!, 0, 8, proof.slice(0, 2), root)).toBe(false);
    expect(verifyInclusionProof(ctLeafHashes[0]!, 8, 8, proof, root)).toBe(false);
    expect(verifyInclusionProof(ctLeafHashes[0]!, 0, 8, [...proof, bytes(H.leaf4)], root)).toBe(false);
  });
});

describe('consistency proofs against the published vectors', () => {
  const cases: [from: number, to: number, proof: string[]][] = [
    [1, 1, []],
    [1, 8, [H.leaf1, H.leaves23, H.leaves4567]],
    [6, 8, [H.leaf5, H.leaves67, H.leaves0123]],
    [2, 5, [H.leaves23, H.leaf4]],
  ];

  it.each(cases)('from %i to %i', (from, to, proof) => {
    expect(proofFor(consistencyProofRanges(from, to), ctLeafHashes).map(hex)).toEqual(proof);
    expect(verifyConsistencyProof(from, to, bytes(CT_ROOTS[from - 1]!), bytes(CT_ROOTS[to - 1]!), proof.map(bytes))).toBe(true);
  });

  it('treats the empty tree as a prefix of every tree and equal sizes as equal roots', () => {
    expect(consistencyProofRanges(0, 8)).toEqual([]);
    expect(verifyConsistencyProof(0, 8, emptyTreeRoot(), bytes(CT_ROOTS[7]!), [])).toBe(true);
    expect(verifyConsistencyProof(8, 8, bytes(CT_ROOTS[7]!), bytes(CT_ROOTS[7]!), [])).toBe(true);
    expect(verifyConsistencyProof(8, 8, bytes(CT_ROOTS[7]!), bytes(CT_ROOTS[6]!), [])).toBe(false);
    expect(verifyConsistencyProof(8, 7, bytes(CT_ROOTS[7]!), bytes(CT_ROOTS[6]!), [])).toBe(false);
  });

  it('rejects a proof between other trees', () => {
    const proof = [H.leaf5, H.leaves67, H.leaves0123].map(bytes);
    expect(verifyConsistencyProof(6, 8, bytes(CT_ROOTS[4]!), bytes(CT_ROOTS[7]!), proof)).toBe(false);
    expect(verifyConsistencyProof(6, 8, bytes(CT_ROOTS[5]!), bytes(CT_ROOTS[6]!), proof)).toBe(false);
    expect(verifyConsistencyProof(5, 8, bytes(CT_ROOTS[5]!), bytes(CT_ROOTS[7]!), proof)).toBe(false);
    expect(verifyConsistencyProof(6, 8, bytes(CT_ROOTS[5]!), bytes(CT_ROOTS[7]!), proof.slice(1))).toBe(false);
    expect(verifyConsistencyProof(6, 8, bytes(CT_ROOTS[5]!), bytes(CT_ROOTS[7]!), [])).toBe(false);
  });
});

describe('properties over random trees', () => {
  const sizeAndIndex = fc.integer({ min: 1, max: 300 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 0, max: n - 1 })));
  const twoSizes = fc.integer({ min: 1, max: 300 }).chain((n) => fc.tuple(fc.integer({ min: 1, max: n }), fc.constant(n)));

  it('every inclusion proof verifies, and no other leaf, index or altered hash does', () => {
    fc.assert(
      fc.property(sizeAndIndex, fc.nat(), fc.nat(), ([size, index], seed, pick) => {
        const leaves = randomLeaves(size, seed);
        const root = rootOfLeafHashes(leaves);
        const proof = proofFor(inclusionProofRanges(index, size), leaves);
        expect(verifyInclusionProof(leaves[index]!, index, size, proof, root)).toBe(true);
        if (size > 1) {
          const other = (index + 1 + (pick % (size - 1))) % size;
          expect(verifyInclusionProof(leaves[other]!, index, size, proof, root)).toBe(false);
          expect(verifyInclusionProof(leaves[index]!, other, size, proof, root)).toBe(false);
          const altered = proof.map((h) => Buffer.from(h));
          const victim = altered[pick % altered.length]!;
          victim[pick % 32] = victim[pick % 32]! ^ 1;
          expect(verifyInclusionProof(leaves[index]!, index, size, altered, root)).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('every consistency proof verifies, and a changed old entry or altered hash does not', () => {
    fc.assert(
      fc.property(twoSizes, fc.nat(), fc.nat(), ([from, to], seed, pick) => {
        const leaves = randomLeaves(to, seed);
        const fromRoot = rootOfLeafHashes(leaves.slice(0, from));
        const toRoot = rootOfLeafHashes(leaves);
        const proof = proofFor(consistencyProofRanges(from, to), leaves);
        expect(verifyConsistencyProof(from, to, fromRoot, toRoot, proof)).toBe(true);
        // A history in which one old entry differs must not be provably consistent with the new tree.
        const rewritten = leaves.slice(0, from);
        rewritten[pick % from] = leafHash(Buffer.from('rewritten'));
        expect(verifyConsistencyProof(from, to, rootOfLeafHashes(rewritten), toRoot, proof)).toBe(false);
        if (proof.length > 0) {
          const altered = proof.map((h) => Buffer.from(h));
          const victim = altered[pick % altered.length]!;
          victim[pick % 32] = victim[pick % 32]! ^ 1;
          expect(verifyConsistencyProof(from, to, fromRoot, toRoot, altered)).toBe(false);
          expect(verifyConsistencyProof(from, to, fromRoot, toRoot, proof.slice(0, -1))).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('every proof range is a fold of aligned perfect subtrees, as a store keeps them', () => {
    fc.assert(
      fc.property(twoSizes, fc.nat(), ([from, to], seed) => {
        const leaves = randomLeaves(to, seed);
        const ranges = [...consistencyProofRanges(from, to), ...inclusionProofRanges(from - 1, to)];
        for (const range of ranges) {
          const pieces = perfectSubtrees(range).map(({ begin, height }) => rootOfLeafHashes(leaves.slice(begin, begin + 2 ** height)));
          expect(hex(foldPerfectSubtrees(pieces))).toBe(hex(rootOfLeafHashes(leaves.slice(range.begin, range.end))));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('the frontier gives the same root as the recursive definition at every size', () => {
    const leaves = randomLeaves(257, 7);
    const frontier = new MerkleFrontier();
    for (let n = 1; n <= leaves.length; n++) {
      frontier.append(leaves[n - 1]!);
      expect(hex(frontier.root())).toBe(hex(rootOfLeafHashes(leaves.slice(0, n))));
    }
  });
});

describe('bounds', () => {
  it('plans proofs for sizes near 2^53 without losing precision', () => {
    const to = Number.MAX_SAFE_INTEGER;
    const from = 2 ** 52 + 3;
    const ranges = consistencyProofRanges(from, to);
    expect(ranges.length).toBeLessThanOrEqual(106);
    for (const r of ranges) expect(r.end).toBeLessThanOrEqual(to);
    expect(inclusionProofRanges(to - 1, to).length).toBeLessThanOrEqual(53);
  });

  it('refuses impossible proofs and oversized or malformed hashes', () => {
    expect(() => inclusionProofRanges(3, 3)).toThrow(RangeError);
    expect(() => consistencyProofRanges(4, 3)).toThrow(RangeError);
    expect(() => perfectSubtrees({ begin: 1, end: 3 })).toThrow(RangeError);
    const root = bytes(CT_ROOTS[7]!);
    expect(verifyInclusionProof(ctLeafHashes[0]!, 0, 8, Array.from({ length: 65 }, () => root), root)).toBe(false);
    expect(verifyInclusionProof(ctLeafHashes[0]!, 0, 8, [bytes(H.leaf1).subarray(0, 31), bytes(H.leaves23), bytes(H.leaves4567)], root)).toBe(false);
    expect(verifyConsistencyProof(1, 8, ctLeafHashes[0]!, root, Array.from({ length: 129 }, () => root))).toBe(false);
    expect(() => new MerkleFrontier().append(Buffer.alloc(31))).toThrow('32 bytes');
  });
});
