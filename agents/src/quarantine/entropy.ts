// Shannon entropy of 1 MiB samples at the start, middle and end of the file (SecAI OS static_scan):
// more than 7.99 bits/byte means encrypted or compressed bytes — a hidden payload. Metadata, float
// and integer weights and 8-bit quantized weights stay well below that. Codes packed below 8 bits
// a value (Q4_K, Q6_K, the i-quants...) do not: a quantizer fills its code space on purpose, so
// their bytes of a real model come close to 8 bits/byte and are left out of the samples
// (`denseCodeRegions`); what remains of each sample is judged.
import { GGML_TYPES } from './ggml-types.js';
import type { GgufHeader } from './gguf-parser.js';

export const ENTROPY_SAMPLE_BYTES = 1024 * 1024;
export const MAX_ENTROPY_BITS_PER_BYTE = 7.99;

export interface EntropyRange {
  name: 'start' | 'middle' | 'end';
  offset: number;
  length: number;
}

/** SecAI OS samples the middle only when the file is larger than 3 MiB. */
export function entropySampleRanges(fileSize: number): EntropyRange[] {
  const length = Math.min(ENTROPY_SAMPLE_BYTES, fileSize);
  if (length === 0) return [];
  const ranges: EntropyRange[] = [{ name: 'start', offset: 0, length }];
  if (fileSize > 3 * ENTROPY_SAMPLE_BYTES) ranges.push({ name: 'middle', offset: Math.floor(fileSize / 2 - ENTROPY_SAMPLE_BYTES / 2), length });
  if (fileSize > ENTROPY_SAMPLE_BYTES) ranges.push({ name: 'end', offset: fileSize - length, length });
  return ranges;
}

export interface ByteRegion {
  start: number;
  end: number;
}

/** True for ggml types that pack values in fewer than 8 bits each (fewer bytes than values a block). */
export function packsDenseCodes(type: number): boolean {
  const info = GGML_TYPES.get(type);
  return info !== undefined && info.typeSize < info.blockSize;
}

/** File regions of tensor data in sub-byte quantized types, in file order. */
export function denseCodeRegions(header: GgufHeader): ByteRegion[] {
  return header.tensors
    .filter((t) => packsDenseCodes(t.type) && t.byteSize > 0)
    .map((t) => ({ start: header.dataOffset + t.offset, end: header.dataOffset + t.offset + t.byteSize }))
    .sort((a, b) => a.start - b.start);
}

export function shannonBitsPerByte(histogram: ArrayLike<number>, total: number): number {
  if (total === 0) return 0;
  let bits = 0;
  for (let i = 0; i < 256; i++) {
    const count = histogram[i] ?? 0;
    if (count === 0) continue;
    const p = count / total;
    bits -= p * Math.log2(p);
  }
  return bits;
}

export interface EntropySample {
  name: string;
  offset: number;
  length: number;
  bitsPerByte: number;
}

/**
 * Fills byte histograms for the sample ranges as chunks of the file pass by, leaving out the bytes
 * of `excluded` (sorted, non-overlapping regions). A sample's `length` is the bytes it counted.
 */
export class EntropySampler {
  private readonly ranges: readonly EntropyRange[];
  private readonly excluded: readonly ByteRegion[];
  private readonly histograms: Float64Array[];
  private readonly counted: number[];

  constructor(ranges: readonly EntropyRange[], excluded: readonly ByteRegion[] = []) {
    this.ranges = ranges;
    this.excluded = excluded;
    this.histograms = ranges.map(() => new Float64Array(256));
    this.counted = ranges.map(() => 0);
  }

  push(chunk: Uint8Array, filePosition: number): void {
    const chunkEnd = filePosition + chunk.length;
    this.ranges.forEach((range, i) => {
      const from = Math.max(range.offset, filePosition);
      const to = Math.min(range.offset + range.length, chunkEnd);
      if (from >= to) return;
      const histogram = this.histograms[i]!;
      let at = from;
      for (const region of this.excluded) {
        if (region.end <= at) continue;
        if (region.start >= to) break;
        for (let p = at - filePosition; p < region.start - filePosition; p++) histogram[chunk[p]!]!++;
        this.counted[i]! += Math.max(0, region.start - at);
        at = Math.max(at, region.end);
        if (at >= to) break;
      }
      for (let p = at - filePosition; p < to - filePosition; p++) histogram[chunk[p]!]!++;
      this.counted[i]! += Math.max(0, to - at);
    });
  }

  samples(): EntropySample[] {
    return this.ranges.map((range, i) => ({ ...range, length: this.counted[i]!, bitsPerByte: shannonBitsPerByte(this.histograms[i]!, this.counted[i]!) }));
  }
}
