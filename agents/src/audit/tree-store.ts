// The Merkle tree of the audit log on disk: one file per height holding the hashes of the aligned
// perfect subtrees of that height. Appending writes amortised two hashes; any proof range is at most
// 53 perfect subtrees, so a proof costs O(log^2 n) small reads and no rehashing of the log. The files
// are a cache derived from the entries: the log checks them against the entries when it opens.
import { mkdir, open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { emptyTreeRoot, foldPerfectSubtrees, HASH_BYTES, nodeHash, perfectSubtrees, type LeafRange } from '../../../api/audit/merkle.js';
import { levelFileName } from './log-files.js';

const MAX_HEIGHT = 53;

export class TreeCacheError extends Error {
  override name = 'TreeCacheError';
}

interface FrontierNode {
  height: number;
  hash: Buffer;
}

export class MerkleTreeStore {
  private readonly handles = new Map<number, FileHandle>();
  /** counts[h]: nodes stored at height h. */
  private readonly counts: number[] = [];
  private frontier: FrontierNode[] = [];

  private constructor(private readonly dir: string) {}

  /** Opens the tree in `dir`, completing upper levels that a crash left short. */
  static async open(dir: string): Promise<MerkleTreeStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const store = new MerkleTreeStore(dir);
    try {
      await store.load();
    } catch (error) {
      await store.close();
      throw error;
    }
    return store;
  }

  private async load(): Promise<void> {
    const names = new Set(await readdir(this.dir));
    for (let height = 0; height <= MAX_HEIGHT; height++) {
      if (height > 0 && (this.counts[height - 1] ?? 0) < 2 && !names.has(levelFileName(height))) break;
      const handle = await this.handle(height);
      const { size } = await handle.stat();
      // A hash torn by a crash is dropped; it is recomputed from the level below or from the entries.
      if (size % HASH_BYTES !== 0) await handle.truncate(size - (size % HASH_BYTES));
      this.counts[height] = Math.floor(size / HASH_BYTES);
      if (height > 0) {
        const expected = Math.floor(this.counts[height - 1]! / 2);
        if (this.counts[height]! > expected) {
          throw new TreeCacheError(`tree level ${height} holds ${this.counts[height]} nodes, level ${height - 1} only supports ${expected}`);
        }
        for (let index = this.counts[height]!; index < expected; index++) {
          const left = await this.nodeAt(height - 1, 2 * index);
          const right = await this.nodeAt(height - 1, 2 * index + 1);
          await this.write(height, nodeHash(left, right));
        }
      }
    }
    this.frontier = await this.frontierOf(this.size);
  }

  get size(): number {
    return this.counts[0] ?? 0;
  }

  private async handle(height: number): Promise<FileHandle> {
    let handle = this.handles.get(height);
    if (!handle) {
      handle = await open(join(this.dir, levelFileName(height)), 'a+', 0o600);
      this.handles.set(height, handle);
    }
    return handle;
  }

  private async write(height: number, hash: Buffer): Promise<void> {
    const handle = await this.handle(height);
    await handle.write(hash);
    this.counts[height] = (this.counts[height] ?? 0) + 1;
  }

  /** The hash of the perfect subtree of `height` covering leaves [index * 2^height, (index + 1) * 2^height). */
  async nodeAt(height: number, index: number): Promise<Buffer> {
    if (index < 0 || index >= (this.counts[height] ?? 0)) throw new RangeError(`no tree node ${index} at height ${height}`);
    const handle = await this.handle(height);
    const hash = Buffer.alloc(HASH_BYTES);
    const { bytesRead } = await handle.read(hash, 0, HASH_BYTES, index * HASH_BYTES);
    if (bytesRead !== HASH_BYTES) throw new TreeCacheError(`tree level ${height} ends before node ${index}`);
    return hash;
  }

  private async frontierOf(size: number): Promise<FrontierNode[]> {
    const nodes: FrontierNode[] = [];
    let begin = 0;
    for (const piece of size === 0 ? [] : perfectSubtrees({ begin: 0, end: size })) {
      nodes.push({ height: piece.height, hash: await this.nodeAt(piece.height, begin / 2 ** piece.height) });
      begin += 2 ** piece.height;
    }
    return nodes;
  }

  async append(leaf: Buffer): Promise<void> {
    if (leaf.length !== HASH_BYTES) throw new RangeError(`a leaf hash has ${HASH_BYTES} bytes`);
    await this.write(0, leaf);
    let node: FrontierNode = { height: 0, hash: leaf };
    for (let last = this.frontier.at(-1); last && last.height === node.height; last = this.frontier.at(-1)) {
      this.frontier.pop();
      node = { height: node.height + 1, hash: nodeHash(last.hash, node.hash) };
      await this.write(node.height, node.hash);
    }
    this.frontier.push(node);
  }

  root(): Buffer {
    return this.frontier.length === 0 ? emptyTreeRoot() : foldPerfectSubtrees(this.frontier.map((n) => n.hash));
  }

  /** MTH of the leaves in `range`, which must be a subtree an RFC 6962 proof can name. */
  async rangeHash(range: LeafRange): Promise<Buffer> {
    if (range.end > this.size) throw new RangeError(`range [${range.begin}, ${range.end}) is beyond the tree of ${this.size}`);
    const pieces = perfectSubtrees(range);
    const hashes: Buffer[] = [];
    for (const { begin, height } of pieces) hashes.push(await this.nodeAt(height, begin / 2 ** height));
    return foldPerfectSubtrees(hashes);
  }

  async rootAt(size: number): Promise<Buffer> {
    return size === 0 ? emptyTreeRoot() : this.rangeHash({ begin: 0, end: size });
  }

  /** The stored leaf hashes in order, read in large chunks (for checking the cache against the entries). */
  async *leaves(): AsyncGenerator<Buffer> {
    const handle = await this.handle(0);
    const count = this.size;
    const chunk = Buffer.alloc(HASH_BYTES * 4096);
    for (let index = 0; index < count; ) {
      const want = Math.min(4096, count - index);
      const { bytesRead } = await handle.read(chunk, 0, want * HASH_BYTES, index * HASH_BYTES);
      if (bytesRead !== want * HASH_BYTES) throw new TreeCacheError(`tree level 0 ends before leaf ${index + want}`);
      for (let i = 0; i < want; i++) yield Buffer.from(chunk.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
      index += want;
    }
  }

  async close(): Promise<void> {
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map((h) => h.close()));
  }
}
