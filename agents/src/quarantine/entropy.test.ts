import { randomBytes } from 'node:crypto';
import { GgmlType, encodeGguf } from '../../../test/support/gguf-writer.js';
import { denseCodeRegions, EntropySampler, entropySampleRanges, ENTROPY_SAMPLE_BYTES, packsDenseCodes, shannonBitsPerByte } from './entropy.js';
import { parseGgufHeader } from './gguf-parser.js';

const MiB = ENTROPY_SAMPLE_BYTES;

it.each([
  [0, []],
  [1000, [{ name: 'start', offset: 0, length: 1000 }]],
  [2 * MiB, [{ name: 'start', offset: 0, length: MiB }, { name: 'end', offset: MiB, length: MiB }]],
  [3 * MiB, [{ name: 'start', offset: 0, length: MiB }, { name: 'end', offset: 2 * MiB, length: MiB }]],
  [10 * MiB, [{ name: 'start', offset: 0, length: MiB }, { name: 'middle', offset: 4.5 * MiB, length: MiB }, { name: 'end', offset: 9 * MiB, length: MiB }]],
])('samples a %d-byte file at %j', (size, ranges) => {
  expect(entropySampleRanges(size)).toEqual(ranges);
});

it('gives 0 bits for a constant run, 8 for a uniform byte distribution, about 8 for random bytes', () => {
  const constant = new Float64Array(256);
  constant[7] = 100;
  expect(shannonBitsPerByte(constant, 100)).toBe(0);
  expect(shannonBitsPerByte(new Float64Array(256).fill(4), 1024)).toBeCloseTo(8, 12);
  const sampler = new EntropySampler(entropySampleRanges(MiB));
  sampler.push(randomBytes(MiB), 0);
  expect(sampler.samples()[0]!.bitsPerByte).toBeGreaterThan(7.99);
});

it('counts the same histogram whatever the chunking', () => {
  const bytes = randomBytes(5 * MiB);
  const whole = new EntropySampler(entropySampleRanges(bytes.length));
  whole.push(bytes, 0);
  const pieces = new EntropySampler(entropySampleRanges(bytes.length));
  for (let p = 0; p < bytes.length; p += 333_333) pieces.push(bytes.subarray(p, p + 333_333), p);
  expect(pieces.samples()).toEqual(whole.samples());
});

it('leaves packed sub-byte codes out of the samples, and judges the rest of each sample', () => {
  const text = Buffer.alloc(MiB, 'the quick brown fox ');
  const random = randomBytes(MiB);
  const bytes = Buffer.concat([text.subarray(0, MiB / 2), random.subarray(0, MiB / 2)]);
  const all = new EntropySampler(entropySampleRanges(bytes.length));
  const withoutCodes = new EntropySampler(entropySampleRanges(bytes.length), [{ start: MiB / 2, end: MiB / 2 + MiB / 4 }, { start: MiB / 2 + MiB / 4, end: MiB }]);
  const onlyCodes = new EntropySampler(entropySampleRanges(bytes.length), [{ start: 0, end: MiB / 2 }]);
  for (let p = 0; p < bytes.length; p += 100_000) {
    for (const s of [all, withoutCodes, onlyCodes]) s.push(bytes.subarray(p, p + 100_000), p);
  }
  expect(withoutCodes.samples()[0]).toMatchObject({ length: MiB / 2 });
  expect(withoutCodes.samples()[0]!.bitsPerByte).toBeLessThan(4);
  expect(onlyCodes.samples()[0]).toMatchObject({ length: MiB / 2 });
  expect(onlyCodes.samples()[0]!.bitsPerByte).toBeGreaterThan(7.99);
  expect(all.samples()[0]!.bitsPerByte).toBeGreaterThan(withoutCodes.samples()[0]!.bitsPerByte);
});

it('counts Q2_K to Q6_K, Q4_0, the i-quants and MXFP4 as packed codes, never floats, integers or Q8_0', () => {
  expect([2, 3, 6, 7, 10, 11, 12, 13, 14, 16, 19, 20, 23, 39].every(packsDenseCodes)).toBe(true);
  expect([0, 1, 8, 9, 15, 24, 25, 26, 27, 28, 30].some(packsDenseCodes)).toBe(false);
  const bytes = encodeGguf({
    version: 3,
    kv: [],
    tensors: [
      { name: 'f32', dims: [32], type: GgmlType.F32, data: Buffer.alloc(128) },
      { name: 'q4', dims: [32], type: 2 as GgmlType, data: Buffer.alloc(18) },
    ],
  });
  const parsed = parseGgufHeader(bytes, bytes.length);
  if (parsed.status !== 'ok') throw new Error('bad test file');
  const q4 = parsed.header.tensors[1]!;
  expect(denseCodeRegions(parsed.header)).toEqual([{ start: parsed.header.dataOffset + q4.offset, end: parsed.header.dataOffset + q4.offset + 18 }]);
});
