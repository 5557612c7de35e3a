// The inference worker: runs inside the sandbox (bubblewrap, seccomp, Landlock), loads one model
// with node-llama-cpp and generates on request. It talks only over fd 3, a UNIX socket to the
// agent; it never logs prompts or responses. A malformed model may abort this process (llama.cpp
// asserts): that is why it is a separate, restartable process.
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import {
  getLlama,
  LlamaChat,
  LlamaCompletion,
  LlamaLogLevel,
  type ChatHistoryItem,
  type LlamaContext,
  type LlamaModel,
} from 'node-llama-cpp';
import {
  encodeFrame,
  FrameDecoder,
  LIMITS,
  parseAgentMessage,
  WORKER_CHANNEL_FD,
  type AgentMessage,
  type Containment,
  type FinishReason,
  type GenerationRequest,
  type WorkerLoad,
  type WorkerMessage,
} from './worker-protocol.js';

const channel = new Socket({ fd: WORKER_CHANNEL_FD, readable: true, writable: true });
const decoder = new FrameDecoder(LIMITS.agentFrameBytes);
const running = new Map<number, AbortController>();
let loaded: { model: LlamaModel; context: LlamaContext; freeSequences: number } | undefined;
let loading = false;

function send(message: WorkerMessage): void {
  channel.write(encodeFrame(message, LIMITS.workerFrameBytes));
}

function probeContainment(): Containment {
  const status = readFileSync('/proc/self/status', 'utf8');
  let landlock = false;
  try {
    readdirSync('/');
  } catch (error) {
    landlock = (error as NodeJS.ErrnoException).code === 'EACCES';
  }
  const networkInterfaces = readFileSync('/proc/net/dev', 'utf8')
    .split('\n')
    .slice(2)
    .map((line) => line.split(':')[0]!.trim())
    .filter((name) => name.length > 0)
    .slice(0, LIMITS.interfaces);
  return { seccomp: /^Seccomp:\s*2$/m.test(status), landlock, networkInterfaces };
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function bounded(text: string): string {
  return text.length > LIMITS.messageChars ? `${text.slice(0, LIMITS.messageChars - 1)}…` : text;
}

async function load(request: WorkerLoad): Promise<void> {
  const containment = probeContainment();
  const actual = await sha256Of(request.modelPath);
  if (actual !== request.sha256) {
    send({ type: 'load-failed', reason: 'ModelDigestMismatch', message: `the model file hashes to ${actual}, not the trusted ${request.sha256}` });
    return;
  }
  let stage = 'starting llama.cpp';
  try {
    const llama = await getLlama({
      build: 'never',
      gpu: request.gpuLayers === 0 ? false : 'auto',
      maxThreads: request.threads,
      progressLogs: false,
      logLevel: LlamaLogLevel.error,
      // llama.cpp's own messages go to stderr, which the agent keeps (bounded) for load failures.
      logger: (_level, message) => process.stderr.write(`${bounded(message)}\n`),
    });
    if (request.gpuLayers !== 0 && llama.gpu === false) {
      send({
        type: 'load-failed',
        reason: 'GPUUnavailable',
        message: `asked for ${request.gpuLayers === -1 ? 'all' : request.gpuLayers} GPU layers, but no GPU backend is usable on this node (CPU-only binaries or no device)`,
      });
      return;
    }
    stage = 'loading the model';
    const model = await llama.loadModel({ modelPath: request.modelPath, gpuLayers: request.gpuLayers < 0 ? 'max' : request.gpuLayers });
    stage = 'creating the context';
    const context = await model.createContext({ contextSize: request.contextSize, sequences: request.sequences, threads: request.threads });
    loaded = { model, context, freeSequences: request.sequences };
    send({ type: 'ready', containment, gpu: llama.gpu, gpuLayers: model.gpuLayers, contextSize: context.contextSize });
  } catch (error) {
    send({ type: 'load-failed', reason: 'ModelLoadFailed', message: bounded(`${stage}: ${(error as Error).message}`) });
  }
}

function finishReasonOf(stopReason: string): FinishReason {
  if (stopReason === 'maxTokens') return 'length';
  if (stopReason === 'abort') return 'cancelled';
  return 'stop';
}

function chatHistoryOf(request: Extract<GenerationRequest, { kind: 'chat' }>): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = request.messages.map((message): ChatHistoryItem => {
    if (message.role === 'system') return { type: 'system', text: message.content };
    if (message.role === 'user') return { type: 'user', text: message.content };
    return { type: 'model', response: [message.content] };
  });
  history.push({ type: 'model', response: [] });
  return history;
}

