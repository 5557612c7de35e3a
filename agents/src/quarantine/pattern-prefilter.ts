// A SIMD prefilter for the byte-pattern rules, so they can run over every byte of a multi-GB file
// in the same pass as SHA-256 (one Buffer.indexOf per needle costs about 0.1 s/GiB each; this costs
// about 0.13 s/GiB for all needles together). It is the "Teddy" idea of Hyperscan: the first three
// bytes of each needle are split into nibbles, and per 16-byte block one load, six table lookups
// (i8x16.relaxed_swizzle), two lane shifts (i8x16.shuffle) and a few ANDs say, per byte position,
// which buckets of needles may start there. Candidates go back to JavaScript, which compares the
// whole needle. Case-insensitive needles cost nothing extra: both cases are entered in the tables.
//
// The WebAssembly module is assembled here from its instructions (about 600 bytes), so there is
// no build step and no binary in the repository.
import { wasm, type WasmMemory } from './wasm.js';

/** Needle prefixes the tables are built from. */
export interface PrefilterNeedle {
  bytes: Uint8Array;
  caseInsensitive: boolean;
  /** 0 to 7. */
  bucket: number;
}

export const PREFILTER_PREFIX = 3;
const TABLES_BYTES = 6 * 16;
/** Each candidate record: u32 block position, 12 bytes unused, 16 bytes of per-lane bucket bits. */
export const CANDIDATE_RECORD_BYTES = 32;
/** The kernel reads up to this many bytes past the end of the range it scans (two blocks and two lookahead bytes). */
export const PREFILTER_OVERREAD = 48;

// Instruction encodings (WebAssembly core spec 1.0 and the fixed-width SIMD proposal).
const I32 = 0x7f;
const V128 = 0x7b;
const op = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Store: 0x36,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32Shl: 0x74,
  empty: 0x40,
};
const simd = {
  load: [0xfd, 0x00],
  store: [0xfd, 0x0b],
  const: [0xfd, 0x0c],
  swizzle: [0xfd, 0x80, 0x02],
  and: [0xfd, 0x4e],
  or: [0xfd, 0x50],
  anyTrue: [0xfd, 0x53],
  shrU: [0xfd, 0x6d],
  shuffle: [0xfd, 0x0d],
};

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function name(s: string): number[] {
  const bytes = [...Buffer.from(s, 'utf8')];
  return [...uleb(bytes.length), ...bytes];
}

/**
 * scan(tables, start, end, out, outMax) -> count: for each 16-byte block from start below end
 * where some position may start a needle, writes a candidate record at out; stops after outMax
 * records so the caller can resume after the last one. Each block is loaded once: its bytes are
 * looked up in the three tables, and the lookups for the second and third needle bytes are moved
 * one and two lanes down with the next block's (a shuffle), so that lane i holds byte i's,
 * byte i+1's and byte i+2's. Two blocks per iteration: one test and branch for 32 bytes.
 */
function scanFunctionBody(): number[] {
  // Parameters 0-4; locals: 5 p, 6 n (i32); 7-12 tables, 13 nibble mask, 14 lo, 15 hi, then the
  // lookups of three blocks (at p, p+16, p+32; one per needle byte) and two candidate masks (v128).
  const [tables, start, end, out, outMax, p, n] = [0, 1, 2, 3, 4, 5, 6];
  const T = (k: number) => 7 + k;
  const [mask, lo, hi] = [13, 14, 15];
  const P = [16, 17, 18];
  const A = [19, 20, 21];
  const B = [22, 23, 24];
  const [ca, cb] = [25, 26];
  const get = (i: number) => [op.localGet, i];
  const set = (i: number) => [op.localSet, i];
  const load = (offset: number) => [...simd.load, 0, ...uleb(offset)];
  // dst[k] = the bucket bits of each byte of the block at p + offset as needle byte k:
  // lo-table[b & 15] & hi-table[b >> 4].
  const lookups = (offset: number, dst: number[]) => [
    ...get(p), ...load(offset), op.localTee, hi,
    ...get(mask), ...simd.and, ...set(lo),
    ...get(hi), op.i32Const, 4, ...simd.shrU, ...set(hi),
    ...[0, 1, 2].flatMap((k) => [...get(T(2 * k)), ...get(lo), ...simd.swizzle, ...get(T(2 * k + 1)), ...get(hi), ...simd.swizzle, ...simd.and, ...set(dst[k]!)]),
  ];
  // Lanes k.. of `block`, then the first k lanes of `next`.
  const shifted = (k: number, block: number, next: number) => [...get(block), ...get(next), ...simd.shuffle, ...Array.from({ length: 16 }, (_, i) => i + k)];
  const candidates = (block: number[], next: number[]) => [...get(block[0]!), ...shifted(1, block[1]!, next[1]!), ...simd.and, ...shifted(2, block[2]!, next[2]!), ...simd.and];
  const record = () => [...get(out), ...get(n), op.i32Const, 5, op.i32Shl, op.i32Add];
  const emit = (m: number, offset: number) => [
    ...record(), ...get(p), op.i32Const, offset, op.i32Add, op.i32Store, 2, 0,
    ...record(), ...get(m), ...simd.store, 0, 16,
    ...get(n), op.i32Const, 1, op.i32Add, ...set(n),
  ];
  const code = [
    ...Array.from({ length: 6 }, (_, k) => [...get(tables), ...load(16 * k), ...set(T(k))]).flat(),
    ...simd.const, ...new Array<number>(16).fill(0x0f), ...set(mask),
    ...get(start), ...set(p),
    ...lookups(0, P),
    op.block, op.empty,
    op.loop, op.empty,
    ...get(p), ...get(end), op.i32GeU, op.brIf, 1,
    ...lookups(16, A),
    ...lookups(32, B),
    ...candidates(P, A), op.localTee, ca,
    ...candidates(A, B), op.localTee, cb,
    ...simd.or, ...simd.anyTrue,
    op.if, op.empty,
    ...emit(ca, 0), ...emit(cb, 16),
    // Two records per hit: stop while two more still fit.
    ...get(n), op.i32Const, 1, op.i32Add, ...get(outMax), op.i32GeU, op.brIf, 2,
    op.end,
    ...[0, 1, 2].flatMap((k) => [...get(B[k]!), ...set(P[k]!)]),
    ...get(p), op.i32Const, 32, op.i32Add, ...set(p),
    op.br, 0,
    op.end,
    op.end,
    ...get(n),
    op.end,
  ];
  const locals = [2, ...uleb(2), I32, ...uleb(20), V128];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/** The module: imports a (shared) memory as env.memory, exports scan. */
export function prefilterModuleBytes(minPages: number, maxPages: number, shared: boolean): Uint8Array {
  const type = section(1, [1, 0x60, 5, I32, I32, I32, I32, I32, 1, I32]);
  const limits = shared ? [0x03, ...uleb(minPages), ...uleb(maxPages)] : [0x01, ...uleb(minPages), ...uleb(maxPages)];
  const imports = section(2, [1, ...name('env'), ...name('memory'), 0x02, ...limits]);
  const functions = section(3, [1, 0]);
  const exports = section(7, [1, ...name('scan'), 0x00, 0]);
  const code = section(10, [1, ...scanFunctionBody()]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...type, ...imports, ...functions, ...exports, ...code]);
}

