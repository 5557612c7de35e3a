// The node's append-only audit log: canonical JSON entries in rotating segment files, an RFC 6962
// Merkle tree over all of them (rotation does not touch the tree), an Ed25519 node key, signed tree
// heads (periodically and on demand) and inclusion and consistency proofs. An entry is fsynced
// before record() resolves. On open the log checks its tree cache and last stored head against the
// entries and refuses to append to a log that was changed behind its back.
import { sign } from 'node:crypto';
import { chmod, mkdir, open, readdir, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import pino, { type Logger } from 'pino';
import { Registry } from 'prom-client';
import { consistencyProofRanges, inclusionProofRanges, leafHash } from '../../../api/audit/merkle.js';
import { treeHeadSigningInput, verifyTreeHeadSignature } from '../../../api/audit/tree-head.js';
import type { ConsistencyProof, SignedTreeHead } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { sameStoredState, storedFileState, type StoredFileState } from '../file-state.js';
import { fsyncPath } from '../fsync.js';
import { auditLogMetrics, type AuditLogMetrics } from './audit-metrics.js';
import type { AuditEvent, AuditSink } from './audit-sink.js';
import {
  HEADS_FILE,
  MAX_ENTRY_BYTES,
  MAX_HEAD_LINE_BYTES,
  SEGMENTS_DIR,
  TREE_DIR,
  auditEventProblem,
  decodeEntry,
  decodeStoredHead,
  encodeEntry,
  encodeStoredHead,
  readFileLines,
  segmentFirstIndex,
  segmentName,
  type AuditEntry,
} from './log-files.js';
import { loadOrCreateNodeKey, type NodeKey } from './node-key.js';
import { MerkleTreeStore } from './tree-store.js';

/** Segments rotate at 8 MiB by default: small enough to archive, large enough to stay few. */
export const DEFAULT_MAX_SEGMENT_BYTES = 8 * 1024 * 1024;

export interface AuditLogOptions {
  /** The log's state directory (created 0700); it also holds the node key. */
  dir: string;
  maxSegmentBytes?: number;
  /** Milliseconds since the epoch; entries and heads take their time from it. */
  clock?: () => number;
  registry?: Registry;
  logger?: Logger;
}

/** The log on disk disagrees with itself: entries, tree cache and stored heads do not match. */
export class AuditLogCorruptError extends Error {
  override name = 'AuditLogCorruptError';
}

export class AuditLog implements AuditSink {
  private queue: Promise<unknown> = Promise.resolve();
  private failure: Error | undefined;
  private segment!: { handle: FileHandle; path: string; bytes: number };
  private lastStoredHead: SignedTreeHead | undefined;
  /** Sealed (rotated, read-only) segments as they lay when sealed or loaded. */
  private readonly sealed = new Map<string, StoredFileState>();

  private constructor(
    private readonly dir: string,
    private readonly key: NodeKey,
    private readonly tree: MerkleTreeStore,
    private readonly maxSegmentBytes: number,
    private readonly clock: () => number,
    private readonly metrics: AuditLogMetrics,
    private readonly logger: Logger,
  ) {}

  static async open(options: AuditLogOptions): Promise<AuditLog> {
    const { dir } = options;
    const maxSegmentBytes = options.maxSegmentBytes ?? DEFAULT_MAX_SEGMENT_BYTES;
    if (!Number.isSafeInteger(maxSegmentBytes) || maxSegmentBytes < MAX_ENTRY_BYTES) {
      throw new RangeError(`maxSegmentBytes must be at least ${MAX_ENTRY_BYTES}`);
    }
    await mkdir(join(dir, SEGMENTS_DIR), { recursive: true, mode: 0o700 });
    const key = await loadOrCreateNodeKey(dir);
    const tree = await MerkleTreeStore.open(join(dir, TREE_DIR));
    const log = new AuditLog(
      dir,
      key,
      tree,
      maxSegmentBytes,
      options.clock ?? Date.now,
      auditLogMetrics(options.registry ?? new Registry()),
      (options.logger ?? pino({ level: 'silent' })).child({ component: 'audit-log' }),
    );
    try {
      await log.load();
    } catch (error) {
      await log.closeFiles();
      throw error;
    }
    return log;
  }

  private async load(): Promise<void> {
    const segments = await this.listSegments();
    const cachedLeaves = this.tree.size;
    const cache = this.tree.leaves();
    let index = 0;
    let lastPath = join(this.dir, SEGMENTS_DIR, segmentName(0));
    let lastBytes = 0;
    for (const [i, { first, path }] of segments.entries()) {
      if (first !== index) throw new AuditLogCorruptError(`segment ${path} starts at entry ${first}, expected ${index}: entries are missing`);
      lastPath = path;
      lastBytes = 0;
      for await (const line of readFileLines(path, MAX_ENTRY_BYTES)) {
        if (!line.terminated) {
          if (i !== segments.length - 1) throw new AuditLogCorruptError(`${path}: unterminated line inside the log`);
          // A write torn by a crash was never acknowledged to its caller; drop it.
          this.logger.warn({ path, offset: line.offset }, 'dropping a torn last entry');
          const handle = await open(path, 'r+');
          await handle.truncate(line.offset);
          await handle.sync();
          await handle.close();
          break;
        }
        const entry = decodeEntry(line.bytes);
        if (typeof entry === 'string') throw new AuditLogCorruptError(`${path} at byte ${line.offset}: ${entry}`);
        if (entry.index !== index) throw new AuditLogCorruptError(`${path}: entry ${index} carries index ${entry.index}`);
        const hash = leafHash(line.bytes);
        if (index < cachedLeaves) {
          const cached = (await cache.next()).value as Buffer;
          if (!cached.equals(hash)) throw new AuditLogCorruptError(`entry ${index} differs from the tree it was appended to`);
        } else {
          await this.tree.append(hash);
        }
        index += 1;
        lastBytes = line.offset + line.bytes.length + 1;
      }
    }
    await cache.return(undefined);
    for (const { path } of segments.slice(0, -1)) {
      const state = await storedFileState(path);
      if (state) this.sealed.set(path, state);
    }
    if (cachedLeaves > index) throw new AuditLogCorruptError(`the tree holds ${cachedLeaves} entries, the segments only ${index}`);
    await this.loadLastHead();
    const handle = await open(lastPath, 'a', 0o640);
    this.segment = { handle, path: lastPath, bytes: lastBytes };
    this.metrics.treeSize.set(this.tree.size);
    this.logger.info({ treeSize: this.tree.size, segments: segments.length, key: this.key.fingerprint }, 'audit log open');
  }

  private async listSegments(): Promise<{ first: number; path: string }[]> {
    const segments: { first: number; path: string }[] = [];
    for (const name of await readdir(join(this.dir, SEGMENTS_DIR))) {
      const first = segmentFirstIndex(name);
      if (first === undefined) continue;
      segments.push({ first, path: join(this.dir, SEGMENTS_DIR, name) });
    }
    return segments.sort((a, b) => a.first - b.first);
  }

  private async loadLastHead(): Promise<void> {
    const path = join(this.dir, HEADS_FILE);
    let last: SignedTreeHead | undefined;
    try {
      for await (const line of readFileLines(path, MAX_HEAD_LINE_BYTES)) {
        if (!line.terminated) break;
        const head = decodeStoredHead(line.bytes);
        if (typeof head === 'string') throw new AuditLogCorruptError(`${path} at byte ${line.offset}: ${head}`);
        last = head;
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (last) {
      if (!verifyTreeHeadSignature(last, this.key.publicKey)) throw new AuditLogCorruptError('the last stored head is not signed by the node key');
      if (last.treeSize > this.tree.size) {
        throw new AuditLogCorruptError(`the last stored head covers ${last.treeSize} entries, the log holds ${this.tree.size}`);
      }
      if (!(await this.tree.rootAt(last.treeSize)).equals(last.rootHash)) {
        throw new AuditLogCorruptError(`the entries do not give the root of the stored head of size ${last.treeSize}`);
      }
    }
    this.lastStoredHead = last;
  }

  /** Runs operations one at a time; after a failed write the log refuses further work until reopened. */
  private serial<T>(operation: () => Promise<T>): Promise<T> {
    const run = async () => {
      if (this.failure) throw new Error(`audit log unusable after an earlier failure: ${this.failure.message}`);
      return operation();
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  get size(): number {
    return this.tree.size;
  }

  /** The raw Ed25519 public key the agent sends in its Hello. */
  get publicKey(): Buffer {
    return Buffer.from(this.key.publicKey);
  }

  get keyFingerprint(): string {
    return this.key.fingerprint;
  }

  record(event: AuditEvent): Promise<void> {
    const problem = auditEventProblem(event);
    if (problem) return Promise.reject(new RangeError(`audit event refused: ${problem}`));
    return this.serial(async () => {
      const stop = this.metrics.appendDuration.startTimer();
      try {
        await this.append(event);
        this.metrics.entries.inc({ type: event.type });
        this.metrics.treeSize.set(this.tree.size);
      } catch (error) {
        this.metrics.appendErrors.inc();
        this.failure = error as Error;
        this.logger.error({ err: error, type: event.type }, 'audit append failed');
        throw error;
      } finally {
        stop();
      }
    });
  }

  private async append(event: AuditEvent): Promise<void> {
    const entry: AuditEntry = {
      index: this.tree.size,
      time: new Date(this.clock()).toISOString(),
      type: event.type,
      ...(event.subject === undefined ? {} : { subject: event.subject }),
      data: event.data,
    };
    const bytes = encodeEntry(entry);
    if (bytes.length > MAX_ENTRY_BYTES) throw new RangeError(`audit entry of ${bytes.length} bytes exceeds ${MAX_ENTRY_BYTES}`);
    const line = Buffer.concat([bytes, Buffer.from('\n')]);
    if (this.segment.bytes > 0 && this.segment.bytes + line.length > this.maxSegmentBytes) await this.rotate();
    await this.segment.handle.write(line);
    await this.segment.handle.datasync();
    this.segment.bytes += line.length;
    await this.tree.append(leafHash(bytes));
  }

  /** Closes the current segment read-only and starts the next one at the current tree size. */
  private async rotate(): Promise<void> {
    const closed = this.segment;
    await closed.handle.sync();
    await closed.handle.close();
    await chmod(closed.path, 0o440);
    const state = await storedFileState(closed.path);
    if (state) this.sealed.set(closed.path, state);
    const path = join(this.dir, SEGMENTS_DIR, segmentName(this.tree.size));
    const handle = await open(path, 'wx', 0o640);
    this.segment = { handle, path, bytes: 0 };
    await fsyncPath(join(this.dir, SEGMENTS_DIR));
    this.logger.info({ closed: closed.path, next: path }, 'audit segment rotated');
  }

  /** Signs a head for the current tree; heads of a new size are stored (fsynced) in heads.jsonl. */
  signTreeHead(): Promise<SignedTreeHead> {
    return this.serial(() => this.signCurrentHead());
  }

  private async signCurrentHead(): Promise<SignedTreeHead> {
    const head = { treeSize: this.tree.size, rootHash: this.tree.root(), timestampUnixMillis: this.clock() };
    const signed: SignedTreeHead = { ...head, signature: sign(null, treeHeadSigningInput(head), this.key.privateKey) };
    if (signed.treeSize > 0 && signed.treeSize !== this.lastStoredHead?.treeSize) {
      const handle = await open(join(this.dir, HEADS_FILE), 'a', 0o640);
      try {
        await handle.write(Buffer.concat([encodeStoredHead(signed), Buffer.from('\n')]));
        await handle.datasync();
      } finally {
        await handle.close();
      }
      this.lastStoredHead = signed;
    }
    this.metrics.signedHeads.inc();
    this.metrics.lastSignedHead.set(signed.timestampUnixMillis / 1000);
    return signed;
  }

  /** The latest stored head, if any. */
  get latestStoredHead(): SignedTreeHead | undefined {
    return this.lastStoredHead;
  }

  /** Whether entries were appended since the last stored head. */
  get grewSinceStoredHead(): boolean {
    return this.tree.size !== (this.lastStoredHead?.treeSize ?? 0);
  }

  /**
   * What changed in the segment files behind the log's back: a sealed segment changed or gone, a
   * segment the log did not write, the open segment longer or shorter than what it appended. Cheap
   * (a stat per segment); the entries themselves are re-read only when the log is opened.
   */
  checkSegments(): Promise<string[]> {
    return this.serial(async () => {
      const changes: string[] = [];
      const present = new Set((await this.listSegments()).map((s) => s.path));
      for (const [path, recorded] of this.sealed) {
        const now = await storedFileState(path);
        if (!now) changes.push(`sealed segment ${basename(path)} is gone`);
        else if (!sameStoredState(recorded, now)) changes.push(`sealed segment ${basename(path)} changed`);
        present.delete(path);
      }
      present.delete(this.segment.path);
      for (const path of present) changes.push(`segment ${basename(path)} was not written by the log`);
      const active = await storedFileState(this.segment.path);
      if (!active) changes.push(`the open segment ${basename(this.segment.path)} is gone`);
      else if (active.size !== this.segment.bytes) changes.push(`the open segment holds ${active.size} bytes, the log wrote ${this.segment.bytes}`);
      return changes;
    });
  }

  /** RFC 6962 audit path of entry `index` in the tree of `treeSize` (default: the current tree). */
  inclusionProof(index: number, treeSize?: number): Promise<Buffer[]> {
    return this.serial(async () => {
      const size = treeSize ?? this.tree.size;
      if (size > this.tree.size) throw new RangeError(`tree size ${size} is beyond the log's ${this.tree.size}`);
      const hashes: Buffer[] = [];
      for (const range of inclusionProofRanges(index, size)) hashes.push(await this.tree.rangeHash(range));
      return hashes;
    });
  }

  /** A freshly signed head of the current tree and the proof that the tree of `fromSize` is its prefix. */
  proveConsistency(fromSize: number): Promise<ConsistencyProof> {
    return this.serial(async () => {
      if (!Number.isSafeInteger(fromSize) || fromSize < 0 || fromSize > this.tree.size) {
        throw new RangeError(`cannot prove consistency from size ${fromSize}: the log holds ${this.tree.size} entries`);
      }
      const toHead = await this.signCurrentHead();
      const hashes: Buffer[] = [];
      for (const range of consistencyProofRanges(fromSize, toHead.treeSize)) hashes.push(await this.tree.rangeHash(range));
      return { fromSize, toHead, hashes };
    });
  }

  /** The root of the tree of the first `treeSize` entries. */
  rootAt(treeSize: number): Promise<Buffer> {
    return this.serial(() => this.tree.rootAt(treeSize));
  }

  /** Closes the files once queued work is done, also after a failure. */
  close(): Promise<void> {
    const closing = this.queue.then(() => this.closeFiles());
    this.queue = closing.catch(() => undefined);
    return closing;
  }

  private async closeFiles(): Promise<void> {
    await this.segment?.handle.close();
    await this.tree.close();
  }
}
