// The agent <-> inference worker protocol over the worker's UNIX socket: frames of a 4-byte
// big-endian length and a UTF-8 JSON message. Both sides bound frame sizes and validate every
// message; the agent treats the worker as untrusted (it runs code paths a malicious model reaches),
// so a frame that is too large or malformed ends the worker.

/** The worker's end of its socket: the sandbox's channel fd (SANDBOX_CHANNEL_FD in sandbox/bubblewrap.ts). */
export const WORKER_CHANNEL_FD = 3;

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface Sampling {
  maxTokens: number;
  temperature: number;
  topP: number;
  seed?: number;
  stop: string[];
}

export type GenerationRequest =
  | ({ kind: 'completion'; prompt: string } & Sampling)
  | ({ kind: 'chat'; messages: ChatMessage[] } & Sampling);

export interface WorkerLoad {
  /** The model file as the worker sees it. */
  modelPath: string;
  /** Expected SHA-256 (hex); the worker hashes the file before loading it. */
  sha256: string;
  /** -1: every layer on the GPU; 0: CPU only. */
  gpuLayers: number;
  contextSize: number;
  threads: number;
  sequences: number;
}

export type AgentMessage =
  | ({ type: 'load' } & WorkerLoad)
  | { type: 'generate'; id: number; request: GenerationRequest }
  | { type: 'cancel'; id: number };

/** What the worker measured about its own confinement, from inside. */
export interface Containment {
  /** /proc/self/status reports seccomp filter mode. */
  seccomp: boolean;
  /** Listing `/` is refused, as it is under the Landlock ruleset. */
  landlock: boolean;
  /** Interfaces in the worker's network namespace (only `lo` when it has none). */
  networkInterfaces: string[];
}

export const LOAD_FAILURE_REASONS = ['ModelDigestMismatch', 'GPUUnavailable', 'ModelLoadFailed'] as const;
export type LoadFailureReason = (typeof LOAD_FAILURE_REASONS)[number];

export const GENERATION_FAILURE_CODES = ['context_length_exceeded', 'busy', 'generation_failed'] as const;
export type GenerationFailureCode = (typeof GENERATION_FAILURE_CODES)[number];

export type FinishReason = 'stop' | 'length' | 'cancelled';

export type WorkerMessage =
  | { type: 'ready'; containment: Containment; gpu: string | false; gpuLayers: number; contextSize: number }
  | { type: 'load-failed'; reason: LoadFailureReason; message: string }
  | { type: 'text'; id: number; text: string }
  | { type: 'done'; id: number; finishReason: FinishReason; promptTokens: number; completionTokens: number }
  | { type: 'failed'; id: number; code: GenerationFailureCode };

