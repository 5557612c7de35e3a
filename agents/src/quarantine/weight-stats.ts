// Weight statistics of the largest F32, F16 and Q8_0 tensors, gathered while the file streams by
// (SecAI OS static_scan): the 20 largest such tensors, at most a million values in all, sampled in
// runs spread evenly over each tensor (a million per tensor would cost more than the rest of the
// pass besides hashing; 50,000 values estimate these moments to well within the thresholds). NaN or infinite weights, an all-zero or constant tensor, a huge mean
// or extreme kurtosis mean the bytes are not a trained model's weights — or carry something else.
//
// Those distribution rules hold for weight matrices only. Vectors (at most one dimension above 1:
// norm weights, biases, RWKV's [1, 1, n] mixes) of real checkpoints are all ones or all zeros after
// initialisation or conversion, Gemma's norms are stored plus one, and trained norm gains sit far
// from zero with few outliers — so a vector is judged only for non-finite values, and matrices
// take the sampling slots first.
import { GGML_F16, GGML_F32, GGML_Q8_0 } from './ggml-types.js';
import type { GgufHeader } from './gguf-parser.js';
import { Reason, type ReasonCode } from './verdict.js';

export const WEIGHT_STATS_LIMITS = {
  tensors: 20,
  values: 1_000_000,
  maxAbsMean: 10.0,
  minVariance: 1e-12,
  maxExcessKurtosis: 100.0,
  maxZeroFraction: 0.99,
} as const;

const Q8_0_BLOCK_BYTES = 34;
const Q8_0_BLOCK_VALUES = 32;

export interface WeightStatsTarget {
  name: string;
  type: number;
  /** At most one dimension above 1: only non-finite values are anomalies. */
  vector: boolean;
  /** File offset of the tensor data. */
  start: number;
  /** Bytes per item: one value (F32, F16) or one block of 32 values (Q8_0). */
  itemBytes: number;
  items: number;
  /** Items are sampled in `runs` contiguous runs of `runLength`, spread evenly over the tensor. */
  runs: number;
  runLength: number;
}

/** Contiguous runs keep the sampling sequential in memory: scattered single values cost a cache miss each. */
const RUN_VALUES = 4096;

export function isVector(dims: readonly number[]): boolean {
  return dims.filter((d) => d > 1).length <= 1;
}

export function planWeightStats(header: GgufHeader, limits = WEIGHT_STATS_LIMITS): WeightStatsTarget[] {
  const eligible = header.tensors
    .map((t, index) => ({ t, index, vector: isVector(t.dims) }))
    .filter(({ t }) => t.type === GGML_F32 || t.type === GGML_F16 || t.type === GGML_Q8_0)
    .sort((a, b) => Number(a.vector) - Number(b.vector) || b.t.byteSize - a.t.byteSize || a.index - b.index)
    .slice(0, limits.tensors);
  const valuesPerTensor = Math.floor(limits.values / Math.max(1, eligible.length));
  return eligible.map(({ t, vector }) => {
    const q8 = t.type === GGML_Q8_0;
    const valuesPerItem = q8 ? Q8_0_BLOCK_VALUES : 1;
    const itemBytes = q8 ? Q8_0_BLOCK_BYTES : t.type === GGML_F32 ? 4 : 2;
    const items = t.elements / valuesPerItem;
    const maxItems = Math.floor(valuesPerTensor / valuesPerItem);
    const target = { name: t.name, type: t.type, vector, start: header.dataOffset + t.offset, itemBytes, items };
    if (items <= maxItems) return { ...target, runs: 1, runLength: items };
    const runLength = Math.min(maxItems, RUN_VALUES / valuesPerItem);
    return { ...target, runs: Math.max(1, Math.floor(maxItems / runLength)), runLength };
  });
}

function runStart(t: WeightStatsTarget, run: number): number {
  return Math.floor((run * t.items) / t.runs);
}

/** IEEE 754 half precision to double, for all 65,536 bit patterns. */
const HALF = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    if (exponent === 0) table[h] = sign * 2 ** -14 * (fraction / 1024);
    else if (exponent === 31) table[h] = fraction ? NaN : sign * Infinity;
    else table[h] = sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
  }
  return table;
})();

export function halfToNumber(bits: number): number {
  return HALF[bits & 0xffff]!;
}

class Moments {
  count = 0;
  nonFinite = 0;
  zeros = 0;
  private shift = NaN;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private s4 = 0;

  /**
   * Adds a Q8_0 block: 32 values scale * q. The integer power sums of q are exact, so a block costs
   * a few integer operations per value and a handful of float operations.
   */
  addScaledBlock(scale: number, q: Int8Array, from: number): void {
    if (!Number.isFinite(scale)) {
      this.nonFinite += Q8_0_BLOCK_VALUES;
      return;
    }
    let q1 = 0;
    let q2 = 0;
    let q3 = 0;
    let q4 = 0;
    let zeros = 0;
    for (let i = from; i < from + Q8_0_BLOCK_VALUES; i++) {
      const v = q[i]!;
      const v2 = v * v;
      q1 += v;
      q2 += v2;
      q3 += v2 * v;
      q4 += v2 * v2;
      if (v === 0) zeros++;
    }
    if (scale === 0) zeros = Q8_0_BLOCK_VALUES;
    if (this.count === 0) this.shift = scale * q[from]!;
    const n = Q8_0_BLOCK_VALUES;
    const k = this.shift;
    const d = scale;
    // Sums of (d q - k)^p expanded over the exact sums of q^p.
    this.s1 += d * q1 - n * k;
    this.s2 += d * d * q2 - 2 * d * k * q1 + n * k * k;
    this.s3 += d ** 3 * q3 - 3 * d * d * k * q2 + 3 * d * k * k * q1 - n * k ** 3;
    this.s4 += d ** 4 * q4 - 4 * d ** 3 * k * q3 + 6 * d * d * k * k * q2 - 4 * d * k ** 3 * q1 + n * k ** 4;
    this.count += n;
    this.zeros += zeros;
  }

