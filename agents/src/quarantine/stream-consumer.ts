// Everything the one pass checks besides the whole-file SHA-256, fed the same chunks in file order:
// pickle prefixes, the GGUF header and tensor layout, chat templates, zero padding, weight
// statistics, entropy samples and the byte-pattern rules over every byte. It runs on the reader's
// thread while the SHA-256 stream has a thread of its own (one-pass-scan.ts).
import { StreamingPatternMatcher, type PatternMatch } from './byte-patterns.js';
import { findChatTemplateInjection, isChatTemplateKey, type ChatTemplateFinding } from './chat-template.js';
import { denseCodeRegions, EntropySampler, entropySampleRanges, type ByteRegion, type EntropySample } from './entropy.js';
import { checkTensorLayout, metadataStrings, parseGgufHeader, type GgufLimits, type GgufParse, type LayoutProblem } from './gguf-parser.js';
import type { ReasonCode } from './verdict.js';
import type { WasmMemory } from './wasm.js';
import { planWeightStats, WeightStatsSampler, type WeightStats } from './weight-stats.js';

/** Pickle opcodes a polyglot file starts with (SecAI OS format_gate): PROTO 2-5 and GLOBAL of os, posix, sys, builtins. */
const PICKLE_PREFIXES: readonly { name: string; bytes: Buffer }[] = [
  ...[2, 3, 4, 5].map((v) => ({ name: `pickle protocol ${v}`, bytes: Buffer.from([0x80, v]) })),
  ...['os', 'posix', 'sys', 'builtins'].map((m) => ({ name: `pickle GLOBAL ${m}`, bytes: Buffer.from(`c${m}\n`, 'latin1') })),
];

export function detectPickle(start: Uint8Array): string | undefined {
  const head = Buffer.from(start.buffer, start.byteOffset, Math.min(32, start.byteLength));
  return PICKLE_PREFIXES.find((p) => head.subarray(0, p.bytes.length).equals(p.bytes))?.name;
}

export type HeaderSummary =
  | { status: 'ok'; version: number; alignment: number; headerBytes: number; dataOffset: number; keyCount: number; tensorCount: number }
  | { status: 'invalid'; reason: ReasonCode; message: string; offset: number };

/** What the one pass found besides the digest. */
export interface StreamFindings {
  pickle?: string;
  header: HeaderSummary;
  layout?: LayoutProblem;
  /** File offset of the first non-zero padding byte. */
  paddingNotZeroAt?: number;
  chatTemplate?: ChatTemplateFinding;
  patterns: PatternMatch[];
  entropy: EntropySample[];
  weights: WeightStats[];
}

/** Byte ranges that must be zero: alignment padding before the data section and after each tensor. */
class ZeroRegions {
  firstNonZero: number | undefined;
  private index = 0;
  private readonly regions: readonly { start: number; end: number }[];

  constructor(regions: readonly { start: number; end: number }[]) {
    this.regions = regions;
  }

