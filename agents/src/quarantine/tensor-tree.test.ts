// The manifest's tensor hash tree, computed by its own job after the verdict: equal to the tree
// over each tensor's SHA-256, whether one thread or two hash the tensors, and a changed-file
// answer when the header or layout no longer holds.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeGguf } from '../../../test/support/gguf-writer.js';
import { tinyModelBytes, tinyModelDocument } from '../../../test/support/tiny-model.js';
import { parseGgufHeader } from './gguf-parser.js';
import { tensorMerkleRoot } from './merkle.js';
import { ArtifactChangedError } from './one-pass-scan.js';
import { runTensorTreeJob } from './scan-job.js';
import { SCANNER_PROTOCOL_VERSION } from './scanner-protocol.js';
import { computeTensorTree } from './tensor-tree.js';

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'tensor-tree-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, bytes: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

it('equals the tree over each tensor digest, hashed by one thread or split over two', async () => {
  const bytes = tinyModelBytes();
  const path = write('tiny.gguf', bytes);
  const doc = tinyModelDocument();
  const expected = tensorMerkleRoot(doc.tensors.map((t) => ({ name: t.name, sha256: createHash('sha256').update(t.data).digest() })));
  for (const [chunkBytes, twoThreadsFromBytes] of [[4 << 20, Infinity], [4 << 20, 0], [1000, 0], [7, Infinity]] as const) {
    expect(await computeTensorTree(path, { chunkBytes, twoThreadsFromBytes })).toMatchObject({ sizeBytes: bytes.length, tensorCount: doc.tensors.length, tensorMerkleRoot: expected });
  }
}, 30_000);

it('binds every tensor: one changed byte of tensor data changes the root', async () => {
  const bytes = tinyModelBytes();
  const parsed = parseGgufHeader(bytes, bytes.length);
  if (parsed.status !== 'ok') throw new Error('bad model');
  const last = parsed.header.tensors[parsed.header.tensors.length - 1]!;
  const tampered = Buffer.from(bytes);
  tampered[parsed.header.dataOffset + last.offset + last.byteSize - 1]! ^= 1;
  const original = await computeTensorTree(write('a.gguf', bytes), { twoThreadsFromBytes: 0 });
  const changed = await computeTensorTree(write('b.gguf', tampered), { twoThreadsFromBytes: 0 });
  expect(changed.tensorMerkleRoot).not.toBe(original.tensorMerkleRoot);
});

it('reports a changed file when the header or the layout no longer holds', async () => {
  const notGguf = write('not-gguf.gguf', Buffer.from('NOTGGUF!and more bytes'));
  await expect(computeTensorTree(notGguf)).rejects.toThrow(ArtifactChangedError);
  const doc = tinyModelDocument();
  const trailing = write('trailing.gguf', Buffer.concat([encodeGguf(doc), Buffer.alloc(64, 1)]));
  await expect(computeTensorTree(trailing)).rejects.toThrow(/layout no longer holds/);
  expect(await runTensorTreeJob({ version: SCANNER_PROTOCOL_VERSION, artifactPath: notGguf })).toMatchObject({ status: 'changed' });
});
