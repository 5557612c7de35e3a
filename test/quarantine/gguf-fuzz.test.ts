// Property test: valid GGUF headers mutated at random — bit flips, counts and lengths replaced
// with boundary values, bytes cut, inserted or deleted — never crash the parser or the layout
// check, never take a second, and never grow memory with what the file claims. A smaller run
// pushes mutated files through the whole one pass.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { isChatTemplateKey } from '../../agents/src/quarantine/chat-template.js';
import { checkTensorLayout, metadataStrings, parseGgufHeader } from '../../agents/src/quarantine/gguf-parser.js';
import { scanArtifact } from '../../agents/src/quarantine/one-pass-scan.js';
import { encodeGguf, GgmlType, gguf } from '../support/gguf-writer.js';
import { tinyModelBytes } from '../support/tiny-model.js';

const seeds = [
  tinyModelBytes(),
  encodeGguf({
    version: 2,
    kv: [
      { key: 'general.alignment', value: gguf.u32(64) },
      { key: 'tokenizer.chat_template', value: gguf.str('{{ messages }}') },
      { key: 'x.ints', value: gguf.i32s([1, 2, 3]) },
      { key: 'x.strings', value: gguf.strings(['a', 'bc']) },
    ],
    tensors: [
      { name: 'a', dims: [32, 2], type: GgmlType.Q8_0, data: Buffer.alloc(68, 3) },
      { name: 'b', dims: [16], type: GgmlType.F16, data: Buffer.alloc(32, 1) },
    ],
  }),
];
const headerEnds = seeds.map((s) => {
  const r = parseGgufHeader(s, s.length);
  if (r.status !== 'ok') throw new Error('seed does not parse');
  return r.header.dataOffset;
});

const BOUNDARY_U64 = [0n, 1n, 2n, 0x7fn, 0xffn, 0x7fffffffn, 0xffffffffn, 2n ** 32n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'u32'; at: number; value: number }
  | { kind: 'u64'; at: number; value: bigint }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; length: number };

const position = fc.nat({ max: 20_000 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: position, value: fc.oneof(fc.constantFrom(0, 1, 2, 9, 12, 13, 32, 48, 4096, 8192, 0x7fffffff, 0xffffffff), fc.nat()) }),
  fc.record({ kind: fc.constant('u64' as const), at: position, value: fc.oneof(fc.constantFrom(...BOUNDARY_U64), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })) }),
  fc.record({ kind: fc.constant('cut' as const), at: position }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 16 }) }),
);

function mutate(seed: Buffer, headerEnd: number, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(seed);
  for (const m of mutations) {
    const at = m.at % Math.max(1, Math.min(bytes.length, headerEnd + 64));
    switch (m.kind) {
      case 'flip': bytes[at] = bytes[at]! ^ (1 << m.bit); break;
      case 'u32': if (at + 4 <= bytes.length) bytes.writeUInt32LE(m.value, at); break;
      case 'u64': if (at + 8 <= bytes.length) bytes.writeBigUInt64LE(m.value, at); break;
      case 'cut': bytes = bytes.subarray(0, at); break;
      case 'insert': bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]); break;
      case 'delete': bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.length)]); break;
    }
  }
  return bytes;
}

const mutated = fc.tuple(fc.nat({ max: seeds.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 6 })).map(([i, ms]) => mutate(seeds[i]!, headerEnds[i]!, ms));

/** CPU time (user + system) this process spent since `since`, in ms. */
const cpuMs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
};

it('parses 10,000 mutated headers without a crash, each within a second of CPU, in bounded memory', () => {
  const heapBefore = process.memoryUsage().heapUsed;
  let slowest = 0;
  let rejected = 0;
  fc.assert(
    fc.property(mutated, (bytes) => {
      const started = performance.now();
      const cpu = process.cpuUsage();
      const parsed = parseGgufHeader(bytes, bytes.length);
      // The whole file is given, so the parser must decide: never "incomplete".
      expect(parsed.status).not.toBe('incomplete');
      if (parsed.status === 'ok') {
        checkTensorLayout(parsed.header, bytes.length);
        for (const kv of parsed.header.metadata) if (isChatTemplateKey(kv.key)) metadataStrings(bytes, kv);
      } else if (parsed.status === 'invalid') {
        rejected++;
        expect(typeof parsed.reason).toBe('string');
      }
      const ms = cpuMs(cpu);
      slowest = Math.max(slowest, ms);
      expect(ms).toBeLessThan(1000);
      // Wall time as well, for a parser that waits instead of working; generous, since a machine
      // busy with other suites (a TCG VM among them) can stall a process for a second.
      expect(performance.now() - started).toBeLessThan(10_000);
    }),
    { numRuns: 10_000, seed: 20260801 },
  );
  const grown = process.memoryUsage().heapUsed - heapBefore;
  expect(grown).toBeLessThan(256 * 1024 * 1024);
  expect(rejected).toBeGreaterThan(1000);
  process.stderr.write(`fuzz: 10000 mutated headers, ${rejected} rejected, slowest ${slowest.toFixed(1)} ms of CPU, heap +${(grown / 1048576).toFixed(1)} MiB\n`);
}, 120_000);

it('scans 300 mutated files through the whole one pass without a crash', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gguf-fuzz-'));
  try {
    const samples = fc.sample(mutated, { numRuns: 300, seed: 7 });
    for (const [i, bytes] of samples.entries()) {
      const path = join(dir, `m${i}.gguf`);
      writeFileSync(path, bytes);
      const started = performance.now();
      const cpu = process.cpuUsage();
      const report = await scanArtifact(path, { chunkBytes: 4096 });
      expect(report.sizeBytes).toBe(bytes.length);
      expect(cpuMs(cpu)).toBeLessThan(1000);
      expect(performance.now() - started).toBeLessThan(10_000);
      rmSync(path);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
