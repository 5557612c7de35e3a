// The per-tensor hash tree of the trusted-store manifest (merkle.ts), computed for an artifact that
// passed every check, just before promotion, by a scanner job of its own: it reads the header
// again and then each tensor's bytes. It is not part of the verdict pass, where a second SHA-256
// stream over the tensor data made the pass cost twice what the digest alone does. Tensors are
// split between two threads by bytes (sha256-worker.mjs), each reading its own ranges, so the tree
// takes about half the time of one SHA-256 stream over the file.
// This runs inside the scanner sandbox; it trusts nothing it reads, and anything that no longer
// matches what the verdict pass saw is reported as a changed file.
import { open, type FileHandle } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { checkTensorLayout, DEFAULT_GGUF_LIMITS, parseGgufHeader, type GgufLimits, type GgufParse } from './gguf-parser.js';
import { tensorMerkleRoot } from './merkle.js';
import { ArtifactChangedError } from './one-pass-scan.js';

export interface TensorTreeOptions {
  limits?: GgufLimits;
  chunkBytes?: number;
  /** Smaller files are hashed by one thread (a second one's start-up costs more than it saves). */
  twoThreadsFromBytes?: number;
}

const DEFAULTS = { chunkBytes: 4 * 1024 * 1024, twoThreadsFromBytes: 32 * 1024 * 1024 };

export interface TensorTree {
  sizeBytes: number;
  tensorCount: number;
  tensorMerkleRoot: string;
  durationMs: number;
}

interface TensorRange {
  name: string;
  start: number;
  length: number;
}

/** Reads the header until it parses; bounded by the parser's maxHeaderBytes. */
async function readHeader(handle: FileHandle, size: number, limits: GgufLimits, chunkBytes: number): Promise<GgufParse> {
  let bytes = new Uint8Array(0);
  let want = Math.min(size, chunkBytes);
  for (;;) {
    const grown = new Uint8Array(want);
    grown.set(bytes);
    const { bytesRead } = await handle.read(grown, bytes.length, want - bytes.length, bytes.length);
    bytes = grown.subarray(0, bytes.length + bytesRead);
    const parse = parseGgufHeader(bytes, size, limits);
    if (parse.status !== 'incomplete' || bytesRead === 0) return parse;
    want = Math.min(size, limits.maxHeaderBytes, Math.max(parse.needBytes, Math.ceil(bytes.length * 1.5)));
  }
}

/** Two groups of about equal bytes: the largest tensors first, each to the lighter group. */
function splitByBytes(ranges: readonly TensorRange[]): [number[], number[]] {
  const groups: [number[], number[]] = [[], []];
  const bytes = [0, 0];
  const bySize = ranges.map((r, i) => i).sort((a, b) => ranges[b]!.length - ranges[a]!.length || a - b);
  for (const i of bySize) {
    const g = bytes[0]! <= bytes[1]! ? 0 : 1;
    groups[g].push(i);
    bytes[g]! += ranges[i]!.length;
  }
  return [groups[0].sort((a, b) => a - b), groups[1].sort((a, b) => a - b)];
}

/** SHA-256 of each range, by one worker reading the file through `fd`. */
function hashRanges(fd: number, ranges: readonly TensorRange[], chunkBytes: number): { worker: Worker; digests: Promise<Uint8Array> } {
  const worker = new Worker(new URL('./sha256-worker.mjs', import.meta.url), {
    workerData: { kind: 'ranges', fd, ranges: ranges.map(({ start, length }) => ({ start, length })), chunkBytes },
    // Plain JavaScript needs no loader; inheriting the caller's (--import tsx) would slow the start five-fold.
    execArgv: [],
    resourceLimits: { codeRangeSizeMb: 16, maxOldGenerationSizeMb: 32 },
  });
  const digests = new Promise<Uint8Array>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the tensor hashing worker exited with code ${code}`)));
  });
  return { worker, digests };
}

export async function computeTensorTree(path: string, options: TensorTreeOptions = {}): Promise<TensorTree> {
  const started = performance.now();
  const limits = options.limits ?? DEFAULT_GGUF_LIMITS;
  const chunkBytes = options.chunkBytes ?? DEFAULTS.chunkBytes;
  const handle = await open(path, 'r');
  let workers: ReturnType<typeof hashRanges>[] = [];
  try {
    const before = await handle.stat();
    if (!before.isFile()) throw new Error(`${path} is not a regular file`);
    const size = before.size;
    const parse = await readHeader(handle, size, limits, chunkBytes);
    if (parse.status !== 'ok') throw new ArtifactChangedError(`the header no longer parses: ${parse.status === 'invalid' ? parse.message : 'truncated'}`);
    const header = parse.header;
    const layout = checkTensorLayout(header, size);
    if (layout) throw new ArtifactChangedError(`the tensor layout no longer holds: ${layout.message}`);
    // Leaves in file order, as the layout check guarantees declaration order to be.
    const ranges = header.tensors.map((t) => ({ name: t.name, start: header.dataOffset + t.offset, length: t.byteSize })).sort((a, b) => a.start - b.start);

    const groups = size >= (options.twoThreadsFromBytes ?? DEFAULTS.twoThreadsFromBytes) ? splitByBytes(ranges) : [ranges.map((_, i) => i)];
    workers = groups.map((group) => hashRanges(handle.fd, group.map((i) => ranges[i]!), chunkBytes));
    const hashed = await Promise.all(workers.map((w) => w.digests));
    const digests = new Array<Uint8Array>(ranges.length);
    groups.forEach((group, g) => group.forEach((i, k) => (digests[i] = hashed[g]!.subarray(k * 32, k * 32 + 32))));

    const after = await handle.stat();
    if (after.size !== size || after.mtimeMs !== before.mtimeMs) throw new ArtifactChangedError('the file changed while its tensors were hashed');
    return {
      sizeBytes: size,
      tensorCount: ranges.length,
      tensorMerkleRoot: tensorMerkleRoot(ranges.map((r, i) => ({ name: r.name, sha256: digests[i]! }))),
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    // The workers read through this descriptor: they stop before it closes.
    await Promise.all(workers.map((w) => w.worker.terminate()));
    await handle.close();
  }
}