  add(x: number): void {
    if (!Number.isFinite(x)) {
      this.nonFinite++;
      return;
    }
    // Moments about the first value keep the cancellation small when the mean is far from zero.
    if (this.count === 0) this.shift = x;
    this.count++;
    if (x === 0) this.zeros++;
    const d = x - this.shift;
    const d2 = d * d;
    this.s1 += d;
    this.s2 += d2;
    this.s3 += d2 * d;
    this.s4 += d2 * d2;
  }

  summary(): { mean: number; variance: number; excessKurtosis: number; zeroFraction: number } {
    const n = this.count;
    if (n === 0) return { mean: NaN, variance: NaN, excessKurtosis: NaN, zeroFraction: 0 };
    const m = this.s1 / n;
    const e2 = this.s2 / n;
    const e3 = this.s3 / n;
    const e4 = this.s4 / n;
    const variance = Math.max(0, e2 - m * m);
    const m4 = e4 - 4 * m * e3 + 6 * m * m * e2 - 3 * m ** 4;
    const excessKurtosis = variance > 0 ? m4 / (variance * variance) - 3 : 0;
    return { mean: this.shift + m, variance, excessKurtosis, zeroFraction: this.zeros / n };
  }
}

export interface WeightStats {
  name: string;
  type: number;
  vector: boolean;
  sampled: number;
  nonFinite: number;
  mean: number;
  variance: number;
  excessKurtosis: number;
  zeroFraction: number;
}

/** Samples the planned tensors from chunks passed in file order. */
export class WeightStatsSampler {
  /** Per target: the run being sampled and the next item in it. */
  private readonly run: number[];
  private readonly item: number[];
  private readonly moments: Moments[];
  private readonly targets: readonly WeightStatsTarget[];

  constructor(targets: readonly WeightStatsTarget[]) {
    this.targets = targets;
    this.run = targets.map(() => 0);
    this.item = targets.map(() => 0);
    this.moments = targets.map(() => new Moments());
  }

  push(chunk: Uint8Array, filePosition: number): void {
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const int8 = new Int8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const chunkEnd = filePosition + chunk.length;
    this.targets.forEach((t, i) => {
      if (t.start + t.items * t.itemBytes <= filePosition || t.start >= chunkEnd) return;
      const m = this.moments[i]!;
      let run = this.run[i]!;
      let item = this.item[i]!;
      while (run < t.runs) {
        const first = runStart(t, run);
        if (item < first) item = first;
        const last = first + t.runLength;
        // An item split by a chunk boundary is skipped, which no threshold could notice.
        if (t.start + item * t.itemBytes < filePosition) item = Math.ceil((filePosition - t.start) / t.itemBytes);
        let at = t.start + item * t.itemBytes - filePosition;
        for (; item < last && at + t.itemBytes <= chunk.length; item++, at += t.itemBytes) {
          if (t.type === GGML_F32) m.add(view.getFloat32(at, true));
          else if (t.type === GGML_F16) m.add(HALF[view.getUint16(at, true)]!);
          else m.addScaledBlock(HALF[view.getUint16(at, true)]!, int8, at + 2);
        }
        if (item < last) break;
        run++;
      }
      this.run[i] = run;
      this.item[i] = item;
    });
  }

  results(): WeightStats[] {
    return this.targets.map((t, i) => {
      const m = this.moments[i]!;
      return { name: t.name, type: t.type, vector: t.vector, sampled: m.count, nonFinite: m.nonFinite, ...m.summary() };
    });
  }
}

export interface WeightAnomaly {
  reason: ReasonCode;
  message: string;
}

export function findWeightAnomaly(stats: readonly WeightStats[], limits = WEIGHT_STATS_LIMITS): WeightAnomaly | undefined {
  for (const s of stats) {
    if (s.nonFinite > 0) return { reason: Reason.WeightsNonFinite, message: `tensor ${s.name}: ${s.nonFinite} of the sampled values are NaN or infinite` };
    if (s.sampled === 0 || s.vector) continue;
    if (s.zeroFraction > limits.maxZeroFraction) return { reason: Reason.WeightsMostlyZero, message: `tensor ${s.name}: ${(s.zeroFraction * 100).toFixed(2)}% of the sampled values are zero` };
    if (s.variance < limits.minVariance) return { reason: Reason.WeightsConstant, message: `tensor ${s.name}: the sampled values are constant (variance ${s.variance.toExponential(2)})` };
    if (Math.abs(s.mean) > limits.maxAbsMean) return { reason: Reason.WeightsMeanAnomaly, message: `tensor ${s.name}: mean ${s.mean.toPrecision(4)} exceeds ±${limits.maxAbsMean}` };
    if (s.excessKurtosis > limits.maxExcessKurtosis) {
      return { reason: Reason.WeightsKurtosisAnomaly, message: `tensor ${s.name}: excess kurtosis ${s.excessKurtosis.toPrecision(4)} exceeds ${limits.maxExcessKurtosis}` };
    }
  }
  return undefined;
}
