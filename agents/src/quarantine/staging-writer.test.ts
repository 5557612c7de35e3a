// The staging writer: the file holds exactly the bytes given, in order, whatever the chunking, with
// the digest a plain SHA-256 gives, on the hashing thread and without it; progress only ever counts
// leading bytes already on disk; an existing file is refused; an aborted writer leaves a closed file.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HASH_THREAD_THRESHOLD_BYTES, openStagingWriter, STAGING_SLOT_BYTES } from './staging-writer.js';

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'staging-writer-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

it.each([
  ['a small body, hashed inline, its size known', 1000, 7, true],
  ['a small body of unknown size', 100_000, 4096, false],
  ['a body past the hashing thread threshold, odd chunks across slot edges', HASH_THREAD_THRESHOLD_BYTES + 12_345, 65_537, true],
  ['a large body of unknown size (inline hash)', 3 * STAGING_SLOT_BYTES + 3, 1 << 20, false],
])('%s', async (_name, size, chunk, declared) => {
  const bytes = randomBytes(size);
  const path = join(dir, `body-${size}`);
  const progress: number[] = [];
  const writer = await openStagingWriter(path, { hash: true, ...(declared ? { expectedBytes: size } : {}), onProgress: (n) => progress.push(n) });
  for (let at = 0; at < size; at += chunk) await writer.write(bytes.subarray(at, at + chunk));
  // Each progress figure is a prefix already on disk.
  const onDisk = progress.map((n) => n <= statSync(path).size);
  const result = await writer.finish();
  expect(result).toEqual({ bytes: size, sha256: sha256(bytes) });
  expect(readFileSync(path).equals(bytes)).toBe(true);
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(onDisk.every(Boolean)).toBe(true);
  expect(progress).toEqual([...progress].sort((a, b) => a - b));
  expect(progress.at(-1)).toBe(size);
}, 60_000);

it('writes without hashing when there is no digest to match', async () => {
  const bytes = randomBytes(50_000);
  const path = join(dir, 'unhashed');
  const writer = await openStagingWriter(path, { hash: false, expectedBytes: bytes.length });
  await writer.write(bytes);
  expect(await writer.finish()).toEqual({ bytes: bytes.length });
  expect(readFileSync(path).equals(bytes)).toBe(true);
});

it('refuses a file that exists', async () => {
  const path = join(dir, 'exists');
  writeFileSync(path, 'x');
  await expect(openStagingWriter(path, { hash: true })).rejects.toThrow(/EEXIST/);
  expect(readFileSync(path, 'utf8')).toBe('x');
});

it('stops writing once aborted, with its hashing thread', async () => {
  const path = join(dir, 'aborted');
  const writer = await openStagingWriter(path, { hash: true, expectedBytes: 64 << 20 });
  await writer.write(randomBytes(STAGING_SLOT_BYTES + 10));
  await writer.abort();
  await expect(writer.write(Buffer.alloc(STAGING_SLOT_BYTES))).rejects.toThrow(/aborted/);
  expect(statSync(path).size).toBeLessThanOrEqual(STAGING_SLOT_BYTES);
}, 30_000);
