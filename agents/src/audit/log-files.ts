// The on-disk layout of a node's audit log and the encoding of its entries and stored heads. Both
// the log (agent) and the offline verifier (secai-audit) read through this file.
//
// <dir>/node-key.pem          Ed25519 private key, PKCS#8 PEM, mode 0600, created once
// <dir>/node-key.pub          the raw 32-byte public key in hex, for auditors
// <dir>/segments/<first>.jsonl entries, one canonical JSON object per line; <first> is the index of
//                             the segment's first entry (16 digits); closed segments are 0440
// <dir>/tree/level-<h>.bin    hashes of the aligned perfect subtrees of height h, 32 bytes each: a
//                             cache derived from the entries, so proofs need O(log n) reads
// <dir>/heads.jsonl           every signed tree head the node stored, one canonical JSON per line
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { canonicalJson } from '../../../api/canonical-json.js';
import type { SignedTreeHead } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { AUDIT_EVENT_TYPES, type AuditEvent, type AuditEventType, type AuditValue } from './audit-sink.js';

export const KEY_FILE = 'node-key.pem';
export const PUBLIC_KEY_FILE = 'node-key.pub';
export const SEGMENTS_DIR = 'segments';
export const TREE_DIR = 'tree';
export const HEADS_FILE = 'heads.jsonl';

/** Largest entry line accepted when reading; the writer's own limits keep entries far below it. */
export const MAX_ENTRY_BYTES = 64 * 1024;
export const MAX_HEAD_LINE_BYTES = 1024;
const MAX_SUBJECT_CHARS = 512;
const MAX_DATA_KEYS = 64;
const MAX_KEY_CHARS = 64;
const MAX_STRING_CHARS = 2048;

const SEGMENT_NAME = /^(\d{16})\.jsonl$/;

export function segmentName(firstIndex: number): string {
  return `${String(firstIndex).padStart(16, '0')}.jsonl`;
}

/** The first entry index a segment file name declares, or undefined for a name that is not a segment. */
export function segmentFirstIndex(name: string): number | undefined {
  const match = SEGMENT_NAME.exec(name);
  if (!match) return undefined;
  const first = Number(match[1]);
  return Number.isSafeInteger(first) ? first : undefined;
}

export function levelFileName(height: number): string {
  return `level-${String(height).padStart(2, '0')}.bin`;
}

/** One line of the log. `index` binds each entry to its position, so a reader names a gap or a swap. */
export interface AuditEntry {
  index: number;
  /** RFC 3339 UTC, milliseconds. */
  time: string;
  type: AuditEventType;
  subject?: string;
  data: Record<string, AuditValue>;
}

const EVENT_TYPES: ReadonlySet<string> = new Set(AUDIT_EVENT_TYPES);

/** Why an event cannot be logged, or undefined: every field has a bound. */
export function auditEventProblem(event: AuditEvent): string | undefined {
  if (!EVENT_TYPES.has(event.type)) return `unknown audit event type ${JSON.stringify(String(event.type).slice(0, 64))}`;
  if (event.subject !== undefined && (typeof event.subject !== 'string' || event.subject.length > MAX_SUBJECT_CHARS)) {
    return `subject must be a string of at most ${MAX_SUBJECT_CHARS} characters`;
  }
  if (event.data === null || typeof event.data !== 'object' || Array.isArray(event.data)) return 'data must be an object';
  const entries = Object.entries(event.data);
  if (entries.length > MAX_DATA_KEYS) return `data has ${entries.length} keys, at most ${MAX_DATA_KEYS} allowed`;
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > MAX_KEY_CHARS) return `data key ${JSON.stringify(key.slice(0, 80))} is empty or too long`;
    if (value === null || typeof value === 'boolean') continue;
    if (typeof value === 'number' && Number.isFinite(value)) continue;
    if (typeof value === 'string' && value.length <= MAX_STRING_CHARS) continue;
    return `data.${key} must be a finite number, a boolean, null or a string of at most ${MAX_STRING_CHARS} characters`;
  }
  return undefined;
}

/** The bytes of one entry: its canonical JSON (the leaf input of the Merkle tree), without the newline. */
export function encodeEntry(entry: AuditEntry): Buffer {
  return Buffer.from(canonicalJson(entry), 'utf8');
}

