// What the agent checks a file it keeps (a trusted model, a sealed audit segment) against between
// full reads, and the full read: a streamed SHA-256. (The inference worker hashes its model with a
// copy of its own: its sandbox binds only its own folder.)
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';

/**
 * What identifies a file between re-hashes: any write, truncation, replacement or `touch -d`
 * moves one of these (ctime cannot be set back from userspace).
 */
export interface StoredFileState {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** The file's state now, or undefined when it does not exist. */
export async function storedFileState(path: string): Promise<StoredFileState | undefined> {
  try {
    const s = await stat(path);
    return { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

export function sameStoredState(a: StoredFileState | undefined, b: StoredFileState | undefined): boolean {
  return !!a && !!b && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

const CHUNK_BYTES = 8 << 20;

/**
 * Two buffers in turn: the next read runs on libuv's thread pool while this thread hashes the
 * chunk just read, so reading and hashing overlap (a stream hashes and reads one after the other).
 */
export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  try {
    const buffers = [Buffer.allocUnsafe(CHUNK_BYTES), Buffer.allocUnsafe(CHUNK_BYTES)];
    let turn = 0;
    let pending = handle.read(buffers[turn]!, 0, CHUNK_BYTES, null);
    for (;;) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) break;
      turn ^= 1;
      pending = handle.read(buffers[turn]!, 0, CHUNK_BYTES, null);
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}
