// The one read pass over an untrusted artifact. Every byte is read from disk once, into a ring of
// reused 4 MiB buffers (FileHandle.read, one read in flight ahead), and each chunk feeds:
// - in this thread: the whole-file SHA-256, entropy samples, the GGUF header parse (the header is
//   collected until it parses), zero-padding checks and weight statistics;
// - in a worker thread (same memory, no copies): byte-pattern rules over every byte and a
//   SHA-256 per tensor for the manifest's hash tree.
// This runs inside the scanner sandbox; it trusts nothing it reads.
import { wasm, type WasmMemory } from './wasm.js';
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { PATTERN_SCRATCH_BYTES, type PatternMatch } from './byte-patterns.js';
import { findChatTemplateInjection, isChatTemplateKey, type ChatTemplateFinding } from './chat-template.js';
import { EntropySampler, entropySampleRanges, type EntropySample } from './entropy.js';
import { checkTensorLayout, DEFAULT_GGUF_LIMITS, metadataStrings, parseGgufHeader, type GgufHeader, type GgufLimits, type GgufParse, type LayoutProblem } from './gguf-parser.js';
import { tensorMerkleRoot } from './merkle.js';
import { PREFILTER_OVERREAD } from './pattern-prefilter.js';
import type { ScanWorkerData, ScanWorkerMessage } from './scan-worker.js';
import { StreamConsumer, type StreamResult, type TensorRange } from './stream-consumer.js';
import type { ReasonCode } from './verdict.js';
import { planWeightStats, WeightStatsSampler, type WeightStats } from './weight-stats.js';

export interface ScanOptions {
  limits?: GgufLimits;
  chunkBytes?: number;
  slots?: number;
  /** Smaller files are scanned without a worker thread (its start-up costs more than it saves). */
  workerThresholdBytes?: number;
}

const DEFAULTS = { chunkBytes: 4 * 1024 * 1024, slots: 8, workerThresholdBytes: 32 * 1024 * 1024 };
/** The reader needs a slot being read, one being processed and one for the replayed header. */
const MIN_SLOTS = 3;

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

export interface ScanReport {
  sizeBytes: number;
  sha256: string;
  durationMs: number;
  pickle?: string;
  header: HeaderSummary;
  layout?: LayoutProblem;
  /** File offset of the first non-zero padding byte. */
  paddingNotZeroAt?: number;
  chatTemplate?: ChatTemplateFinding;
  patterns: PatternMatch[];
  entropy: EntropySample[];
  weights: WeightStats[];
  /** Root of the per-tensor hash tree; absent when the structure is invalid. */
  tensorMerkleRoot?: string;
}

/** The file changed size or contents while it was read. */
export class ArtifactChangedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArtifactChangedError';
  }
}

/** Byte ranges that must be zero: alignment padding before the data section and after each tensor. */
class ZeroRegions {
  firstNonZero: number | undefined;
  private index = 0;

