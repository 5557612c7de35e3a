// Shannon entropy of 1 MiB samples at the start, middle and end of the file (SecAI OS static_scan):
// more than 7.99 bits/byte means encrypted or compressed bytes — a hidden payload, since GGUF
// weights, even quantized ones, stay well below that.

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

/** Fills byte histograms for the sample ranges as chunks of the file pass by. */
export class EntropySampler {
  private readonly ranges: readonly EntropyRange[];
  private readonly histograms: Float64Array[];

  constructor(ranges: readonly EntropyRange[]) {
    this.ranges = ranges;
    this.histograms = ranges.map(() => new Float64Array(256));
  }

  push(chunk: Uint8Array, filePosition: number): void {
    const chunkEnd = filePosition + chunk.length;
    this.ranges.forEach((range, i) => {
      const from = Math.max(range.offset, filePosition);
      const to = Math.min(range.offset + range.length, chunkEnd);
      const histogram = this.histograms[i]!;
      for (let p = from - filePosition; p < to - filePosition; p++) histogram[chunk[p]!]!++;
    });
  }

  samples(): EntropySample[] {
    return this.ranges.map((range, i) => ({ ...range, bitsPerByte: shannonBitsPerByte(this.histograms[i]!, range.length) }));
  }
}
