// The agent's handle on one sandboxed inference worker: starts it, sends the load request, checks
// that the sandbox it reports from inside is the one asked for, runs generations over the socket
// and watches it exit. Everything the worker sends is validated and bounded.
import { constants } from 'node:os';
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { spawnSandboxed } from '../sandbox/bubblewrap.js';
import type { SandboxSupport } from '../sandbox/sandbox-support.js';
import { inferenceWorkerSandboxSpec, MODEL_PATH_INSIDE, workerInstallation, type WorkerInstallation } from './worker-sandbox.js';
import {
  encodeFrame,
  FrameDecoder,
  LIMITS,
  parseWorkerMessage,
  type AgentMessage,
  type Containment,
  type FinishReason,
  type GenerationFailureCode,
  type GenerationRequest,
  type LoadFailureReason,
  type WorkerMessage,
} from './worker-protocol.js';

export interface WorkerModel {
  /** The model file on the host. */
  path: string;
  sha256: string;
}

export interface WorkerStartOptions {
  model: WorkerModel;
  gpuLayers: number;
  contextSize: number;
  threads: number;
  /** Generations the worker runs at once (one llama.cpp sequence each). */
  sequences: number;
  sandbox: SandboxSupport;
  installation?: WorkerInstallation;
  loadTimeoutMs?: number;
  /** Runs bwrap through this command (tests: `ip netns exec NAME`). */
  spawnPrefix?: readonly string[];
}

export type WorkerFailureReason = LoadFailureReason | 'WorkerCrashed' | 'WorkerStartTimeout' | 'SandboxNotApplied' | 'WorkerProtocolViolation';

export class WorkerStartError extends Error {
  override name = 'WorkerStartError';
  constructor(
    readonly reason: WorkerFailureReason,
    message: string,
  ) {
    super(message);
  }
}

export class GenerationError extends Error {
  override name = 'GenerationError';
  constructor(readonly code: GenerationFailureCode | 'worker_exited') {
    super(code === 'worker_exited' ? 'the inference worker exited' : `generation failed: ${code}`);
  }
}

export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** e.g. "killed by SIGABRT" or "exited with status 2". */
  description: string;
}

export interface GenerationOutcome {
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

export interface WorkerReady {
  containment: Containment;
  gpu: string | false;
  gpuLayers: number;
  contextSize: number;
}

interface PendingGeneration {
  onText: (text: string) => void;
  resolve: (outcome: GenerationOutcome) => void;
  reject: (error: Error) => void;
}

const STDERR_TAIL_BYTES = 4096;
const DEFAULT_LOAD_TIMEOUT_MS = 120_000;

/** bwrap reports a program killed by signal N as exit status 128 + N. */
export function describeWorkerExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `killed by ${signal}`;
  if (code !== null && code > 128 && code <= 128 + 64) {
    const name = Object.entries(constants.signals).find(([, number]) => number === code - 128)?.[0];
    if (name) return `killed by ${name}`;
  }
  return `exited with status ${code}`;
}

/**
 * Worker text bound for status and logs, with control characters replaced: load errors can quote
 * strings from the (untrusted) model file. Before any request is served, so never a prompt.
 */
export function printable(text: string, maxChars: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ');
  return clean.length > maxChars ? clean.slice(-maxChars) : clean;
}

/** Where the worker's own account of its sandbox differs from what this node applies. */
export function containmentShortfall(containment: Containment, sandbox: SandboxSupport): string | undefined {
  if (sandbox.seccomp.available && !containment.seccomp) return 'the worker runs without the seccomp filter';
  if (sandbox.landlock.available && !containment.landlock) return 'the worker runs without the Landlock ruleset';
  const interfaces = containment.networkInterfaces;
  if (interfaces.length !== 1 || interfaces[0] !== 'lo') return `the worker sees network interfaces ${interfaces.join(', ')}`;
  return undefined;
}

export class InferenceWorker {
  readonly exited: Promise<WorkerExit>;
  private readonly pending = new Map<number, PendingGeneration>();
  private nextId = 1;
  private gone = false;
  private stderrTail = Buffer.alloc(0);
  private readonly decoder = new FrameDecoder(LIMITS.workerFrameBytes);
  private onReady: ((message: WorkerMessage) => void) | undefined;
  private ready_: WorkerReady | undefined;

