import { createHash } from 'node:crypto';
import { merkleRoot, tensorLeaf, tensorMerkleRoot } from './merkle.js';

/** RFC 6962 section 2.1, written recursively as the RFC states it. */
function rfc6962(leaves: Buffer[]): Buffer {
  const h = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
  if (leaves.length === 0) return h();
  if (leaves.length === 1) return h(Buffer.from([0]), leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return h(Buffer.from([1]), rfc6962(leaves.slice(0, k)), rfc6962(leaves.slice(k)));
}

it('equals the recursive RFC 6962 definition for 0 to 40 leaves', () => {
  for (let n = 0; n <= 40; n++) {
    const leaves = Array.from({ length: n }, (_, i) => Buffer.from(`leaf ${i}`));
    expect(merkleRoot(leaves).toString('hex')).toBe(rfc6962(leaves).toString('hex'));
  }
});

it('binds tensor names to their digests', () => {
  const digest = createHash('sha256').update('data').digest();
  const a = tensorMerkleRoot([{ name: 'a', sha256: digest }, { name: 'b', sha256: digest }]);
  expect(tensorMerkleRoot([{ name: 'b', sha256: digest }, { name: 'a', sha256: digest }])).not.toBe(a);
  expect(tensorMerkleRoot([{ name: 'a', sha256: digest }, { name: 'c', sha256: digest }])).not.toBe(a);
  expect(tensorLeaf({ name: 'ab', sha256: digest }).subarray(0, 6)).toEqual(Buffer.from([2, 0, 0, 0, 0x61, 0x62]));
});