/** The six 16-byte nibble tables (lo and hi for each of the first three needle bytes). */
export function prefilterTables(needles: readonly PrefilterNeedle[]): Uint8Array {
  const tables = new Uint8Array(TABLES_BYTES);
  for (const needle of needles) {
    if (needle.bytes.length < PREFILTER_PREFIX) throw new Error('prefilter needles need at least 3 bytes');
    if (needle.bucket < 0 || needle.bucket > 7) throw new Error('prefilter buckets are 0 to 7');
    const bit = 1 << needle.bucket;
    for (let k = 0; k < PREFILTER_PREFIX; k++) {
      const byte = needle.bytes[k]!;
      const variants = needle.caseInsensitive ? caseVariants(byte) : [byte];
      for (const b of variants) {
        tables[32 * k + (b & 15)]! |= bit;
        tables[32 * k + 16 + (b >> 4)]! |= bit;
      }
    }
  }
  return tables;
}

function caseVariants(byte: number): number[] {
  const lower = byte | 0x20;
  return lower >= 0x61 && lower <= 0x7a ? [lower, lower & ~0x20] : [byte];
}

export interface Prefilter {
  /** The wasm memory; the bytes to scan must be inside it. */
  memory: WasmMemory;
  /**
   * Calls onCandidate(position, buckets) for every position in [start, end) of the memory where a
   * needle of those buckets may start. PREFILTER_OVERREAD bytes after end must be inside memory.
   */
  scan(start: number, end: number, onCandidate: (position: number, buckets: number) => void): void;
}

/**
 * Instantiates the prefilter over `memory`, reserving `scratch` (an address range of at least
 * TABLES_BYTES + outMax * 32 bytes inside the memory that nothing else uses) for tables and results.
 */
export function createPrefilter(memory: WasmMemory, shared: boolean, needles: readonly PrefilterNeedle[], scratch: { offset: number; bytes: number }): Prefilter {
  const pages = memory.buffer.byteLength / 65536;
  const module = new wasm.Module(prefilterModuleBytes(pages, pages, shared));
  const instance = new wasm.Instance(module, { env: { memory } });
  const scanExport = instance.exports.scan as (tables: number, start: number, end: number, out: number, outMax: number) => number;
  const heap = new Uint8Array(memory.buffer);
  heap.set(prefilterTables(needles), scratch.offset);
  const out = scratch.offset + TABLES_BYTES;
  const outMax = Math.floor((scratch.bytes - TABLES_BYTES) / CANDIDATE_RECORD_BYTES);
  if (outMax < 1) throw new Error('prefilter scratch space too small');
  const view = new DataView(memory.buffer);
  return {
    memory,
    scan(start, end, onCandidate) {
      let from = start;
      while (from < end) {
        const count = scanExport(scratch.offset, from, end, out, outMax);
        let last = -1;
        for (let r = 0; r < count; r++) {
          const record = out + r * CANDIDATE_RECORD_BYTES;
          const block = view.getUint32(record, true);
          last = block;
          for (let lane = 0; lane < 16; lane++) {
            const buckets = heap[record + 16 + lane]!;
            if (buckets !== 0 && block + lane < end) onCandidate(block + lane, buckets);
          }
        }
        if (count + 1 < outMax) return;
        from = last + 16;
      }
    },
  };
}
