// Byte-pattern rules over every byte of the file (SecAI OS YARA rules SecAI_Shell_Dropper_Command,
// SecAI_Python_Reverse_Shell, SecAI_Embedded_Private_Key, SecAI_Encoded_Powershell). YARA's
// "string A and string B anywhere in the file" does not scale to multi-GB weights: a four-byte
// string like "curl" occurs by chance about once per 4 GiB of random bytes, so two of them
// anywhere in a 14 GB file is likely. Each rule here is therefore an anchor string plus a
// confirmation over a bounded window around it — what a payload a loader could extract and run
// actually looks like.
//
// Matching is streamed: chunks arrive in file order; matches that span a chunk boundary and
// confirmation windows that reach into the next chunk are resolved when it arrives.
import { wasm, type WasmMemory } from './wasm.js';
import { createPrefilter, PREFILTER_OVERREAD, type Prefilter, type PrefilterNeedle } from './pattern-prefilter.js';
import { Reason, type ReasonCode } from './verdict.js';

export interface PatternAnchor {
  text: string;
  caseInsensitive: boolean;
  /** Bytes before and after the anchor's first byte that the confirmation may see. */
  before: number;
  after: number;
  /**
   * Where the confirming patterns are matched (as latin1 text): the whole window, the window from
   * the anchor's first byte, or from just after the anchor.
   */
  scope: 'window' | 'from-anchor' | 'after-anchor';
  /** All must match for the rule to match. */
  requireAll: RegExp[];
}

export interface BytePatternRule {
  name: string;
  reason: ReasonCode;
  anchors: PatternAnchor[];
}

