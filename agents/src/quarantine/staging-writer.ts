// Writes a fetched body into its staging file in large batches: the body's chunks (64 KiB each, as
// the socket delivers them) are copied into a ring of 8 MiB slots of one shared memory; a full slot
// is written at its position (one positioned write, on libuv's pool) and, when the body has a
// digest to match, hashed where it lies on a SHA-256 thread of its own (sha256-worker.mjs, the
// scanner's "stream" kind), both at once. A slot is reused once both are done with it; when every
// slot is busy the caller waits, which stops reading the socket. So receiving, hashing and writing
// each get a core, instead of one thread doing all three a chunk at a time.
// `onProgress` hears how many leading bytes of the file are written (writes may finish out of
// order): the scanner that follows a download reads no further.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Worker } from 'node:worker_threads';
import { startDigestThread } from './digest-thread.js';

export const STAGING_SLOT_BYTES = 8 * 1024 * 1024;
const SLOTS = 4;
/** Smaller bodies are hashed on the reader's thread: a thread's start-up costs more than it saves. */
export const HASH_THREAD_THRESHOLD_BYTES = 32 * 1024 * 1024;

export interface StagingWriterOptions {
  /** Hash the body (SHA-256), on a thread of its own when `expectedBytes` is large. */
  hash: boolean;
  /** The body's declared size, when known: sizes the ring and picks the hashing thread. */
  expectedBytes?: number;
  onProgress?: (writtenBytes: number) => void;
}

export interface StagingWriter {
  /** Takes a chunk (copied: the caller may reuse it); resolves once there is room for the next. */
  write(chunk: Uint8Array): Promise<void>;
  /** Writes what is left, closes the file; the body's SHA-256 when hashing. */
  finish(): Promise<{ bytes: number; sha256?: string }>;
  /** Stops, waits for writes in flight, closes the file (the caller removes it). */
  abort(): Promise<void>;
}

type DigestMessage = { kind: 'hashed'; slot: number } | { kind: 'digest'; sha256: string };

/** Creates `path` (0600, refusing an existing file) and returns its writer. */
export async function openStagingWriter(path: string, options: StagingWriterOptions): Promise<StagingWriter> {
  const handle = await open(path, 'wx', 0o600);
  const expected = options.expectedBytes;
  const slotBytes = expected !== undefined ? Math.max(1, Math.min(STAGING_SLOT_BYTES, expected)) : STAGING_SLOT_BYTES;
  const slotCount = expected !== undefined && expected <= slotBytes ? 1 : SLOTS;
  const threaded = options.hash && expected !== undefined && expected >= HASH_THREAD_THRESHOLD_BYTES;
  const buffer = threaded ? new SharedArrayBuffer(slotBytes * slotCount) : new ArrayBuffer(slotBytes * slotCount);
  const heap = new Uint8Array(buffer);

  let broken: Error | undefined;
  const users = new Array<number>(slotCount).fill(0);
  const free: number[] = Array.from({ length: slotCount }, (_, i) => i);
  const waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const fail = (e: Error) => {
    broken ??= e;
    for (const w of waiting.splice(0)) w.reject(broken);
  };
  const release = (slot: number) => {
    if (--users[slot]! > 0) return;
    free.push(slot);
    waiting.shift()?.resolve();
  };

  const inline = options.hash && !threaded ? createHash('sha256') : undefined;
  let worker: Worker | undefined;
  let digest: { resolve: (sha256: string) => void; reject: (e: Error) => void } | undefined;
  const workerFailed = (e: Error) => {
    fail(e);
    digest?.reject(broken!);
  };
  const exited = (code: number) => workerFailed(new Error(`the SHA-256 thread exited with code ${code}`));
  if (threaded) {
    worker = startDigestThread();
    worker.on('message', (m: DigestMessage) => {
      if (m.kind === 'hashed') release(m.slot);
      else digest?.resolve(m.sha256);
    });
    worker.on('error', workerFailed);
    worker.on('exit', exited);
    worker.postMessage({ kind: 'memory', buffer });
  }
  const stopWorker = () => {
    if (!worker) return;
    worker.off('exit', exited);
    void worker.terminate();
  };

  // Leading bytes on disk: completed writes past a gap wait in `done` until it closes.
  let contiguous = 0;
  const done = new Map<number, number>();
  const inFlight = new Set<Promise<void>>();
  const writeSlot = async (slot: number, length: number, position: number) => {
    let at = 0;
    while (at < length) {
      const { bytesWritten } = await handle.write(heap, slot * slotBytes + at, length - at, position + at);
      at += bytesWritten;
    }
    done.set(position, length);
    for (let next = done.get(contiguous); next !== undefined; next = done.get(contiguous)) {
      done.delete(contiguous);
      contiguous += next;
    }
    options.onProgress?.(contiguous);
  };

  let current: number | undefined;
  let fill = 0;
  let position = 0;
  const dispatch = () => {
    const slot = current!;
    const length = fill;
    current = undefined;
    fill = 0;
    if (length === 0) {
      free.push(slot);
      return;
    }
    users[slot] = worker ? 2 : 1;
    if (worker) worker.postMessage({ kind: 'chunk', slot, offset: slot * slotBytes, length });
    else inline?.update(heap.subarray(slot * slotBytes, slot * slotBytes + length));
    const written = writeSlot(slot, length, position).then(
      () => release(slot),
      (e: unknown) => fail(e as Error),
    );
    inFlight.add(written);
    void written.finally(() => inFlight.delete(written));
    position += length;
  };
  const acquire = async (): Promise<number> => {
    while (free.length === 0) {
      if (broken) throw broken;
      await new Promise<void>((resolve, reject) => waiting.push({ resolve, reject }));
    }
    if (broken) throw broken;
    return free.shift()!;
  };
  const settle = async () => {
    while (inFlight.size > 0) await Promise.all(inFlight);
  };

  return {
    async write(chunk) {
      if (broken) throw broken;
      for (let at = 0; at < chunk.length; ) {
        current ??= await acquire();
        const n = Math.min(chunk.length - at, slotBytes - fill);
        heap.set(chunk.subarray(at, at + n), current * slotBytes + fill);
        fill += n;
        at += n;
        if (fill === slotBytes) dispatch();
      }
    },
    async finish() {
      try {
        if (current !== undefined) dispatch();
        await settle();
        if (broken) throw broken;
        let sha256: string | undefined;
        if (worker) {
          sha256 = await new Promise<string>((resolve, reject) => {
            digest = { resolve, reject };
            if (broken) reject(broken);
            else worker!.postMessage({ kind: 'finish' });
          });
        } else if (inline) sha256 = inline.digest('hex');
        await handle.close();
        return { bytes: position, ...(sha256 !== undefined ? { sha256 } : {}) };
      } catch (e) {
        await handle.close().catch(() => undefined);
        throw e;
      } finally {
        stopWorker();
      }
    },
    async abort() {
      fail(new Error('aborted'));
      await settle();
      stopWorker();
      await handle.close().catch(() => undefined);
    },
  };
}
