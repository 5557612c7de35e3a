// Benchmark: what the agent's OpenAI-compatible proxy (HTTP, bearer-token check, admission,
// JSON in and out) adds to a generation, against calling the same sandboxed worker directly over
// its socket. Both paths run the same short greedy completion, interleaved (ABAB, alternating which
// goes first) in one run so that drift affects both alike; medians are compared.
// Run: npx tsx test/bench/inference-proxy.ts [rounds]
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { inferenceMetrics } from '../../agents/src/inference/inference-metrics.js';
import { InferenceWorker } from '../../agents/src/inference/inference-worker.js';
import { OpenAiServer } from '../../agents/src/inference/openai-server.js';
import type { GenerationRequest } from '../../agents/src/inference/worker-protocol.js';
import { bearerToken, ModelDir, nodeSandbox } from '../inference/inference-fixtures.js';

export interface ProxyOverhead {
  rounds: number;
  directMedianMs: number;
  proxyMedianMs: number;
  /** Median of the per-round differences (proxy minus direct). */
  overheadMedianMs: number;
  directP90Ms: number;
  proxyP90Ms: number;
}

const IDLE_BEFORE_CALL_MS = 2;

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function measureInferenceProxyOverhead(rounds = 200, warmup = 20): Promise<ProxyOverhead> {
  const models = new ModelDir();
  const model = models.tiny();
  const auth = bearerToken();
  const worker = await InferenceWorker.start({
    model: { path: model.path, sha256: model.sha256 },
    gpuLayers: 0,
    contextSize: 512,
    threads: 1,
    sequences: 1,
    sandbox: await nodeSandbox(),
  });
  const server = new OpenAiServer({
    service: 'bench',
    model: 'tiny',
    authTokenSha256: auth.sha256,
    concurrency: 1,
    queueDepth: 0,
    backend: () => worker,
    metrics: inferenceMetrics(new Registry()),
    logger: pino({ level: 'silent' }),
  });
  const { port } = await server.listen(0, '127.0.0.1');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const generation: GenerationRequest = { kind: 'completion', prompt: 'the', maxTokens: 1, temperature: 0, topP: 1, stop: [] };
  const body = JSON.stringify({ model: 'tiny', prompt: 'the', max_tokens: 1, temperature: 0 });

  const direct = async (): Promise<number> => {
    const started = performance.now();
    let text = '';
    await worker.generate(generation, (piece) => (text += piece));
    return performance.now() - started;
  };
  const proxied = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      const req = request(
        { host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent, headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' } },
        (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`proxy answered ${res.statusCode}: ${text}`));
            else resolve(performance.now() - started);
            JSON.parse(text);
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  // Every call starts from the same idle worker, as a request from a real client would: a call
  // sent the instant the previous one ended would find llama.cpp's threads still spinning.
  const afterIdle = async (call: () => Promise<number>): Promise<number> => {
    await new Promise((resolve) => setTimeout(resolve, IDLE_BEFORE_CALL_MS));
    return call();
  };

  try {
    for (let i = 0; i < warmup; i++) {
      await direct();
      await proxied();
    }
    const directTimes: number[] = [];
    const proxyTimes: number[] = [];
    const differences: number[] = [];
    for (let i = 0; i < rounds; i++) {
      let d: number;
      let p: number;
      if (i % 2 === 0) {
        d = await afterIdle(direct);
        p = await afterIdle(proxied);
      } else {
        p = await afterIdle(proxied);
        d = await afterIdle(direct);
      }
      directTimes.push(d);
      proxyTimes.push(p);
      differences.push(p - d);
    }
    return {
      rounds,
      directMedianMs: quantile(directTimes, 0.5),
      proxyMedianMs: quantile(proxyTimes, 0.5),
      overheadMedianMs: quantile(differences, 0.5),
      directP90Ms: quantile(directTimes, 0.9),
      proxyP90Ms: quantile(proxyTimes, 0.9),
    };
  } finally {
    agent.destroy();
    await server.close();
    await worker.stop();
    models.remove();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rounds = Number(process.argv[2] ?? 200);
  const result = await measureInferenceProxyOverhead(rounds);
  const ms = (value: number) => `${value.toFixed(3)} ms`;
  process.stdout.write(
    `inference proxy overhead, ${result.rounds} interleaved rounds of a 1-token greedy completion on the tiny model:\n` +
      `  direct (worker socket): median ${ms(result.directMedianMs)}, p90 ${ms(result.directP90Ms)}\n` +
      `  via the OpenAI API:     median ${ms(result.proxyMedianMs)}, p90 ${ms(result.proxyP90Ms)}\n` +
      `  added by the proxy:     median ${ms(result.overheadMedianMs)} (per-round difference), ${ms(result.proxyMedianMs - result.directMedianMs)} (difference of medians)\n`,
  );
}
