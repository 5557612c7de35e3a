// Benchmark (issue 16): the node's serving path — the agent's OpenAI-compatible API in front of
// the sandboxed node-llama-cpp worker — against llama.cpp's own llama-server, built from the very
// llama.cpp sources the worker runs (hack/llama-server/build.sh, from node-llama-cpp's bundle).
// Same GGUF (a 134 M parameter Q8_0 llama written by PyPI gguf: make-bench-model.py), same threads,
// same per-request context, CPU, the two servers measured in one run, interleaved per round.
// Each request streams a completion of a fixed-length prompt with include_usage: time to first token, then
// prompt tokens / time to first token (prompt processing) and generated tokens after the first /
// the rest of the stream (generation); at 1, 2 and 4 requests at once, also the aggregate
// generation rate (all generated tokens / wall time of the round).
// Run: npx tsx test/bench/inference-vs-llama-server.ts [rounds]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { sha256OfFile } from '../../agents/src/file-state.js';
import { inferenceMetrics } from '../../agents/src/inference/inference-metrics.js';
import { InferenceWorker } from '../../agents/src/inference/inference-worker.js';
import { OpenAiServer } from '../../agents/src/inference/openai-server.js';
import { REPO_ROOT, freePort } from '../../hack/control-plane/control-plane.js';
import { bearerToken, nodeSandbox } from '../inference/inference-fixtures.js';

export interface ServingFigures {
  concurrency: number;
  /** Medians over every request of every round. */
  ttftMs: number;
  promptTokensPerSecond: number;
  generationTokensPerSecond: number;
  /** All generated tokens of a round / its wall time, median over rounds. */
  aggregateTokensPerSecond: number;
}

export interface InferenceComparison {
  model: { path: string; parameters: string; bytes: number };
  threads: number;
  contextSize: number;
  promptTokens: number;
  maxTokens: number;
  rounds: number;
  llamaServerCommit: string;
  ours: ServingFigures[];
  llamaServer: ServingFigures[];
}

const CONCURRENCY = [1, 2, 4];
const MAX_TOKENS = 64;
const CONTEXT = 1024;
const GGUF_PY_VERSION = '0.19.0';
// Words of the model's vocabulary; its tokenizer makes about seven tokens of each (~600 in all).
const PROMPT = Array.from({ length: 80 }, (_, i) => `w${(i * 37) % 5000}`).join(' ');
/**
 * Each request starts with a word of its own: both servers keep a sequence's tokens and reuse a
 * common prefix (llama-server's prompt cache, node-llama-cpp's context sequence), which would turn
 * prompt processing into a cache hit.
 */
let requestCounter = 0;
const uniquePrompt = () => `w${10_000 + (requestCounter++ % 20_000)} ${PROMPT}`;

function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'secai-fleet', 'bench-models');
}