async function generate(id: number, request: GenerationRequest): Promise<void> {
  if (!loaded || loaded.freeSequences === 0) {
    send({ type: 'failed', id, code: 'busy' });
    return;
  }
  const { model, context } = loaded;
  loaded.freeSequences--;
  const abort = new AbortController();
  running.set(id, abort);
  const sequence = context.getSequence();
  try {
    let completionTokens = 0;
    const options = {
      maxTokens: request.maxTokens,
      temperature: request.temperature,
      topP: request.topP,
      ...(request.seed !== undefined ? { seed: request.seed } : {}),
      customStopTriggers: request.stop,
      signal: abort.signal,
      stopOnAbortSignal: true,
      onTextChunk: (text: string) => {
        for (let at = 0; at < text.length; at += LIMITS.textChunkChars) send({ type: 'text', id, text: text.slice(at, at + LIMITS.textChunkChars) });
      },
      onToken: (tokens: readonly unknown[]) => {
        completionTokens += tokens.length;
      },
    };
    let promptTokens: number;
    let stopReason: string;
    if (request.kind === 'completion') {
      promptTokens = model.tokenize(request.prompt).length + 1;
      if (promptTokens + request.maxTokens > context.contextSize) {
        send({ type: 'failed', id, code: 'context_length_exceeded' });
        return;
      }
      const completion = new LlamaCompletion({ contextSequence: sequence });
      stopReason = (await completion.generateCompletionWithMeta(request.prompt, options)).metadata.stopReason;
    } else {
      const chat = new LlamaChat({ contextSequence: sequence });
      const history = chatHistoryOf(request);
      promptTokens = chat.chatWrapper.generateContextState({ chatHistory: history }).contextText.tokenize(model.tokenizer).length;
      if (promptTokens + request.maxTokens > context.contextSize) {
        send({ type: 'failed', id, code: 'context_length_exceeded' });
        return;
      }
      stopReason = (await chat.generateResponse(history, options)).metadata.stopReason;
    }
    const finishReason = finishReasonOf(stopReason);
    // The stream regulator may hold back or merge tokens in onToken; a length stop sampled exactly maxTokens.
    if (finishReason === 'length') completionTokens = request.maxTokens;
    send({ type: 'done', id, finishReason, promptTokens, completionTokens: Math.min(completionTokens, request.maxTokens) });
  } catch {
    // The error text may quote the input; only the code crosses to the agent.
    send({ type: 'failed', id, code: 'generation_failed' });
  } finally {
    sequence.dispose();
    running.delete(id);
    loaded.freeSequences++;
  }
}

function handle(message: AgentMessage): void {
  if (message.type === 'load') {
    if (loading) return;
    loading = true;
    void load(message);
  } else if (message.type === 'generate') {
    void generate(message.id, message.request);
  } else {
    running.get(message.id)?.abort();
  }
}

channel.on('data', (chunk: Buffer) => {
  let messages: unknown[];
  try {
    messages = decoder.push(chunk);
  } catch {
    process.exit(2);
  }
  for (const value of messages) {
    try {
      handle(parseAgentMessage(value));
    } catch {
      process.exit(2);
    }
  }
});
// The agent is gone or has stopped the service: nothing is left to serve.
channel.on('close', () => process.exit(0));
channel.on('error', () => process.exit(0));
