// The one read pass over an untrusted artifact, for the verdict. Every byte is read from disk once,
// into a ring of reused 4 MiB slots of one shared memory (FileHandle.read, one read in flight
// ahead), and each slot feeds two consumers that read it where it lies:
// - the whole-file SHA-256, on a thread of its own for files large enough to pay for one
//   (sha256-worker.mjs): it is the longest part of the pass, and SHA-256 cannot be split;
// - on the reader's thread, everything else (stream-consumer.ts): the GGUF header and layout,
//   chat templates, zero padding, weight statistics, entropy samples and byte patterns.
// A slot is reused when both are done with it. The per-tensor hash tree of the manifest is not
// part of the verdict: it is computed after every check has passed (tensor-tree.ts).
// This runs inside the scanner sandbox; it trusts nothing it reads.
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { Worker } from 'node:worker_threads';
import { PATTERN_SCRATCH_BYTES } from './byte-patterns.js';
import { startDigestThread } from './digest-thread.js';
import { DEFAULT_GGUF_LIMITS, type GgufLimits } from './gguf-parser.js';
import { PREFILTER_OVERREAD } from './pattern-prefilter.js';
import { StreamConsumer, type StreamFindings } from './stream-consumer.js';
import { wasm, type WasmMemory } from './wasm.js';

export type { HeaderSummary } from './stream-consumer.js';

export interface ScanOptions {
  limits?: GgufLimits;
  chunkBytes?: number;
  slots?: number;
  readsAhead?: number;
  /** Smaller files are hashed without a worker thread (its start-up costs more than it saves). */
  workerThresholdBytes?: number;
  /** A SHA-256 thread started ahead (startDigestThread); the scan takes it over and ends it. */
  digestThread?: Worker;
  /** The file is still being written (a download): read it as it grows (FollowedFile). */
  follow?: FollowedFile;
}

/**
 * A file that grows to `sizeBytes` while it is read: nothing is read before `available` says it is
 * written, and the pass ends only once `complete` says the writer is done.
 */
export interface FollowedFile {
  sizeBytes: number;
  /** Resolves once the first `end` bytes are written; rejects when they never will be. */
  available(end: number): Promise<void>;
  /** Resolves once the writer has finished, every byte written; rejects when it gave up. */
  complete(): Promise<void>;
}

const DEFAULTS = { chunkBytes: 4 * 1024 * 1024, slots: 8, readsAhead: 2, workerThresholdBytes: 32 * 1024 * 1024 };

export interface ScanReport extends StreamFindings {
  sizeBytes: number;
  sha256: string;
  durationMs: number;
}

/** The file changed size or contents while it was read. */
export class ArtifactChangedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArtifactChangedError';
  }
}

/** The SHA-256 stream over the slots, in file order. */
interface Digester {
  /** Hashes heap[offset, offset + length); calls back with `slot` once it may be reused. */
  push(slot: number, offset: number, length: number): void;
  finish(): Promise<string>;
  close(): Promise<void>;
}

function inThreadDigester(heap: Uint8Array, done: (slot: number) => void): Digester {
  const hash = createHash('sha256');
  return {
    push: (slot, offset, length) => {
      hash.update(heap.subarray(offset, offset + length));
      done(slot);
    },
    finish: async () => hash.digest('hex'),
    close: async () => undefined,
  };
}

type DigestMessage = { kind: 'hashed'; slot: number } | { kind: 'digest'; sha256: string };

function workerDigester(worker: Worker, memory: WasmMemory, done: (slot: number) => void, fail: (e: Error) => void): Digester {
  if (worker.threadId === -1) throw new Error('the SHA-256 thread ended before the scan began');
  let failure: Error | undefined;
  let settle: { resolve: (sha256: string) => void; reject: (e: Error) => void } | undefined;
  const failed = (e: Error) => {
    failure ??= e;
    settle?.reject(failure);
    fail(failure);
  };
  worker.on('message', (m: DigestMessage) => {
    if (m.kind === 'hashed') done(m.slot);
    else settle?.resolve(m.sha256);
  });
  // A dead worker never hands its slots back: the reader must stop waiting for them.
  const exited = (code: number) => failed(new Error(`the SHA-256 worker exited with code ${code}`));
  worker.on('error', failed);
  worker.on('exit', exited);
  const post = (m: object) => {
    if (failure) throw failure;
    // Posted before the worker has started, messages wait in its queue: reading starts at once.
    worker.postMessage(m);
  };
  post({ kind: 'memory', buffer: memory.buffer });
  return {
    push: (slot, offset, length) => post({ kind: 'chunk', slot, offset, length }),
    finish: () =>
      new Promise<string>((resolve, reject) => {
        settle = { resolve, reject };
        post({ kind: 'finish' });
      }),
    close: async () => {
      worker.off('exit', exited);
      // It holds nothing to release: the verdict need not wait for the thread to wind down.
      void worker.terminate();
    },
  };
}