/** The benchmark model, written once by PyPI gguf in a venv of its own and cached by script digest. */
export function benchModel(): string {
  const script = join(REPO_ROOT, 'test', 'bench', 'make-bench-model.py');
  const key = createHash('sha256').update(readFileSync(script)).update(GGUF_PY_VERSION).digest('hex').slice(0, 16);
  const dir = cacheDir();
  const path = join(dir, `bench-134m-q8_0-${key}.gguf`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  const venv = join(dir, `gguf-${GGUF_PY_VERSION}-venv`);
  if (!existsSync(join(venv, 'installed'))) {
    execFileSync('python3', ['-m', 'venv', venv]);
    execFileSync(join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', `gguf==${GGUF_PY_VERSION}`], { stdio: 'inherit', timeout: 600_000 });
    execFileSync('touch', [join(venv, 'installed')]);
  }
  execFileSync(join(venv, 'bin', 'python'), [script, `${path}.tmp`], { stdio: 'inherit' });
  renameSync(`${path}.tmp`, path);
  return path;
}

interface RequestTiming {
  ttftMs: number;
  totalMs: number;
  promptTokens: number;
  completionTokens: number;
}

/** One streamed completion; the first text chunk is the first token. */
async function streamCompletion(url: string, token: string | undefined, model: string): Promise<RequestTiming> {
  const started = performance.now();
  const response = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ model, prompt: uniquePrompt(), max_tokens: MAX_TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  if (response.status !== 200 || !response.body) throw new Error(`${url} answered ${response.status}: ${await response.text()}`);
  let first: number | undefined;
  let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  let buffered = '';
  let seen = '';
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    const text = decoder.decode(chunk as Uint8Array, { stream: true });
    buffered += text;
    if (seen.length < 2000) seen += text;
    let at: number;
    while ((at = buffered.indexOf('\n\n')) >= 0) {
      const event = buffered.slice(0, at).trim();
      buffered = buffered.slice(at + 2);
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
      const data = JSON.parse(event.slice(6)) as { choices?: { text?: string }[]; usage?: { prompt_tokens: number; completion_tokens: number } };
      if (first === undefined && data.choices?.[0]?.text) first = performance.now();
      if (data.usage) usage = data.usage;
    }
  }
  const ended = performance.now();
  if (first === undefined || !usage) throw new Error(`${url}: the stream had no token or no usage: ${seen.slice(0, 600)}`);
  return { ttftMs: first - started, totalMs: ended - started, promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function summarise(concurrency: number, rounds: { wallMs: number; requests: RequestTiming[] }[]): ServingFigures {
  const requests = rounds.flatMap((r) => r.requests);
  return {
    concurrency,
    ttftMs: median(requests.map((r) => r.ttftMs)),
    promptTokensPerSecond: median(requests.map((r) => r.promptTokens / (r.ttftMs / 1000))),
    generationTokensPerSecond: median(requests.map((r) => (r.completionTokens - 1) / ((r.totalMs - r.ttftMs) / 1000))),
    aggregateTokensPerSecond: median(rounds.map((r) => r.requests.reduce((sum, x) => sum + x.completionTokens, 0) / (r.wallMs / 1000))),
  };
}

async function waitForHttp(url: string, child: ChildProcess, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`llama-server exited with ${child.exitCode}`);
    const ok = await fetch(`${url}/health`).then((r) => r.status === 200, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`llama-server did not become healthy within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function compareWithLlamaServer(rounds = 5, threads = 2): Promise<InferenceComparison> {
  const modelPath = benchModel();
  const llamaServer = execFileSync(join(REPO_ROOT, 'hack', 'llama-server', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  const commit = /llama-server\/([0-9a-f]{40})\//.exec(llamaServer)?.[1] ?? 'unknown';
  const maxConcurrency = Math.max(...CONCURRENCY);
  const sha256 = await sha256OfFile(modelPath);
  const auth = bearerToken();

  // Ours: the agent's API in front of the sandboxed worker, as a node serves.
  const worker = await InferenceWorker.start({
    model: { path: modelPath, sha256 },
    gpuLayers: 0,
    contextSize: CONTEXT,
    threads,
    sequences: maxConcurrency,
    sandbox: await nodeSandbox(),
    loadTimeoutMs: 300_000,
  });
  const server = new OpenAiServer({
    service: 'bench',
    model: 'bench',
    authTokenSha256: auth.sha256,
    concurrency: maxConcurrency,
    queueDepth: 0,
    backend: () => worker,
    metrics: inferenceMetrics(new Registry()),
    logger: pino({ level: 'silent' }),
  });
  const { port: ourPort } = await server.listen(0, '127.0.0.1');
  const ours = `http://127.0.0.1:${ourPort}`;

  // llama-server: each of its slots gets the same context as one of the worker's sequences.
  const port = await freePort();
  const child = spawn(llamaServer, ['-m', modelPath, '-t', String(threads), '-c', String(CONTEXT * maxConcurrency), '-np', String(maxConcurrency), '--host', '127.0.0.1', '--port', String(port), '--no-webui'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let serverLog = '';
  child.stderr!.on('data', (chunk: Buffer) => (serverLog = (serverLog + chunk.toString()).slice(-4000)));
  const theirs = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(theirs, child).catch((error: Error) => {
      throw new Error(`${error.message}: ${serverLog}`);
    });
    // Warm-up: first requests pay for page faults and thread start-up on both.
    for (let i = 0; i < 2; i++) {
      await streamCompletion(ours, auth.token, 'bench');
      await streamCompletion(theirs, undefined, 'bench');
    }
    const results = { ours: [] as ServingFigures[], llamaServer: [] as ServingFigures[] };
    for (const concurrency of CONCURRENCY) {
      const perServer = { ours: [] as { wallMs: number; requests: RequestTiming[] }[], llamaServer: [] as { wallMs: number; requests: RequestTiming[] }[] };
      for (let round = 0; round < rounds; round++) {
        // Alternate which goes first, so that drift of the shared machine affects both alike.
        const order = round % 2 === 0 ? (['ours', 'llamaServer'] as const) : (['llamaServer', 'ours'] as const);
        for (const which of order) {
          const url = which === 'ours' ? ours : theirs;
          const started = performance.now();
          const requests = await Promise.all(Array.from({ length: concurrency }, () => streamCompletion(url, which === 'ours' ? auth.token : undefined, 'bench')));
          perServer[which].push({ wallMs: performance.now() - started, requests });
        }
      }
      results.ours.push(summarise(concurrency, perServer.ours));
      results.llamaServer.push(summarise(concurrency, perServer.llamaServer));
    }
    const promptTokens = (await streamCompletion(theirs, undefined, 'bench')).promptTokens;
    return {
      model: { path: modelPath, parameters: '134M (Q8_0)', bytes: statSync(modelPath).size },
      threads,
      contextSize: CONTEXT,
      promptTokens,
      maxTokens: MAX_TOKENS,
      rounds,
      llamaServerCommit: commit,
      ...results,
    };
  } finally {
    child.kill('SIGKILL');
    await server.close();
    await worker.stop();
  }
}

export function describeComparison(c: InferenceComparison): string {
  const lines = [`model ${c.model.parameters}, ${(c.model.bytes / 1e6).toFixed(0)} MB; ${c.threads} threads; context ${c.contextSize} per request; prompt ${c.promptTokens} tokens; ${c.maxTokens} generated; llama.cpp ${c.llamaServerCommit.slice(0, 12)}`];
  for (let i = 0; i < c.ours.length; i++) {
    const a = c.ours[i]!;
    const b = c.llamaServer[i]!;
    const r = (x: number, y: number) => (x / y).toFixed(2);
    lines.push(
      `  ${a.concurrency} at once: prompt ${a.promptTokensPerSecond.toFixed(0)} vs ${b.promptTokensPerSecond.toFixed(0)} tok/s (${r(a.promptTokensPerSecond, b.promptTokensPerSecond)}x), ` +
        `generation ${a.generationTokensPerSecond.toFixed(1)} vs ${b.generationTokensPerSecond.toFixed(1)} tok/s (${r(a.generationTokensPerSecond, b.generationTokensPerSecond)}x), ` +
        `aggregate ${a.aggregateTokensPerSecond.toFixed(1)} vs ${b.aggregateTokensPerSecond.toFixed(1)} tok/s (${r(a.aggregateTokensPerSecond, b.aggregateTokensPerSecond)}x), ` +
        `TTFT ${a.ttftMs.toFixed(0)} vs ${b.ttftMs.toFixed(0)} ms (${r(a.ttftMs, b.ttftMs)}x)`,
    );
  }
  return lines.join('\n');
}

/** The bars: throughput at least 0.95x llama-server's, time to first token at most 1.1x. */
export function barsMissed(c: InferenceComparison): string[] {
  const missed: string[] = [];
  c.ours.forEach((a, i) => {
    const b = c.llamaServer[i]!;
    if (a.promptTokensPerSecond < 0.95 * b.promptTokensPerSecond) missed.push(`${a.concurrency} at once: prompt throughput below 0.95x`);
    if (a.generationTokensPerSecond < 0.95 * b.generationTokensPerSecond) missed.push(`${a.concurrency} at once: generation throughput below 0.95x`);
    if (a.ttftMs > 1.1 * b.ttftMs) missed.push(`${a.concurrency} at once: time to first token above 1.1x`);
  });
  return missed;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const comparison = await compareWithLlamaServer(Number(process.argv[2] ?? 5));
  process.stdout.write(`${describeComparison(comparison)}\n`);
  const missed = barsMissed(comparison);
  if (missed.length > 0) process.stdout.write(`bars missed: ${missed.join('; ')}\n`);
  if (process.argv.includes('--assert') && missed.length > 0) process.exitCode = 1;
}
