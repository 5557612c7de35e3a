// Offline verification of a node's audit log directory (secai-audit verify): recomputes the Merkle
// tree from the entries alone (the tree cache is not trusted), checks every stored signed head
// against that tree and the node's public key, and optionally checks a head the auditor kept
// outside the node, with the same failure codes the operator uses.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MerkleFrontier, leafHash } from '../../../api/audit/merkle.js';
import {
  HeadTransitionFailure,
  keyFingerprint,
  verifiedHeadToJson,
  verifyTreeHeadSignature,
  type VerifiedHead,
  type VerifiedHeadJson,
} from '../../../api/audit/tree-head.js';
import type { SignedTreeHead } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import {
  HEADS_FILE,
  MAX_ENTRY_BYTES,
  MAX_HEAD_LINE_BYTES,
  SEGMENTS_DIR,
  decodeEntry,
  decodeStoredHead,
  readFileLines,
  segmentFirstIndex,
} from './log-files.js';
import { readNodePublicKey } from './node-key.js';

export const LogFailure = {
  /** node-key.pub is missing or unreadable: no head can be checked (the log may have been deleted). */
  KeyMissing: 'KeyMissing',
  /** A segment does not start where the previous one ended. */
  SegmentGap: 'SegmentGap',
  /** A line is not a valid canonical entry. */
  EntryMalformed: 'EntryMalformed',
  /** An entry carries another index than its position: deleted, inserted or reordered entries. */
  EntryOutOfOrder: 'EntryOutOfOrder',
  /** A stored head line cannot be parsed. */
  HeadMalformed: 'HeadMalformed',
  /** A stored head is not signed by the node key. */
  HeadSignature: 'HeadSignature',
  /** Stored heads go back to a smaller tree. */
  HeadOutOfOrder: 'HeadOutOfOrder',
  /** The entries do not give the root a stored head signed: entries were changed after signing. */
  HeadRootMismatch: 'HeadRootMismatch',
  /** A stored head covers more entries than the log holds: the log was truncated. */
  HeadBeyondLog: 'HeadBeyondLog',
  KeyChanged: HeadTransitionFailure.KeyChanged,
  TreeShrank: HeadTransitionFailure.TreeShrank,
  Fork: HeadTransitionFailure.Fork,
} as const;
export type LogFailure = (typeof LogFailure)[keyof typeof LogFailure];

/** At most this many failures are listed; `failureCount` has the total. */
const MAX_LISTED_FAILURES = 50;

export interface LogVerification {
  valid: boolean;
  dir: string;
  treeSize: number;
  /** Root of the recomputed tree over every entry (hex). */
  rootHash: string;
  keyFingerprint?: string;
  segments: number;
  headsChecked: number;
  /** When valid, the latest stored head: keep it outside the node and pass it as --head next time. */
  verifiedHead?: VerifiedHeadJson;
  /** Whether an external head was checked. */
  externalHeadChecked: boolean;
  /** A last line without a newline (a write in progress or torn by a crash) was left out. */
  unterminatedTail: boolean;
  failures: { code: LogFailure; message: string }[];
  failureCount: number;
}