  constructor(private readonly regions: readonly { start: number; end: number }[]) {}

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

/** What the data-stream half (worker or in-thread) is asked to do. */
interface StreamSide {
  setLayout(ranges: TensorRange[]): void;
  /** Hands over a ring slot; release() is called when the slot may be reused. */
  push(slot: number, offset: number, length: number, position: number): void;
  finish(): Promise<StreamResult>;
  close(): Promise<void>;
}

function inThreadSide(memory: WasmMemory, scratch: { offset: number; bytes: number }, release: (slot: number) => void): StreamSide {
  const consumer = new StreamConsumer(memory, false, scratch);
  return {
    setLayout: (ranges) => consumer.setLayout(ranges),
    push: (slot, offset, length, position) => {
      consumer.push(offset, length, position);
      release(slot);
    },
    finish: async () => consumer.finish(),
    close: async () => undefined,
  };
}

async function workerSide(memory: WasmMemory, scratch: { offset: number; bytes: number }, release: (slot: number) => void, fail: (e: Error) => void): Promise<StreamSide> {
  // The worker loads TypeScript through tsx whatever loader the caller (jest, the sandbox) used.
  const tsx = createRequire(import.meta.url).resolve('tsx');
  const data: ScanWorkerData = { memory, scratch };
  // A small code range: every isolate reserves one, and the scanner's data limit counts it.
  const worker = new Worker(new URL('./scan-worker.ts', import.meta.url), {
    workerData: data,
    execArgv: ['--import', tsx],
    resourceLimits: { codeRangeSizeMb: 64, maxOldGenerationSizeMb: 256 },
  });
  let onResult: ((r: StreamResult) => void) | undefined;
  let failure: Error | undefined;
  let onFailure: ((e: Error) => void) | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    onFailure = reject;
    worker.on('message', (m: { kind: string; slot?: number; result?: StreamResult }) => {
      if (m.kind === 'ready') resolve();
      else if (m.kind === 'released') release(m.slot!);
      else if (m.kind === 'result') onResult?.(m.result!);
    });
  });
  // A dead worker never releases its slots: the reader must stop waiting for them.
  worker.on('error', (e) => {
    failure = e;
    onFailure?.(e);
    fail(e);
  });
  worker.on('exit', (code) => {
    if (code !== 0) {
      failure ??= new Error(`scan worker exited with code ${code}`);
      onFailure?.(failure);
      fail(failure);
    }
  });
  await ready;
  const post = (m: ScanWorkerMessage) => {
    if (failure) throw failure;
    worker.postMessage(m);
  };
  return {
    setLayout: (ranges) => post({ kind: 'layout', ranges }),
    push: (slot, offset, length, position) => post({ kind: 'chunk', slot, offset, length, position }),
    finish: () =>
      new Promise<StreamResult>((resolve, reject) => {
        onResult = resolve;
        onFailure = reject;
        post({ kind: 'finish' });
      }),
    close: async () => {
      await worker.terminate();
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

export async function scanArtifact(path: string, options: ScanOptions = {}): Promise<ScanReport> {
  const started = performance.now();
  const limits = options.limits ?? DEFAULT_GGUF_LIMITS;
  const chunkBytes = options.chunkBytes ?? DEFAULTS.chunkBytes;
  const slotCount = Math.max(MIN_SLOTS, options.slots ?? DEFAULTS.slots);
  const handle = await open(path, 'r');
  let side: StreamSide | undefined;
  try {
    const before = await handle.stat();
    if (!before.isFile()) throw new Error(`${path} is not a regular file`);
    const size = before.size;
    const useWorker = size >= (options.workerThresholdBytes ?? DEFAULTS.workerThresholdBytes);

    const slotStride = alignUp(chunkBytes + PREFILTER_OVERREAD, 64);
    const scratch = { offset: slotStride * slotCount, bytes: PATTERN_SCRATCH_BYTES };
    const pages = Math.ceil((scratch.offset + scratch.bytes) / 65536);
    const memory = new wasm.Memory({ initial: pages, maximum: pages, shared: useWorker });
    const heap = new Uint8Array(memory.buffer);
    const slotOffset = (slot: number) => slot * slotStride;

    const free: number[] = Array.from({ length: slotCount }, (_, i) => i);
    const waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];
    let broken: Error | undefined;
    const release = (slot: number) => {
      free.push(slot);
      waiting.shift()?.resolve();
    };
    const fail = (e: Error) => {
      broken = e;
      for (const w of waiting.splice(0)) w.reject(e);
    };
    const acquire = async (): Promise<number> => {
      while (free.length === 0) {
        if (broken) throw broken;
        await new Promise<void>((resolve, reject) => waiting.push({ resolve, reject }));
      }
      return free.shift()!;
    };
    side = useWorker ? await workerSide(memory, scratch, release, fail) : inThreadSide(memory, scratch, release);

    const fileHash = createHash('sha256');
    const entropy = new EntropySampler(entropySampleRanges(size));
    let pickle: string | undefined;
    let parse: GgufParse = { status: 'incomplete', needBytes: 0 };
    let header: GgufHeader | undefined;
    let layout: LayoutProblem | undefined;
    let chatTemplate: ChatTemplateFinding | undefined;
    let zeros: ZeroRegions | undefined;
    let stats: WeightStatsSampler | undefined;

    // Bytes before the header has parsed, kept until the layout is known, then replayed.
    let collected = new Uint8Array(Math.min(size, chunkBytes));
    let collectedLength = 0;
    let nextParseAt = 0;

    const deliver = (slot: number, length: number, position: number) => {
      const view = heap.subarray(slotOffset(slot), slotOffset(slot) + length);
      zeros?.push(view, position);
      stats?.push(view, position);
      side!.push(slot, slotOffset(slot), length, position);
    };

    const settleLayout = async () => {
      if (parse.status === 'ok') {
        const h = parse.header;
        header = h;
        const bytes = collected.subarray(0, collectedLength);
        const templates = h.metadata.filter((kv) => isChatTemplateKey(kv.key)).flatMap((kv) => metadataStrings(bytes, kv).map((text) => ({ key: kv.key, text })));
        chatTemplate = findChatTemplateInjection(templates);
        layout = checkTensorLayout(h, size);
        if (!layout) {
          const ranges = h.tensors.map((t) => ({ name: t.name, start: h.dataOffset + t.offset, length: t.byteSize }));
          const padding = [{ start: h.headerBytes, end: h.dataOffset }];
          for (const r of ranges) padding.push({ start: r.start + r.length, end: Math.min(size, alignUp(r.start + r.length - h.dataOffset, h.alignment) + h.dataOffset) });
          zeros = new ZeroRegions(padding.filter((r) => r.end > r.start));
          stats = new WeightStatsSampler(planWeightStats(h));
          side!.setLayout(ranges);
        } else {
          side!.setLayout([]);
        }
      } else {
        side!.setLayout([]);
      }
      for (let position = 0; position < collectedLength; position += chunkBytes) {
        const length = Math.min(chunkBytes, collectedLength - position);
        const slot = await acquire();
        heap.set(collected.subarray(position, position + length), slotOffset(slot));
        deliver(slot, length, position);
      }
      collected = new Uint8Array(0);
    };

    const collect = async (view: Uint8Array, atEnd: boolean) => {
      if (collectedLength + view.length > collected.length) {
        // The parser never asks for more than maxHeaderBytes, so neither does this buffer.
        const grown = new Uint8Array(Math.min(size, limits.maxHeaderBytes + chunkBytes, Math.max(collected.length * 2, collectedLength + view.length)));
        grown.set(collected.subarray(0, collectedLength));
        collected = grown;
      }
      collected.set(view, collectedLength);
      collectedLength += view.length;
      if (collectedLength < nextParseAt && !atEnd) return;
      parse = parseGgufHeader(collected.subarray(0, collectedLength), size, limits);
      if (parse.status === 'incomplete') {
        // Re-parsing from the start is cheap; growing the target by half bounds the attempts.
        nextParseAt = Math.max(parse.needBytes, Math.ceil(collectedLength * 1.5));
        return;
      }
      await settleLayout();
    };

    let position = 0;
    let slot = await acquire();
    let reading = readFully(handle, heap.subarray(slotOffset(slot), slotOffset(slot) + Math.min(chunkBytes, size)), 0);
    while (position < size) {
      const length = await reading;
      const expected = Math.min(chunkBytes, size - position);
      if (length !== expected) throw new ArtifactChangedError(`the file ended at ${position + length} bytes, expected ${size}`);
      const current = slot;
      const at = position;
      position += length;
      if (position < size) {
        slot = await acquire();
        reading = readFully(handle, heap.subarray(slotOffset(slot), slotOffset(slot) + Math.min(chunkBytes, size - position)), position);
      }
      const view = heap.subarray(slotOffset(current), slotOffset(current) + length);
      fileHash.update(view);
      entropy.push(view, at);
      if (at === 0) pickle = detectPickle(view);
      if (parse.status === 'incomplete') {
        await collect(view, position >= size);
        release(current);
      } else {
        deliver(current, length, at);
      }
    }
    if (parse.status === 'incomplete') await collect(new Uint8Array(0), true);

    const streamed = await side.finish();
    const after = await handle.stat();
    if (after.size !== size || after.mtimeMs !== before.mtimeMs) throw new ArtifactChangedError('the file changed while it was scanned');

    const report: ScanReport = {
      sizeBytes: size,
      sha256: fileHash.digest('hex'),
      durationMs: Math.round(performance.now() - started),
      header: summarize(parse),
      patterns: streamed.matches,
      entropy: entropy.samples(),
      weights: stats?.results() ?? [],
    };
    if (pickle) report.pickle = pickle;
    if (layout) report.layout = layout;
    if (zeros?.firstNonZero !== undefined) report.paddingNotZeroAt = zeros.firstNonZero;
    if (chatTemplate) report.chatTemplate = chatTemplate;
    if (header && !layout && streamed.tensorNames.length === header.tensors.length) {
      report.tensorMerkleRoot = tensorMerkleRoot(streamed.tensorNames.map((name, i) => ({ name, sha256: streamed.tensorDigests.subarray(i * 32, i * 32 + 32) })));
    }
    return report;
  } finally {
    await side?.close();
    await handle.close();
  }
}
