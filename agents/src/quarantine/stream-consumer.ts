// The half of the one pass that runs beside the whole-file SHA-256: byte-pattern rules over every
// byte and a SHA-256 per tensor. It runs in a worker thread for large files, so the two SHA-256
// streams use both cores, and in the calling thread for small ones.
import type { WasmMemory } from './wasm.js';
import { createHash, type Hash } from 'node:crypto';
import { StreamingPatternMatcher, type PatternMatch } from './byte-patterns.js';

export interface TensorRange {
  name: string;
  /** File offset of the first data byte. */
  start: number;
  length: number;
}

/** SHA-256 of each tensor's bytes, from chunks in file order. Ranges must not overlap. */
export class TensorHasher {
  private readonly ranges: TensorRange[];
  private readonly digests: Uint8Array[];
  private current = 0;
  private hash: Hash | undefined;

  constructor(ranges: readonly TensorRange[]) {
    this.ranges = [...ranges].sort((a, b) => a.start - b.start);
    this.digests = new Array<Uint8Array>(this.ranges.length);
  }

  push(chunk: Uint8Array, filePosition: number): void {
    const chunkEnd = filePosition + chunk.length;
    while (this.current < this.ranges.length) {
      const range = this.ranges[this.current]!;
      const end = range.start + range.length;
      if (range.start >= chunkEnd) return;
      const from = Math.max(range.start, filePosition);
      const to = Math.min(end, chunkEnd);
      this.hash ??= createHash('sha256');
      if (to > from) this.hash.update(chunk.subarray(from - filePosition, to - filePosition));
      if (end > chunkEnd) return;
      this.digests[this.current] = this.hash.digest();
      this.hash = undefined;
      this.current++;
    }
  }

  /** Digests in file order; undefined for tensors the stream never finished. */
  result(): { name: string; sha256: Uint8Array | undefined }[] {
    return this.ranges.map((r, i) => ({ name: r.name, sha256: this.digests[i] }));
  }
}

const CACHE_PIECE_BYTES = 256 * 1024;

export interface StreamResult {
  matches: PatternMatch[];
  /** Tensor names in file order with their digests (32 bytes each, concatenated); empty when a digest is missing. */
  tensorNames: string[];
  tensorDigests: Uint8Array;
}

export class StreamConsumer {
  private readonly patterns: StreamingPatternMatcher;
  private tensors: TensorHasher | undefined;
  private readonly heap: Uint8Array;

  constructor(memory: WasmMemory, shared: boolean, scratch: { offset: number; bytes: number }) {
    this.patterns = new StreamingPatternMatcher(memory, shared, scratch);
    this.heap = new Uint8Array(memory.buffer);
  }

  /** Must come before the first chunk that holds tensor data. */
  setLayout(ranges: readonly TensorRange[]): void {
    this.tensors = new TensorHasher(ranges);
  }

  push(offset: number, length: number, filePosition: number): void {
    // Both passes over a piece while it is still in the core's cache.
    for (let at = 0; at < length; at += CACHE_PIECE_BYTES) {
      const piece = Math.min(CACHE_PIECE_BYTES, length - at);
      this.tensors?.push(this.heap.subarray(offset + at, offset + at + piece), filePosition + at);
      this.patterns.push(offset + at, piece, filePosition + at);
    }
  }

  finish(): StreamResult {
    const matches = this.patterns.finish();
    const tensors = this.tensors?.result() ?? [];
    const complete = tensors.length > 0 && tensors.every((t) => t.sha256 !== undefined);
    const tensorDigests = new Uint8Array(complete ? tensors.length * 32 : 0);
    if (complete) tensors.forEach((t, i) => tensorDigests.set(t.sha256!, i * 32));
    return { matches, tensorNames: complete ? tensors.map((t) => t.name) : [], tensorDigests };
  }
}