  push(chunk: Uint8Array, filePosition: number): void {
    const chunkEnd = filePosition + chunk.length;
    while (this.index < this.regions.length && this.firstNonZero === undefined) {
      const r = this.regions[this.index]!;
      if (r.start >= chunkEnd) return;
      const to = Math.min(r.end, chunkEnd);
      for (let p = Math.max(r.start, filePosition); p < to; p++) {
        if (chunk[p - filePosition] !== 0) {
          this.firstNonZero = p;
          return;
        }
      }
      if (r.end > chunkEnd) return;
      this.index++;
    }
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function summarize(parse: GgufParse): HeaderSummary {
  if (parse.status === 'ok') {
    const h = parse.header;
    return { status: 'ok', version: h.version, alignment: h.alignment, headerBytes: h.headerBytes, dataOffset: h.dataOffset, keyCount: h.metadata.length, tensorCount: h.tensors.length };
  }
  if (parse.status === 'invalid') return parse;
  throw new Error('header parse did not finish');
}

export interface StreamConsumerOptions {
  size: number;
  limits: GgufLimits;
  /** The largest chunk push() is given: the header buffer grows in steps of it. */
  chunkBytes: number;
}

export class StreamConsumer {
  private readonly heap: Uint8Array;
  private readonly patterns: StreamingPatternMatcher;
  /** Made once the header is known (which bytes are packed codes); until then `collected` keeps the bytes. */
  private entropy: EntropySampler | undefined;
  private readonly options: StreamConsumerOptions;
  private pickle: string | undefined;
  private parse: GgufParse = { status: 'incomplete', needBytes: 0 };
  private layout: LayoutProblem | undefined;
  private chatTemplate: ChatTemplateFinding | undefined;
  private zeros: ZeroRegions | undefined;
  private stats: WeightStatsSampler | undefined;
  /** Bytes from the start of the file until the header has parsed, then replayed to the layout checks. */
  private collected: Uint8Array;
  private collectedLength = 0;
  private nextParseAt = 0;

  /** `memory` holds the chunks; `scratch` is a range of it reserved for the pattern prefilter. */
  constructor(memory: WasmMemory, shared: boolean, scratch: { offset: number; bytes: number }, options: StreamConsumerOptions) {
    this.heap = new Uint8Array(memory.buffer);
    this.patterns = new StreamingPatternMatcher(memory, shared, scratch);
    this.options = options;
    this.collected = new Uint8Array(Math.min(options.size, options.chunkBytes));
  }

  /** heap[offset, offset + length) holds the file bytes at filePosition; chunks come in file order. */
  push(offset: number, length: number, filePosition: number): void {
    const view = this.heap.subarray(offset, offset + length);
    if (filePosition === 0) this.pickle = detectPickle(view);
    if (this.parse.status === 'incomplete') {
      this.collect(view, filePosition + length >= this.options.size);
    } else {
      this.entropy?.push(view, filePosition);
      this.zeros?.push(view, filePosition);
      this.stats?.push(view, filePosition);
    }
    this.patterns.push(offset, length, filePosition);
  }

  finish(): StreamFindings {
    if (this.parse.status === 'incomplete') this.collect(new Uint8Array(0), true);
    const findings: StreamFindings = {
      header: summarize(this.parse),
      patterns: this.patterns.finish(),
      entropy: this.entropy?.samples() ?? [],
      weights: this.stats?.results() ?? [],
    };
    if (this.pickle) findings.pickle = this.pickle;
    if (this.layout) findings.layout = this.layout;
    if (this.zeros?.firstNonZero !== undefined) findings.paddingNotZeroAt = this.zeros.firstNonZero;
    if (this.chatTemplate) findings.chatTemplate = this.chatTemplate;
    return findings;
  }

  private collect(view: Uint8Array, atEnd: boolean): void {
    const { size, limits, chunkBytes } = this.options;
    if (this.collectedLength + view.length > this.collected.length) {
      // The parser never asks for more than maxHeaderBytes, so neither does this buffer.
      const grown = new Uint8Array(Math.min(size, limits.maxHeaderBytes + chunkBytes, Math.max(this.collected.length * 2, this.collectedLength + view.length)));
      grown.set(this.collected.subarray(0, this.collectedLength));
      this.collected = grown;
    }
    this.collected.set(view, this.collectedLength);
    this.collectedLength += view.length;
    if (this.collectedLength < this.nextParseAt && !atEnd) return;
    this.parse = parseGgufHeader(this.collected.subarray(0, this.collectedLength), size, limits);
    if (this.parse.status === 'incomplete') {
      // Re-parsing from the start is cheap; growing the target by half bounds the attempts.
      this.nextParseAt = Math.max(this.parse.needBytes, Math.ceil(this.collectedLength * 1.5));
      return;
    }
    this.settleLayout();
  }

  private settleLayout(): void {
    const bytes = this.collected.subarray(0, this.collectedLength);
    const size = this.options.size;
    let dense: ByteRegion[] = [];
    if (this.parse.status === 'ok') {
      const h = this.parse.header;
      const templates = h.metadata.filter((kv) => isChatTemplateKey(kv.key)).flatMap((kv) => metadataStrings(bytes, kv).map((text) => ({ key: kv.key, text })));
      this.chatTemplate = findChatTemplateInjection(templates);
      this.layout = checkTensorLayout(h, size);
      if (!this.layout) {
        const padding = [{ start: h.headerBytes, end: h.dataOffset }];
        for (const t of h.tensors) {
          const end = h.dataOffset + t.offset + t.byteSize;
          padding.push({ start: end, end: Math.min(size, alignUp(end - h.dataOffset, h.alignment) + h.dataOffset) });
        }
        this.zeros = new ZeroRegions(padding.filter((r) => r.end > r.start));
        this.stats = new WeightStatsSampler(planWeightStats(h));
        this.zeros.push(bytes, 0);
        this.stats.push(bytes, 0);
        dense = denseCodeRegions(h);
      }
    }
    this.entropy = new EntropySampler(entropySampleRanges(size), dense);
    this.entropy.push(bytes, 0);
    this.collected = new Uint8Array(0);
  }
}
