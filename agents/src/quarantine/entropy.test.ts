import { randomBytes } from 'node:crypto';
import { EntropySampler, entropySampleRanges, ENTROPY_SAMPLE_BYTES, shannonBitsPerByte } from './entropy.js';

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
