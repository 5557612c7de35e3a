import { GgmlType, gguf } from '../../../test/support/gguf-writer.js';
import { encodeGguf } from '../../../test/support/gguf-writer.js';
import { parseGgufHeader } from './gguf-parser.js';
import { findWeightAnomaly, halfToNumber, planWeightStats, WeightStatsSampler, type WeightStats } from './weight-stats.js';
import { Reason } from './verdict.js';

function statsOf(type: GgmlType, dims: number[], data: Buffer, chunk = 1 << 20): WeightStats {
  const bytes = encodeGguf({ version: 3, kv: [{ key: 'general.architecture', value: gguf.str('t') }], tensors: [{ name: 'w', dims, type, data }] });
  const parsed = parseGgufHeader(bytes, bytes.length);
  if (parsed.status !== 'ok') throw new Error('bad test file');
  const sampler = new WeightStatsSampler(planWeightStats(parsed.header));
  for (let p = 0; p < bytes.length; p += chunk) sampler.push(bytes.subarray(p, p + chunk), p);
  return sampler.results()[0]!;
}

const f32 = (values: number[]) => {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
};

it('decodes half precision values', () => {
  expect([0x3c00, 0xc000, 0x0000, 0x7bff, 0x0001, 0x7c00].map(halfToNumber)).toEqual([1, -2, 0, 65504, 2 ** -24, Infinity]);
  expect(halfToNumber(0x7e00)).toBeNaN();
});