/** Decodes a stored entry line; the line must be canonical, so that one entry has exactly one encoding. */
export function decodeEntry(line: Buffer): AuditEntry | string {
  if (line.length > MAX_ENTRY_BYTES) return `entry of ${line.length} bytes exceeds ${MAX_ENTRY_BYTES}`;
  let value: unknown;
  try {
    value = JSON.parse(line.toString('utf8'));
  } catch {
    return 'entry is not JSON';
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'entry is not a JSON object';
  const { index, time, type, subject, data, ...rest } = value as Record<string, unknown>;
  if (Object.keys(rest).length > 0) return `entry has unknown fields ${Object.keys(rest).slice(0, 5).join(', ')}`;
  if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) return 'entry index is not a non-negative integer';
  if (typeof time !== 'string' || time.length > 40) return 'entry time is not a timestamp';
  const event = { type, subject, data } as AuditEvent;
  const problem = auditEventProblem(event);
  if (problem) return problem;
  const entry: AuditEntry = { index, time, type: event.type, ...(subject === undefined ? {} : { subject: event.subject }), data: event.data };
  if (!encodeEntry(entry).equals(line)) return 'entry is not in canonical JSON';
  return entry;
}

interface StoredHeadJson {
  treeSize: number;
  rootHash: string;
  timestampUnixMillis: number;
  signature: string;
}

export function encodeStoredHead(head: SignedTreeHead): Buffer {
  const json: StoredHeadJson = {
    treeSize: head.treeSize,
    rootHash: head.rootHash.toString('hex'),
    timestampUnixMillis: head.timestampUnixMillis,
    signature: head.signature.toString('hex'),
  };
  return Buffer.from(canonicalJson(json), 'utf8');
}

const HEX = /^(?:[0-9a-f]{2})*$/;

export function decodeStoredHead(line: Buffer): SignedTreeHead | string {
  if (line.length > MAX_HEAD_LINE_BYTES) return `head line of ${line.length} bytes exceeds ${MAX_HEAD_LINE_BYTES}`;
  let value: unknown;
  try {
    value = JSON.parse(line.toString('utf8'));
  } catch {
    return 'head is not JSON';
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'head is not a JSON object';
  const { treeSize, rootHash, timestampUnixMillis, signature } = value as Record<string, unknown>;
  if (typeof treeSize !== 'number' || !Number.isSafeInteger(treeSize) || treeSize < 0) return 'head treeSize is not a non-negative integer';
  if (typeof timestampUnixMillis !== 'number' || !Number.isSafeInteger(timestampUnixMillis)) return 'head timestamp is not an integer';
  if (typeof rootHash !== 'string' || rootHash.length !== 64 || !HEX.test(rootHash)) return 'head rootHash is not 32 bytes of hex';
  if (typeof signature !== 'string' || signature.length !== 128 || !HEX.test(signature)) return 'head signature is not 64 bytes of hex';
  return { treeSize, rootHash: Buffer.from(rootHash, 'hex'), timestampUnixMillis, signature: Buffer.from(signature, 'hex') };
}

export interface FileLine {
  /** The line without its newline. */
  bytes: Buffer;
  /** Byte offset of the line's start in the file. */
  offset: number;
  /** False only for a last line without a newline: a write torn by a crash, or an appended fragment. */
  terminated: boolean;
}

/** Reads a file line by line in bounded chunks; a line longer than maxLineBytes throws. */
export async function* readFileLines(path: string, maxLineBytes: number): AsyncGenerator<FileLine> {
  const handle: FileHandle = await open(path, 'r');
  try {
    const chunk = Buffer.alloc(256 * 1024);
    let pending = Buffer.alloc(0);
    let pendingOffset = 0;
    let position = 0;
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      let data = Buffer.concat([pending, chunk.subarray(0, bytesRead)]);
      let start = 0;
      for (let nl = data.indexOf(0x0a, start); nl >= 0; nl = data.indexOf(0x0a, start)) {
        if (nl - start > maxLineBytes) throw new Error(`${path}: line at byte ${pendingOffset + start} exceeds ${maxLineBytes} bytes`);
        yield { bytes: Buffer.from(data.subarray(start, nl)), offset: pendingOffset + start, terminated: true };
        start = nl + 1;
      }
      data = data.subarray(start);
      if (data.length > maxLineBytes) throw new Error(`${path}: line at byte ${pendingOffset + start} exceeds ${maxLineBytes} bytes`);
      pendingOffset += start;
      pending = Buffer.from(data);
    }
    if (pending.length > 0) yield { bytes: pending, offset: pendingOffset, terminated: false };
  } finally {
    await handle.close();
  }
}