export const LIMITS = {
  /** Agent -> worker: a request body is at most 1 MiB; JSON re-encoding stays well inside this. */
  agentFrameBytes: 4 * 1024 * 1024,
  /** Worker -> agent: text arrives in small chunks; anything larger is a misbehaving worker. */
  workerFrameBytes: 256 * 1024,
  textChunkChars: 64 * 1024,
  messageChars: 2000,
  interfaces: 64,
  interfaceNameChars: 64,
  chatMessages: 256,
  stopSequences: 4,
  stopChars: 256,
  tokens: 1 << 20,
  requestId: 2 ** 31,
} as const;

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export function encodeFrame(message: AgentMessage | WorkerMessage, maxFrameBytes: number): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  if (body.length > maxFrameBytes) throw new ProtocolError(`frame of ${body.length} bytes exceeds ${maxFrameBytes}`);
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/** Splits a byte stream into parsed JSON values, refusing frames above the bound before buffering them. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private expected: number | undefined;
  private readonly maxFrameBytes: number;

  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  push(chunk: Buffer): unknown[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const values: unknown[] = [];
    for (;;) {
      if (this.expected === undefined) {
        if (this.buffered < 4) break;
        const length = this.take(4).readUInt32BE(0);
        if (length > this.maxFrameBytes) throw new ProtocolError(`frame of ${length} bytes exceeds ${this.maxFrameBytes}`);
        this.expected = length;
      }
      if (this.buffered < this.expected) break;
      const body = this.take(this.expected);
      this.expected = undefined;
      try {
        values.push(JSON.parse(body.toString('utf8')));
      } catch {
        throw new ProtocolError('frame is not JSON');
      }
    }
    return values;
  }

  private take(bytes: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const out = all.subarray(0, bytes);
    const rest = all.subarray(bytes);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

type Json = Record<string, unknown>;

function object(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolError(`${what} is not an object`);
  return value as Json;
}

function string(value: unknown, what: string, maxChars: number): string {
  if (typeof value !== 'string') throw new ProtocolError(`${what} is not a string`);
  if (value.length > maxChars) throw new ProtocolError(`${what} is longer than ${maxChars} characters`);
  return value;
}

function integer(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ProtocolError(`${what} is not an integer in ${min}..${max}`);
  }
  return value;
}

function number(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new ProtocolError(`${what} is not a number in ${min}..${max}`);
  }
  return value;
}

function oneOf<T extends string>(value: unknown, what: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) throw new ProtocolError(`${what} is not one of ${allowed.join(', ')}`);
  return value as T;
}

function list(value: unknown, what: string, maxItems: number): unknown[] {
  if (!Array.isArray(value)) throw new ProtocolError(`${what} is not a list`);
  if (value.length > maxItems) throw new ProtocolError(`${what} has more than ${maxItems} items`);
  return value;
}

/** Validates a message from the worker (untrusted). */
export function parseWorkerMessage(value: unknown): WorkerMessage {
  const m = object(value, 'message');
  const id = () => integer(m.id, 'id', 0, LIMITS.requestId);
  switch (m.type) {
    case 'ready': {
      const c = object(m.containment, 'containment');
      return {
        type: 'ready',
        containment: {
          seccomp: c.seccomp === true,
          landlock: c.landlock === true,
          networkInterfaces: list(c.networkInterfaces, 'networkInterfaces', LIMITS.interfaces).map((name) =>
            string(name, 'interface name', LIMITS.interfaceNameChars),
          ),
        },
        gpu: m.gpu === false ? false : string(m.gpu, 'gpu', 32),
        gpuLayers: integer(m.gpuLayers, 'gpuLayers', 0, 100_000),
        contextSize: integer(m.contextSize, 'contextSize', 1, LIMITS.tokens),
      };
    }
    case 'load-failed':
      return {
        type: 'load-failed',
        reason: oneOf(m.reason, 'reason', LOAD_FAILURE_REASONS),
        message: string(m.message, 'message', LIMITS.messageChars),
      };
    case 'text':
      return { type: 'text', id: id(), text: string(m.text, 'text', LIMITS.textChunkChars) };
    case 'done':
      return {
        type: 'done',
        id: id(),
        finishReason: oneOf(m.finishReason, 'finishReason', ['stop', 'length', 'cancelled'] as const),
        promptTokens: integer(m.promptTokens, 'promptTokens', 0, LIMITS.tokens),
        completionTokens: integer(m.completionTokens, 'completionTokens', 0, LIMITS.tokens),
      };
    case 'failed':
      return { type: 'failed', id: id(), code: oneOf(m.code, 'code', GENERATION_FAILURE_CODES) };
    default:
      throw new ProtocolError('unknown worker message type');
  }
}

function parseSampling(r: Json): Sampling {
  const sampling: Sampling = {
    maxTokens: integer(r.maxTokens, 'maxTokens', 1, LIMITS.tokens),
    temperature: number(r.temperature, 'temperature', 0, 2),
    topP: number(r.topP, 'topP', 0, 1),
    stop: list(r.stop, 'stop', LIMITS.stopSequences).map((s) => string(s, 'stop', LIMITS.stopChars)),
  };
  if (r.seed !== undefined) sampling.seed = integer(r.seed, 'seed', 0, 2 ** 32 - 1);
  return sampling;
}

/** Validates a message from the agent (the worker's side of the protocol). */
export function parseAgentMessage(value: unknown): AgentMessage {
  const m = object(value, 'message');
  switch (m.type) {
    case 'load':
      return {
        type: 'load',
        modelPath: string(m.modelPath, 'modelPath', 4096),
        sha256: string(m.sha256, 'sha256', 64),
        gpuLayers: integer(m.gpuLayers, 'gpuLayers', -1, 100_000),
        contextSize: integer(m.contextSize, 'contextSize', 1, LIMITS.tokens),
        threads: integer(m.threads, 'threads', 1, 1024),
        sequences: integer(m.sequences, 'sequences', 1, 1024),
      };
    case 'generate': {
      const r = object(m.request, 'request');
      const id = integer(m.id, 'id', 0, LIMITS.requestId);
      if (r.kind === 'completion') {
        return { type: 'generate', id, request: { kind: 'completion', prompt: string(r.prompt, 'prompt', LIMITS.agentFrameBytes), ...parseSampling(r) } };
      }
      if (r.kind === 'chat') {
        const messages = list(r.messages, 'messages', LIMITS.chatMessages).map((item) => {
          const message = object(item, 'chat message');
          return {
            role: oneOf(message.role, 'role', ['system', 'user', 'assistant'] as const),
            content: string(message.content, 'content', LIMITS.agentFrameBytes),
          };
        });
        return { type: 'generate', id, request: { kind: 'chat', messages, ...parseSampling(r) } };
      }
      throw new ProtocolError('unknown request kind');
    }
    case 'cancel':
      return { type: 'cancel', id: integer(m.id, 'id', 0, LIMITS.requestId) };
    default:
      throw new ProtocolError('unknown agent message type');
  }
}