export interface VerifyLogOptions {
  /** A head the auditor verified earlier and kept outside the node. */
  externalHead?: VerifiedHead;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** The stored heads in file order; a malformed line is reported and skipped. */
async function* storedHeads(path: string, fail: (code: LogFailure, message: string) => void): AsyncGenerator<SignedTreeHead> {
  try {
    for await (const line of readFileLines(path, MAX_HEAD_LINE_BYTES)) {
      if (!line.terminated) return;
      const head = decodeStoredHead(line.bytes);
      if (typeof head === 'string') fail(LogFailure.HeadMalformed, `${HEADS_FILE} at byte ${line.offset}: ${head}`);
      else yield head;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') fail(LogFailure.HeadMalformed, (error as Error).message);
  }
}

async function listSegments(dir: string): Promise<{ first: number; name: string }[]> {
  try {
    const names = await readdir(join(dir, SEGMENTS_DIR));
    return names
      .map((name) => ({ first: segmentFirstIndex(name), name }))
      .filter((s): s is { first: number; name: string } => s.first !== undefined)
      .sort((a, b) => a.first - b.first);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

export async function verifyLogDirectory(dir: string, options: VerifyLogOptions = {}): Promise<LogVerification> {
  const failures: LogVerification['failures'] = [];
  let failureCount = 0;
  const fail = (code: LogFailure, message: string) => {
    failureCount += 1;
    if (failures.length < MAX_LISTED_FAILURES) failures.push({ code, message });
  };

  const publicKey = await readNodePublicKey(dir).catch((error: Error) => {
    fail(LogFailure.KeyMissing, `no usable node public key: ${error.message}`);
    return undefined;
  });
  const fingerprint = publicKey && keyFingerprint(publicKey);

  // Heads are stored in the order the tree grew, so they are checked in one pass with the entries:
  // each when the recomputed tree reaches its size. Memory stays constant whatever the log's size.
  const heads = storedHeads(join(dir, HEADS_FILE), fail);
  let headCount = 0;
  let previousSize = 0;
  const nextHead = async (): Promise<SignedTreeHead | undefined> => {
    const { value: head } = await heads.next();
    if (!head) return undefined;
    headCount += 1;
    if (head.treeSize < previousSize) {
      fail(LogFailure.HeadOutOfOrder, `stored head ${headCount - 1} has size ${head.treeSize} after a head of size ${previousSize}`);
    }
    previousSize = Math.max(previousSize, head.treeSize);
    if (publicKey && !verifyTreeHeadSignature(head, publicKey)) {
      fail(LogFailure.HeadSignature, `stored head ${headCount - 1} (size ${head.treeSize}) is not signed by the node key ${fingerprint}`);
    }
    return head;
  };
  let pending = await nextHead();
  let headsChecked = 0;
  let lastGoodHead: SignedTreeHead | undefined;

  const external = options.externalHead;
  const frontier = new MerkleFrontier();
  const checkSize = async () => {
    const size = frontier.size;
    let root: Buffer | undefined;
    // A head out of order (smaller than the tree already passed) can no longer be compared: skip it.
    while (pending && pending.treeSize <= size) {
      if (pending.treeSize === size) {
        root ??= frontier.root();
        headsChecked += 1;
        if (!root.equals(pending.rootHash)) {
          fail(LogFailure.HeadRootMismatch, `entries 0..${size - 1} give root ${hex(root)}, the stored head signed ${hex(pending.rootHash)}`);
        } else if (!publicKey || verifyTreeHeadSignature(pending, publicKey)) {
          lastGoodHead = pending;
        }
      }
      pending = await nextHead();
    }
    if (external && external.treeSize === size) {
      root ??= frontier.root();
      if (!root.equals(external.rootHash)) {
        fail(LogFailure.Fork, `entries 0..${size - 1} give root ${hex(root)}, the kept head of that size has ${hex(external.rootHash)}`);
      }
    }
  };
  await checkSize();

  const segments = await listSegments(dir);
  let unterminatedTail = false;
  for (const [i, segment] of segments.entries()) {
    if (segment.first !== frontier.size) {
      fail(LogFailure.SegmentGap, `segment ${segment.name} starts at entry ${segment.first}, the previous segments end at ${frontier.size}`);
    }
    const path = join(dir, SEGMENTS_DIR, segment.name);
    try {
      for await (const line of readFileLines(path, MAX_ENTRY_BYTES)) {
        if (!line.terminated) {
          if (i === segments.length - 1) unterminatedTail = true;
          else fail(LogFailure.EntryMalformed, `${segment.name}: unterminated line at byte ${line.offset} inside the log`);
          break;
        }
        const entry = decodeEntry(line.bytes);
        if (typeof entry === 'string') fail(LogFailure.EntryMalformed, `${segment.name} at byte ${line.offset}: ${entry}`);
        else if (entry.index !== frontier.size) {
          fail(LogFailure.EntryOutOfOrder, `entry at position ${frontier.size} carries index ${entry.index}`);
        }
        frontier.append(leafHash(line.bytes));
        await checkSize();
      }
    } catch (error) {
      fail(LogFailure.EntryMalformed, (error as Error).message);
    }
  }

  for (; pending; pending = await nextHead()) {
    fail(LogFailure.HeadBeyondLog, `a stored head covers ${pending.treeSize} entries, the log holds ${frontier.size}: entries were removed`);
  }
  if (external) {
    if (fingerprint && fingerprint !== external.keyFingerprint) {
      fail(LogFailure.KeyChanged, `node key ${fingerprint} is not the kept head's key ${external.keyFingerprint}`);
    }
    if (external.treeSize > frontier.size) {
      fail(LogFailure.TreeShrank, `the kept head covers ${external.treeSize} entries, the log holds ${frontier.size}`);
    }
  }

  return {
    valid: failureCount === 0,
    dir,
    treeSize: frontier.size,
    rootHash: hex(frontier.root()),
    ...(fingerprint ? { keyFingerprint: fingerprint } : {}),
    segments: segments.length,
    headsChecked,
    ...(failureCount === 0 && lastGoodHead && fingerprint
      ? { verifiedHead: verifiedHeadToJson({ treeSize: lastGoodHead.treeSize, rootHash: lastGoodHead.rootHash, keyFingerprint: fingerprint }) }
      : {}),
    externalHeadChecked: external !== undefined,
    unterminatedTail,
    failures,
    failureCount,
  };
}