const SHELLS = '(?:ba|z|da|k)?sh';
const dropperPipe = new RegExp(`(?:\\|\\s*(?:sudo\\s+)?${SHELLS}\\b|\\b${SHELLS}\\s+-c\\b)`);
const privateKeyBlock = /^-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----/;
// -e, -ec, -en ... -encodedcommand; PowerShell also takes "/" and the en/em dash (UTF-8 seen as latin1).
const encodedFlag = /^(?:\.exe)?["']?[^\n]{0,160}?(?:\s|^)(?:-|\/|\xe2\x80[\x93\x94])e(?:c|n(?:c(?:o(?:d(?:e(?:d(?:c(?:o(?:m(?:m(?:a(?:n(?:d)?)?)?)?)?)?)?)?)?)?)?)?)?\s+["']?[A-Za-z0-9+/]{16,}/i;
const bashDevTcp = /^\/dev\/tcp\/[A-Za-z0-9.:-]{1,255}\/\d{1,5}/;

export const BYTE_PATTERN_RULES: readonly BytePatternRule[] = [
  {
    name: 'shell-dropper',
    reason: Reason.ShellDropper,
    // `curl ... | sh`, `wget -O- ... | bash`, or `sh -c "$(curl ...)"`.
    anchors: ['curl', 'wget'].map((text) => ({ text, caseInsensitive: false, before: 256, after: 512, scope: 'window' as const, requireAll: [dropperPipe] })),
  },
  {
    name: 'reverse-shell',
    reason: Reason.ReverseShell,
    anchors: [
      {
        // The Python reverse shell duplicates a socket onto stdin/stdout and starts a shell.
        text: 'os.dup2',
        caseInsensitive: false,
        before: 2048,
        after: 2048,
        scope: 'window',
        requireAll: [/socket/, /\/bin\/(?:ba)?sh|subprocess|pty\.spawn/],
      },
      {
        text: '/dev/tcp/',
        caseInsensitive: false,
        before: 0,
        after: 300,
        scope: 'from-anchor',
        requireAll: [bashDevTcp],
      },
    ],
  },
  {
    name: 'private-key',
    reason: Reason.PrivateKey,
    anchors: [
      {
        text: '-----BEGIN ',
        caseInsensitive: false,
        before: 0,
        after: 64,
        scope: 'from-anchor',
        requireAll: [privateKeyBlock],
      },
    ],
  },
  {
    name: 'encoded-powershell',
    reason: Reason.EncodedPowerShell,
    anchors: ['powershell', 'pwsh'].map((text) => ({ text, caseInsensitive: true, before: 0, after: 256, scope: 'after-anchor' as const, requireAll: [encodedFlag] })),
  },
];

export interface PatternMatch {
  rule: string;
  reason: ReasonCode;
  /** File offset of the anchor. */
  offset: number;
}

interface Anchor extends PatternAnchor {
  rule: BytePatternRule;
  bytes: Uint8Array;
}

interface Pending {
  anchor: Anchor;
  position: number;
}

/** Stops recording after this many matches: one is enough to reject, a few help a human. */
const MAX_MATCHES = 16;

export class StreamingPatternMatcher {
  readonly matches: PatternMatch[] = [];
  private readonly anchors: Anchor[];
  private readonly prefilter: Prefilter;
  private readonly heap: Uint8Array;
  private readonly longestAnchor: number;
  private readonly historyBytes: number;
  /** The last historyBytes bytes of the stream before the current chunk. */
  private history = new Uint8Array(0);
  private historyStart = 0;
  private streamEnd = 0;
  private pending: Pending[] = [];

  /**
   * `memory` holds the chunks to scan; `scratch` is a range of it (at least 64 KiB) reserved
   * for the prefilter. Chunks passed to push() need PREFILTER_OVERREAD readable bytes after them.
   */
  constructor(memory: WasmMemory, shared: boolean, scratch: { offset: number; bytes: number }, rules: readonly BytePatternRule[] = BYTE_PATTERN_RULES) {
    this.anchors = rules.flatMap((rule) => rule.anchors.map((a) => ({ ...a, rule, bytes: Buffer.from(a.text, 'latin1') })));
    if (this.anchors.length > 8) throw new Error('at most 8 anchors (prefilter buckets)');
    const needles: PrefilterNeedle[] = this.anchors.map((a, bucket) => ({ bytes: a.bytes, caseInsensitive: a.caseInsensitive, bucket }));
    this.prefilter = createPrefilter(memory, shared, needles, scratch);
    this.heap = new Uint8Array(memory.buffer);
    this.longestAnchor = Math.max(...this.anchors.map((a) => a.bytes.length));
    this.historyBytes = Math.max(...this.anchors.map((a) => a.before + a.after)) + this.longestAnchor;
  }

  /** Scans heap[offset, offset + length), which holds the file bytes at filePosition. */
  push(offset: number, length: number, filePosition: number): void {
    if (filePosition !== this.streamEnd) throw new Error(`pattern stream expected offset ${this.streamEnd}, got ${filePosition}`);
    const chunk = this.heap.subarray(offset, offset + length);
    this.scanJunction(chunk, filePosition);
    this.streamEnd = filePosition + length;
    this.resolvePending(chunk, filePosition, false);
    this.prefilter.scan(offset, offset + length, (at, buckets) => {
      for (let b = 0; b < this.anchors.length; b++) {
        if ((buckets & (1 << b)) === 0) continue;
        const anchor = this.anchors[b]!;
        const local = at - offset;
        if (local + anchor.bytes.length > length) continue; // crosses into the next chunk: the junction scan sees it
        if (anchorAt(chunk, local, anchor)) this.found(anchor, filePosition + local, chunk, filePosition);
      }
    });
    this.remember(chunk, filePosition);
  }

  /** Confirms what is still waiting for bytes past the end of the file. */
  finish(): PatternMatch[] {
    this.resolvePending(new Uint8Array(0), this.streamEnd, true);
    return this.matches;
  }

  /** Anchors that start in the previous chunk's last bytes and end in this one. */
  private scanJunction(chunk: Uint8Array, filePosition: number): void {
    const tailLength = Math.min(this.longestAnchor - 1, this.history.length);
    if (tailLength === 0) return;
    const junction = new Uint8Array(tailLength + Math.min(this.longestAnchor - 1, chunk.length));
    junction.set(this.history.subarray(this.history.length - tailLength));
    junction.set(chunk.subarray(0, junction.length - tailLength), tailLength);
    for (let i = 0; i < tailLength; i++) {
      for (const anchor of this.anchors) {
        if (i + anchor.bytes.length <= tailLength || i + anchor.bytes.length > junction.length) continue;
        if (anchorAt(junction, i, anchor)) this.found(anchor, filePosition - tailLength + i, chunk, filePosition);
      }
    }
  }

  private found(anchor: Anchor, position: number, chunk: Uint8Array, chunkPosition: number): void {
    if (this.matches.length >= MAX_MATCHES) return;
    if (position + anchor.after > chunkPosition + chunk.length) {
      this.pending.push({ anchor, position });
      return;
    }
    this.confirm(anchor, position, chunk, chunkPosition);
  }

  private resolvePending(chunk: Uint8Array, chunkPosition: number, atEnd: boolean): void {
    const waiting = this.pending;
    this.pending = [];
    for (const p of waiting) {
      if (!atEnd && p.position + p.anchor.after > chunkPosition + chunk.length) this.pending.push(p);
      else this.confirm(p.anchor, p.position, chunk, chunkPosition);
    }
  }

  /** Builds the window from the history and the current chunk, then asks the rule. */
  private confirm(anchor: Anchor, position: number, chunk: Uint8Array, chunkPosition: number): void {
    if (this.matches.length >= MAX_MATCHES) return;
    const from = Math.max(position - anchor.before, this.historyStart, 0);
    const to = Math.min(position + anchor.after, chunkPosition + chunk.length);
    let window = '';
    if (from < chunkPosition) window += latin1(this.history.subarray(from - this.historyStart, Math.min(to, chunkPosition) - this.historyStart));
    if (to > chunkPosition) window += latin1(chunk.subarray(Math.max(from, chunkPosition) - chunkPosition, to - chunkPosition));
    const at = position - from;
    const text = anchor.scope === 'window' ? window : window.slice(anchor.scope === 'from-anchor' ? at : at + anchor.bytes.length);
    if (anchor.requireAll.every((pattern) => pattern.test(text))) this.matches.push({ rule: anchor.rule.name, reason: anchor.rule.reason, offset: position });
  }

  private remember(chunk: Uint8Array, chunkPosition: number): void {
    if (chunk.length >= this.historyBytes) {
      this.history = chunk.slice(chunk.length - this.historyBytes);
    } else {
      const joined = new Uint8Array(Math.min(this.historyBytes, this.history.length + chunk.length));
      const keep = joined.length - chunk.length;
      joined.set(this.history.subarray(this.history.length - keep));
      joined.set(chunk, keep);
      this.history = joined;
    }
    this.historyStart = chunkPosition + chunk.length - this.history.length;
  }
}

function anchorAt(bytes: Uint8Array, at: number, anchor: Anchor): boolean {
  const needle = anchor.bytes;
  for (let k = 0; k < needle.length; k++) {
    const b = bytes[at + k]!;
    const n = needle[k]!;
    if (b === n) continue;
    if (anchor.caseInsensitive && (b | 0x20) === (n | 0x20) && (n | 0x20) >= 0x61 && (n | 0x20) <= 0x7a) continue;
    return false;
  }
  return true;
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/** Scratch bytes the prefilter needs inside the memory. */
export const PATTERN_SCRATCH_BYTES = 256 * 1024;

/** Scans one in-memory buffer with the rules: for tests, the corpus and small inputs. */
export function scanBytePatterns(bytes: Uint8Array, rules: readonly BytePatternRule[] = BYTE_PATTERN_RULES, chunkBytes = 1 << 20): PatternMatch[] {
  const slot = Math.min(chunkBytes, Math.max(bytes.length, 1));
  const pages = Math.ceil((slot + PREFILTER_OVERREAD + PATTERN_SCRATCH_BYTES) / 65536);
  const memory = new wasm.Memory({ initial: pages, maximum: pages });
  const matcher = new StreamingPatternMatcher(memory, false, { offset: slot + PREFILTER_OVERREAD, bytes: PATTERN_SCRATCH_BYTES }, rules);
  const heap = new Uint8Array(memory.buffer);
  for (let pos = 0; pos < bytes.length; pos += slot) {
    const piece = bytes.subarray(pos, pos + slot);
    heap.set(piece, 0);
    matcher.push(0, piece.length, pos);
  }
  return matcher.finish();
}