async function readFully(handle: FileHandle, into: Uint8Array, position: number): Promise<number> {
  let filled = 0;
  while (filled < into.length) {
    const { bytesRead } = await handle.read(into, filled, into.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

export async function scanArtifact(path: string, options: ScanOptions = {}): Promise<ScanReport> {
  const started = performance.now();
  const limits = options.limits ?? DEFAULT_GGUF_LIMITS;
  // One slot more than the reads in flight, for the one being consumed.
  const readsAhead = Math.max(1, options.readsAhead ?? DEFAULTS.readsAhead);
  const slotCount = Math.max(readsAhead + 1, options.slots ?? DEFAULTS.slots);
  const handle = await open(path, 'r');
  let digester: Digester | undefined;
  try {
    const before = await handle.stat();
    if (!before.isFile()) throw new Error(`${path} is not a regular file`);
    const follow = options.follow;
    const size = follow ? follow.sizeBytes : before.size;
    const chunkBytes = Math.max(1, Math.min(options.chunkBytes ?? DEFAULTS.chunkBytes, size));
    const useWorker = size >= (options.workerThresholdBytes ?? DEFAULTS.workerThresholdBytes);

    const slotStride = alignUp(chunkBytes + PREFILTER_OVERREAD, 64);
    const scratch = { offset: slotStride * slotCount, bytes: PATTERN_SCRATCH_BYTES };
    const pages = Math.ceil((scratch.offset + scratch.bytes) / 65536);
    const memory = new wasm.Memory({ initial: pages, maximum: pages, shared: useWorker });
    const heap = new Uint8Array(memory.buffer);
    const slotOffset = (slot: number) => slot * slotStride;

    // A slot is free again when both the digester and the consumer have released it.
    const users = new Array<number>(slotCount).fill(0);
    const free: number[] = Array.from({ length: slotCount }, (_, i) => i);
    const waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];
    let broken: Error | undefined;
    const release = (slot: number) => {
      if (--users[slot]! > 0) return;
      free.push(slot);
      waiting.shift()?.resolve();
    };
    const fail = (e: Error) => {
      broken ??= e;
      for (const w of waiting.splice(0)) w.reject(e);
    };
    const acquire = async (): Promise<number> => {
      while (free.length === 0) {
        if (broken) throw broken;
        await new Promise<void>((resolve, reject) => waiting.push({ resolve, reject }));
      }
      return free.shift()!;
    };
    if (useWorker) {
      digester = workerDigester(options.digestThread ?? startDigestThread(), memory, release, fail);
    } else {
      void options.digestThread?.terminate();
      digester = inThreadDigester(heap, release);
    }
    const consumer = new StreamConsumer(memory, useWorker, scratch, { size, limits, chunkBytes });

    // Reads stay ahead in file order, so a reader thread that waits for the scheduler does not
    // leave the SHA-256 thread without work.
    const reads: { slot: number; position: number; length: number; filled: Promise<number> }[] = [];
    let nextRead = 0;
    const startRead = (slot: number) => {
      const length = Math.min(chunkBytes, size - nextRead);
      const into = heap.subarray(slotOffset(slot), slotOffset(slot) + length);
      const position = nextRead;
      const filled = follow ? follow.available(position + length).then(() => readFully(handle, into, position)) : readFully(handle, into, position);
      // Awaited in order below; one that fails after an earlier failure must not go unhandled.
      filled.catch(() => undefined);
      reads.push({ slot, position: nextRead, length, filled });
      nextRead += length;
    };
    while (reads.length < readsAhead && nextRead < size) startRead(await acquire());
    while (reads.length > 0) {
      const read = reads.shift()!;
      const length = await read.filled;
      if (length !== read.length) throw new ArtifactChangedError(`the file ended at ${read.position + length} bytes, expected ${size}`);
      users[read.slot] = 2;
      // The digest goes first: it is the critical path, and its thread starts on the slot at once.
      digester.push(read.slot, slotOffset(read.slot), length);
      if (nextRead < size) startRead(await acquire());
      consumer.push(slotOffset(read.slot), length, read.position);
      release(read.slot);
    }
    const findings = consumer.finish();
    const sha256 = await digester.finish();
    // A followed file changes while it is read, until the writer is done; its writer then checks
    // it is still the file it wrote (the digest the scan reports must be the one it received).
    if (follow) await follow.complete();
    const after = await handle.stat();
    if (after.size !== size || (!follow && after.mtimeMs !== before.mtimeMs)) throw new ArtifactChangedError('the file changed while it was scanned');
    return { sizeBytes: size, sha256, durationMs: Math.round(performance.now() - started), ...findings };
  } finally {
    await digester?.close();
    await handle.close();
  }
}
