import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consistencyProofRanges, inclusionProofRanges, leafHash, rootOfLeafHashes, verifyConsistencyProof } from '../../../api/audit/merkle.js';
import { levelFileName } from './log-files.js';
import { MerkleTreeStore, TreeCacheError } from './tree-store.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'secai-tree-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const leaves = (n: number) => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));

it('serves a proof on a 100,003-entry tree from O(log n) stored nodes, far faster than rehashing the log', async () => {
  const all = leaves(100_003);
  const store = await MerkleTreeStore.open(dir);
  for (const leaf of all) await store.append(leaf);
  expect(store.root().equals(await store.rootAt(100_003))).toBe(true);

  const from = 50_001;
  let started = performance.now();
  const stored: Buffer[] = [];
  for (const range of consistencyProofRanges(from, all.length)) stored.push(await store.rangeHash(range));
  const fromRoot = await store.rootAt(from);
  const storeMs = performance.now() - started;

  started = performance.now();
  const rehashed = consistencyProofRanges(from, all.length).map((r) => rootOfLeafHashes(all.slice(r.begin, r.end)));
  const rehashRoot = rootOfLeafHashes(all.slice(0, from));
  const rehashMs = performance.now() - started;

  expect(stored).toEqual(rehashed);
  expect(fromRoot.equals(rehashRoot)).toBe(true);
  expect(verifyConsistencyProof(from, all.length, fromRoot, store.root(), stored)).toBe(true);
  process.stderr.write(`consistency proof 50,001 -> 100,003: store ${storeMs.toFixed(2)} ms, rehash ${rehashMs.toFixed(1)} ms\n`);
  expect(storeMs * 10).toBeLessThan(rehashMs);
  await store.close();
}, 120_000);

it('answers every proof range of a small tree exactly like the definition', async () => {
  const all = leaves(77);
  const store = await MerkleTreeStore.open(dir);
  for (const leaf of all) await store.append(leaf);
  for (let size = 1; size <= 77; size += 4) {
    for (const range of [...consistencyProofRanges(Math.ceil(size / 3), size), ...inclusionProofRanges(size - 1, size)]) {
      expect((await store.rangeHash(range)).equals(rootOfLeafHashes(all.slice(range.begin, range.end)))).toBe(true);
    }
  }
  await store.close();
});

it('completes upper levels a crash left short and refuses a level longer than the one below supports', async () => {
  const all = leaves(40);
  let store = await MerkleTreeStore.open(dir);
  for (const leaf of all) await store.append(leaf);
  await store.close();
  await truncate(join(dir, levelFileName(1)), 7 * 32 + 3);
  await rm(join(dir, levelFileName(3)));
  store = await MerkleTreeStore.open(dir);
  expect(store.root().equals(rootOfLeafHashes(all))).toBe(true);
  await store.append(leafHash(Buffer.from('next')));
  expect(store.root().equals(rootOfLeafHashes([...all, leafHash(Buffer.from('next'))]))).toBe(true);
  await store.close();

  await writeFile(join(dir, levelFileName(5)), Buffer.alloc(32 * 4));
  await expect(MerkleTreeStore.open(dir)).rejects.toThrow(TreeCacheError);
});
