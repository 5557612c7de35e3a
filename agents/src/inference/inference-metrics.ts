// Inference metrics. Labels carry only the service name (from the plan), the endpoint (a fixed set)
// and the HTTP status: never prompt or response content.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type InferenceEndpoint = 'models' | 'completions' | 'chat_completions' | 'other';

export interface InferenceMetrics {
  requests: Counter<'service' | 'endpoint' | 'code'>;
  promptTokens: Counter<'service'>;
  generatedTokens: Counter<'service'>;
  timeToFirstToken: Histogram<'service'>;
  tokensPerSecond: Histogram<'service'>;
  activeRequests: Gauge<'service'>;
  queuedRequests: Gauge<'service'>;
  workerRestarts: Counter<'service'>;
}

export function inferenceMetrics(registry: Registry): InferenceMetrics {
  const registers = [registry];
  return {
    requests: new Counter({
      name: 'secai_agent_inference_requests_total',
      help: 'Requests to the OpenAI-compatible API, by service, endpoint and HTTP status.',
      labelNames: ['service', 'endpoint', 'code'] as const,
      registers,
    }),
    promptTokens: new Counter({
      name: 'secai_agent_inference_prompt_tokens_total',
      help: 'Prompt tokens evaluated.',
      labelNames: ['service'] as const,
      registers,
    }),
    generatedTokens: new Counter({
      name: 'secai_agent_inference_generated_tokens_total',
      help: 'Tokens generated.',
      labelNames: ['service'] as const,
      registers,
    }),
    timeToFirstToken: new Histogram({
      name: 'secai_agent_inference_time_to_first_token_seconds',
      help: 'Time from receiving a generation request (queueing included) to its first generated text.',
      labelNames: ['service'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    tokensPerSecond: new Histogram({
      name: 'secai_agent_inference_tokens_per_second',
      help: 'Generation speed of a request after its first token (tokens per second).',
      labelNames: ['service'] as const,
      buckets: [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
      registers,
    }),
    activeRequests: new Gauge({
      name: 'secai_agent_inference_active_requests',
      help: 'Generations running now.',
      labelNames: ['service'] as const,
      registers,
    }),
    queuedRequests: new Gauge({
      name: 'secai_agent_inference_queued_requests',
      help: 'Requests waiting for a generation slot.',
      labelNames: ['service'] as const,
      registers,
    }),
    workerRestarts: new Counter({
      name: 'secai_agent_inference_worker_restarts_total',
      help: 'Inference worker restarts after a crash or failed start.',
      labelNames: ['service'] as const,
      registers,
    }),
  };
}