it('computes mean, variance and excess kurtosis of F32 weights, whatever the chunking', () => {
  const values = Array.from({ length: 4096 }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const mean = values.reduce((a, b) => a + b) / values.length;
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
  const m4 = values.reduce((a, b) => a + (b - mean) ** 4, 0) / values.length;
  for (const chunk of [97, 4096, 1 << 20]) {
    const s = statsOf(GgmlType.F32, [4096], f32(values), chunk);
    if (chunk === 1 << 20) {
      expect(s.sampled).toBe(4096);
      expect(s.mean).toBeCloseTo(mean, 5);
      expect(s.variance).toBeCloseTo(variance, 5);
      expect(s.excessKurtosis).toBeCloseTo(m4 / variance ** 2 - 3, 3);
    } else {
      expect(Math.abs(s.mean - mean)).toBeLessThan(0.01);
    }
  }
});

it('reads Q8_0 blocks as scale times quant', () => {
  const block = Buffer.alloc(34);
  block.writeUInt16LE(0x3800, 0); // 0.5
  for (let q = 0; q < 32; q++) block.writeInt8(q - 16, 2 + q);
  const s = statsOf(GgmlType.Q8_0, [64], Buffer.concat([block, block]));
  expect(s.sampled).toBe(64);
  expect(s.mean).toBeCloseTo(-0.25, 10);
  expect(s.zeroFraction).toBeCloseTo(1 / 32, 10);
});

describe('flags weight anomalies with the SecAI OS thresholds', () => {
  const base: WeightStats = { name: 'w', type: 0, vector: false, sampled: 1000, nonFinite: 0, mean: 0, variance: 0.01, excessKurtosis: 0, zeroFraction: 0 };
  it.each([
    ['NaN values', { nonFinite: 3 }, Reason.WeightsNonFinite],
    ['all zero', { zeroFraction: 1, variance: 0 }, Reason.WeightsMostlyZero],
    ['constant', { variance: 1e-13 }, Reason.WeightsConstant],
    ['a mean of 11', { mean: 11 }, Reason.WeightsMeanAnomaly],
    ['a mean of -11', { mean: -11 }, Reason.WeightsMeanAnomaly],
    ['kurtosis of 101', { excessKurtosis: 101 }, Reason.WeightsKurtosisAnomaly],
    ['normal weights', {}, undefined],
    ['99% zeros', { zeroFraction: 0.99 }, undefined],
  ] as const)('%s', (_name, change, reason) => {
    expect(findWeightAnomaly([{ ...base, ...change }])?.reason).toBe(reason);
  });

  it('from real bytes: NaN, all-zero and constant matrices', () => {
    expect(findWeightAnomaly([statsOf(GgmlType.F32, [8, 8], f32(new Array(64).fill(NaN)))])?.reason).toBe(Reason.WeightsNonFinite);
    expect(findWeightAnomaly([statsOf(GgmlType.F32, [8, 8], f32(new Array(64).fill(0)))])?.reason).toBe(Reason.WeightsMostlyZero);
    expect(findWeightAnomaly([statsOf(GgmlType.F32, [8, 8], f32(new Array(64).fill(0.25)))])?.reason).toBe(Reason.WeightsConstant);
  });

  // Real checkpoints: RMSNorm gains of ones, biases of zeros, Gemma's norms stored plus one, RWKV's [1, 1, n] mixes.
  it.each([
    ['a norm of ones', [64], () => 1],
    ['a bias of zeros', [64], () => 0],
    ['a [1, 1, n] mix of halves', [64, 1, 1], () => 0.5],
    ['a [1, n] row of ones', [1, 64], () => 1],
    ['trained norm gains around 40', [64], (i: number) => 40 + (i % 3)],
    ['a gain vector with one huge entry', [64], (i: number) => (i === 7 ? 500 : 1)],
  ] as const)('not from a vector alone: %s', (_name, dims, value) => {
    const s = statsOf(GgmlType.F32, [...dims], f32(Array.from({ length: 64 }, (_, i) => value(i))));
    expect(s.vector).toBe(true);
    expect(findWeightAnomaly([s])).toBeUndefined();
  });

  it('non-finite values in a vector still', () => {
    expect(findWeightAnomaly([statsOf(GgmlType.F32, [64], f32(Array.from({ length: 64 }, (_, i) => (i === 3 ? Infinity : 1))))])?.reason).toBe(Reason.WeightsNonFinite);
    expect(findWeightAnomaly([statsOf(GgmlType.F16, [64], Buffer.alloc(128, 0xff))])?.reason).toBe(Reason.WeightsNonFinite);
  });
});

it('plans matrices before vectors, however large the vectors', () => {
  const tensors = [
    ...Array.from({ length: 21 }, (_, i) => ({ name: `norm${i}`, dims: [4096], type: GgmlType.F32, data: Buffer.alloc(4096 * 4) })),
    { name: 'small.matrix', dims: [8, 8], type: GgmlType.F16, data: Buffer.alloc(128) },
  ];
  const bytes = encodeGguf({ version: 3, kv: [], tensors });
  const parsed = parseGgufHeader(bytes, bytes.length);
  if (parsed.status !== 'ok') throw new Error('bad test file');
  const plan = planWeightStats(parsed.header);
  expect(plan).toHaveLength(20);
  expect(plan[0]).toMatchObject({ name: 'small.matrix', vector: false });
  expect(plan.slice(1).every((t) => t.vector)).toBe(true);
});

it('plans the 20 largest F32/F16/Q8_0 tensors and at most a million values in all', () => {
  const tensors = Array.from({ length: 25 }, (_, i) => ({ name: `t${i}`, dims: [32 * (i + 1)], type: i % 2 ? GgmlType.F16 : GgmlType.F32, data: Buffer.alloc(32 * (i + 1) * (i % 2 ? 2 : 4), 1) }));
  tensors.push({ name: 'q4', dims: [32 * 100], type: 2 as GgmlType, data: Buffer.alloc(100 * 18) });
  const bytes = encodeGguf({ version: 3, kv: [], tensors });
  const parsed = parseGgufHeader(bytes, bytes.length);
  if (parsed.status !== 'ok') throw new Error('bad test file');
  const plan = planWeightStats(parsed.header);
  expect(plan).toHaveLength(20);
  expect(plan.map((t) => t.name)).not.toContain('q4');
  expect(plan[0]!.name).toBe('t24');
  expect(plan.reduce((n, t) => n + Math.min(t.items, t.runs * t.runLength), 0)).toBeLessThanOrEqual(1_000_000);
});