  private constructor(
    private readonly child: ChildProcess,
    private readonly channel: Socket,
  ) {
    this.exited = new Promise((resolve) => {
      const settle = (code: number | null, signal: NodeJS.Signals | null, description: string) => {
        if (this.gone) return;
        this.gone = true;
        for (const generation of this.pending.values()) generation.reject(new GenerationError('worker_exited'));
        this.pending.clear();
        resolve({ code, signal, description });
      };
      child.on('exit', (code, signal) => settle(code, signal, describeWorkerExit(code, signal)));
      // A sandbox that cannot be started at all (bwrap missing) emits only 'error'.
      child.on('error', (error) => settle(null, null, `could not be started: ${error.message}`));
    });
    const keepTail = (chunk: Buffer) => {
      this.stderrTail = Buffer.concat([this.stderrTail, chunk]).subarray(-STDERR_TAIL_BYTES);
    };
    child.stdout?.on('data', keepTail);
    child.stderr?.on('data', keepTail);
    channel.on('data', (chunk: Buffer) => this.receive(chunk));
    channel.on('error', () => this.kill());
  }

  /** Starts a worker and resolves once its model is loaded; rejects with WorkerStartError. */
  static async start(options: WorkerStartOptions): Promise<InferenceWorker> {
    const spec = inferenceWorkerSandboxSpec({
      modelPath: options.model.path,
      installation: options.installation ?? workerInstallation(),
      gpu: options.gpuLayers !== 0,
    });
    const { child, channel } = spawnSandboxed(spec, options.sandbox, { prefix: options.spawnPrefix });
    const worker = new InferenceWorker(child, channel);
    const timeoutMs = options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<WorkerMessage>((resolve) => (worker.onReady = resolve));
    worker.send({
      type: 'load',
      modelPath: MODEL_PATH_INSIDE,
      sha256: options.model.sha256,
      gpuLayers: options.gpuLayers,
      contextSize: options.contextSize,
      threads: options.threads,
      sequences: options.sequences,
    });
    try {
      const first = await Promise.race([
        answered,
        worker.exited.then((exit): never => {
          throw new WorkerStartError('WorkerCrashed', `the worker ${exit.description} before it was ready${worker.diagnostic()}`);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new WorkerStartError('WorkerStartTimeout', `the worker was not ready within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      if (first.type === 'load-failed') throw new WorkerStartError(first.reason, printable(first.message, LIMITS.messageChars));
      if (first.type !== 'ready') throw new WorkerStartError('WorkerProtocolViolation', `the worker sent ${first.type} before it was ready`);
      const shortfall = containmentShortfall(first.containment, options.sandbox);
      if (shortfall) throw new WorkerStartError('SandboxNotApplied', shortfall);
      worker.ready_ = { containment: first.containment, gpu: first.gpu, gpuLayers: first.gpuLayers, contextSize: first.contextSize };
      return worker;
    } catch (error) {
      await worker.stop();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  get ready(): WorkerReady {
    if (!this.ready_) throw new Error('the worker is not ready');
    return this.ready_;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Runs one generation; text arrives through onText. An aborted signal cancels it in the worker. */
  generate(request: GenerationRequest, onText: (text: string) => void, signal?: AbortSignal): Promise<GenerationOutcome> {
    if (this.gone) return Promise.reject(new GenerationError('worker_exited'));
    const id = this.nextId;
    this.nextId = this.nextId >= LIMITS.requestId ? 1 : this.nextId + 1;
    return new Promise<GenerationOutcome>((resolve, reject) => {
      const onAbort = () => this.send({ type: 'cancel', id });
      const settle = () => signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        onText,
        resolve: (outcome) => {
          settle();
          resolve(outcome);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      });
      this.send({ type: 'generate', id, request });
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Kills the sandbox (bwrap takes its whole pid namespace down) and waits for the exit. */
  async stop(): Promise<WorkerExit> {
    this.kill();
    return this.exited;
  }

  private kill(): void {
    if (this.gone) return;
    this.child.kill('SIGKILL');
  }

  private send(message: AgentMessage): void {
    if (this.gone || this.channel.destroyed) return;
    this.channel.write(encodeFrame(message, LIMITS.agentFrameBytes));
  }

  private diagnostic(): string {
    const text = this.stderrTail.toString('utf8').trim();
    if (!text) return '';
    return `: ${printable(text.split('\n').slice(-3).join(' | '), 600)}`;
  }

  private receive(chunk: Buffer): void {
    let messages: WorkerMessage[];
    try {
      messages = this.decoder.push(chunk).map(parseWorkerMessage);
    } catch {
      this.kill();
      return;
    }
    for (const message of messages) {
      if (message.type === 'ready' || message.type === 'load-failed') {
        this.onReady?.(message);
        this.onReady = undefined;
        continue;
      }
      const generation = this.pending.get(message.id);
      if (!generation) continue;
      if (message.type === 'text') {
        generation.onText(message.text);
      } else if (message.type === 'done') {
        this.pending.delete(message.id);
        generation.resolve({ finishReason: message.finishReason, promptTokens: message.promptTokens, completionTokens: message.completionTokens });
      } else {
        this.pending.delete(message.id);
        generation.reject(new GenerationError(message.code));
      }
    }
  }
}
