// One service's OpenAI-compatible HTTP API: /v1/models, /v1/completions and /v1/chat/completions
// (with `stream: true` as server-sent events ending in `data: [DONE]`). A bearer token is checked
// against the SHA-256 in the plan in constant time before the body is read; bodies, queue and run
// time are bounded; errors use OpenAI's shape. Logs and metrics carry counts and timings, never
// prompt or response text.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { InferenceEndpoint, InferenceMetrics } from './inference-metrics.js';
import { GenerationError, type GenerationOutcome } from './inference-worker.js';
import {
  ApiError,
  DEFAULT_REQUEST_LIMITS,
  parseChatCompletionRequest,
  parseCompletionRequest,
  type ParsedRequest,
  type RequestLimits,
} from './openai-requests.js';
import { LimiterClosedError, RequestLimiter } from './request-limiter.js';
import type { FinishReason, GenerationRequest } from './worker-protocol.js';

/** What the API needs of a worker; undefined while none is ready. */
export interface GenerationBackend {
  generate(request: GenerationRequest, onText: (text: string) => void, signal?: AbortSignal): Promise<GenerationOutcome>;
}

export interface ApiLimits extends RequestLimits {
  maxBodyBytes: number;
  /** Receiving headers and body. */
  receiveTimeoutMs: number;
  /** Queueing and generation together. */
  generationTimeoutMs: number;
}

export const DEFAULT_API_LIMITS: ApiLimits = {
  ...DEFAULT_REQUEST_LIMITS,
  maxBodyBytes: 1024 * 1024,
  receiveTimeoutMs: 30_000,
  generationTimeoutMs: 300_000,
};

export interface OpenAiServerOptions {
  service: string;
  /** The model name clients ask for (the Model resource's name). */
  model: string;
  authTokenSha256: string;
  concurrency: number;
  queueDepth: number;
  backend: () => GenerationBackend | undefined;
  metrics: InferenceMetrics;
  logger: Logger;
  limits?: Partial<ApiLimits>;
}

const CREATED = Math.floor(Date.now() / 1000);

function endpointOf(method: string | undefined, path: string): InferenceEndpoint {
  if (path === '/v1/models' && method === 'GET') return 'models';
  if (path === '/v1/completions' && method === 'POST') return 'completions';
  if (path === '/v1/chat/completions' && method === 'POST') return 'chat_completions';
  return 'other';
}

function tokenDigest(hex: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error('authTokenSha256 must be 64 lowercase hex characters');
  return Buffer.from(hex, 'hex');
}

function finishReasonForApi(reason: FinishReason): 'stop' | 'length' {
  return reason === 'length' ? 'length' : 'stop';
}

export class OpenAiServer {
  private readonly server: Server;
  private readonly limiter: RequestLimiter;
  private readonly limits: ApiLimits;
  private readonly sockets = new Set<Socket>();
  private readonly inFlight = new Set<AbortController>();
  private expectedDigest: Buffer;
  private closing = false;

  constructor(private readonly options: OpenAiServerOptions) {
    this.limits = { ...DEFAULT_API_LIMITS, ...options.limits };
    this.expectedDigest = tokenDigest(options.authTokenSha256);
    this.limiter = new RequestLimiter(options.concurrency, options.queueDepth);
    this.server = createServer({ requestTimeout: this.limits.receiveTimeoutMs, headersTimeout: Math.min(this.limits.receiveTimeoutMs, 10_000) }, (req, res) => {
      void this.handle(req, res);
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.server.on('clientError', (_error, socket) => socket.destroy());
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  /** Rotates the token without dropping connections. */
  setAuthTokenSha256(hex: string): void {
    this.expectedDigest = tokenDigest(hex);
  }

  /** Stops at once: no new connections, queued and running requests aborted, sockets closed. */
  async close(): Promise<void> {
    this.closing = true;
    this.limiter.close();
    for (const controller of this.inFlight) controller.abort(new LimiterClosedError('the service is stopping'));
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private authorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer +(\S{1,4096})$/i.exec(header) : null;
    if (!match) return false;
    const presented = createHash('sha256').update(match[1]!, 'utf8').digest();
    return timingSafeEqual(presented, this.expectedDigest);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const path = (req.url ?? '/').split('?')[0]!;
    const endpoint = endpointOf(req.method, path);
    const abort = new AbortController();
    this.inFlight.add(abort);
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new Error('the client went away'));
    });
    const log = { service: this.options.service, endpoint };
    let status = 500;
    let usage: GenerationOutcome | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      if (!this.authorized(req)) {
        throw new ApiError(401, 'invalid_request_error', 'invalid_api_key', 'a valid bearer token is required (Authorization: Bearer <token>)');
      }
      if (endpoint === 'other') {
        const known = ['/v1/models', '/v1/completions', '/v1/chat/completions'].includes(path);
        throw known
          ? new ApiError(405, 'invalid_request_error', 'method_not_allowed', `${req.method} is not allowed on ${path}`)
          : new ApiError(404, 'invalid_request_error', 'unknown_url', `unknown request URL: ${req.method} ${path.slice(0, 200)}`);
      }
      if (endpoint === 'models') {
        status = 200;
        this.sendJson(res, 200, {
          object: 'list',
          data: [{ id: this.options.model, object: 'model', created: CREATED, owned_by: 'secai' }],
        });
        return;
      }
      const body = await this.readJson(req);
      const parsed = endpoint === 'completions' ? parseCompletionRequest(body, this.limits) : parseChatCompletionRequest(body, this.limits);
      if (parsed.model !== this.options.model) {
        throw new ApiError(404, 'invalid_request_error', 'model_not_found', `this endpoint serves the model ${this.options.model}`, 'model');
      }
      timer = setTimeout(() => abort.abort(new ApiError(504, 'server_error', 'timeout', 'the request timed out')), this.limits.generationTimeoutMs);
      const result = await this.generate(parsed, endpoint, res, abort, started);
      status = result.status;
      usage = result.usage;
    } catch (error) {
      const apiError = error instanceof ApiError ? error : new ApiError(500, 'server_error', 'internal_error', 'internal error');
      status = apiError.status;
      // An oversized body is not read to its end: close the connection after answering.
      if (apiError.status === 413) res.setHeader('connection', 'close');
      if (!res.headersSent) this.sendJson(res, apiError.status, apiError.toBody());
      else res.end();
      if (!(error instanceof ApiError)) this.options.logger.error({ ...log, err: { name: (error as Error).name } }, 'inference request failed');
    } finally {
      clearTimeout(timer);
      this.inFlight.delete(abort);
      this.options.metrics.requests.inc({ service: this.options.service, endpoint, code: String(status) });
      this.options.logger.info(
        {
          ...log,
          status,
          promptTokens: usage?.promptTokens,
          completionTokens: usage?.completionTokens,
          durationMs: Math.round(performance.now() - started),
        },
        'inference request',
      );
    }
  }

  private readJson(req: IncomingMessage): Promise<unknown> {
    const limit = this.limits.maxBodyBytes;
    const tooLarge = () => new ApiError(413, 'invalid_request_error', 'request_too_large', `the request body exceeds ${limit} bytes`);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) return Promise.reject(tooLarge());
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let received = 0;
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > limit) {
          req.pause();
          reject(tooLarge());
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          reject(new ApiError(400, 'invalid_request_error', 'invalid_json', 'the request body is not valid JSON'));
        }
      });
      req.on('error', reject);
    });
  }

  private sendJson(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async generate(
    parsed: ParsedRequest,
    endpoint: InferenceEndpoint,
    res: ServerResponse,
    abort: AbortController,
    started: number,
  ): Promise<{ status: number; usage?: GenerationOutcome }> {
    const { service, metrics } = this.options;
    const backend = this.options.backend();
    if (!backend || this.closing) throw new ApiError(503, 'server_error', 'model_not_ready', 'the model is not being served on this node right now');
    const release = await this.acquireSlot(abort.signal);
    metrics.activeRequests.inc({ service });
    const chat = endpoint === 'chat_completions';
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.options.model;
    let firstTextAt: number | undefined;
    let text = '';
    const chunk = (fields: Record<string, unknown>, finish: string | null) =>
      chat
        ? { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta: fields, logprobs: null, finish_reason: finish }] }
        : { id, object: 'text_completion', created, model, choices: [{ index: 0, text: fields.content ?? '', logprobs: null, finish_reason: finish }] };
    const sendEvent = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    try {
      if (parsed.stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
        if (chat) sendEvent(chunk({ role: 'assistant', content: '' }, null));
      }
      let outcome: GenerationOutcome;
      try {
        outcome = await backend.generate(
          parsed.generation,
          (piece) => {
            firstTextAt ??= performance.now();
            if (parsed.stream) sendEvent(chunk({ content: piece }, null));
            else text += piece;
          },
          abort.signal,
        );
      } catch (error) {
        if (error instanceof GenerationError) throw this.generationError(error);
        throw error;
      }
      if (abort.signal.aborted) throw this.abortError(abort.signal);
      const finished = performance.now();
      metrics.promptTokens.inc({ service }, outcome.promptTokens);
      metrics.generatedTokens.inc({ service }, outcome.completionTokens);
      if (firstTextAt !== undefined) {
        metrics.timeToFirstToken.observe({ service }, (firstTextAt - started) / 1000);
        if (outcome.completionTokens > 1 && finished > firstTextAt) {
          metrics.tokensPerSecond.observe({ service }, (outcome.completionTokens - 1) / ((finished - firstTextAt) / 1000));
        }
      }
      const usage = {
        prompt_tokens: outcome.promptTokens,
        completion_tokens: outcome.completionTokens,
        total_tokens: outcome.promptTokens + outcome.completionTokens,
      };
      const finish = finishReasonForApi(outcome.finishReason);
      if (parsed.stream) {
        sendEvent(chunk({}, finish));
        if (parsed.includeUsage) sendEvent({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model, choices: [], usage });
        res.end('data: [DONE]\n\n');
      } else if (chat) {
        this.sendJson(res, 200, {
          id,
          object: 'chat.completion',
          created,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finish }],
          usage,
        });
      } else {
        this.sendJson(res, 200, {
          id,
          object: 'text_completion',
          created,
          model,
          choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
          usage,
        });
      }
      return { status: 200, usage: outcome };
    } catch (error) {
      if (parsed.stream && res.headersSent && error instanceof ApiError && !res.writableEnded) {
        // Mid-stream failures arrive as an error event, as OpenAI's streams report them.
        sendEvent(error.toBody());
        res.end();
        return { status: error.status };
      }
      throw error;
    } finally {
      release();
      metrics.activeRequests.dec({ service });
    }
  }

  private async acquireSlot(signal: AbortSignal): Promise<() => void> {
    const { service, metrics } = this.options;
    const slot = this.limiter.tryAcquire(signal);
    if (!slot) throw new ApiError(429, 'requests', 'rate_limit_exceeded', 'the service is at its concurrency limit and its queue is full; retry later');
    metrics.queuedRequests.inc({ service });
    try {
      return await slot;
    } catch {
      throw this.abortError(signal);
    } finally {
      metrics.queuedRequests.dec({ service });
    }
  }

  private abortError(signal: AbortSignal): ApiError {
    if (signal.reason instanceof ApiError) return signal.reason;
    if (signal.reason instanceof LimiterClosedError) return new ApiError(503, 'server_error', 'model_not_ready', 'the service stopped');
    return new ApiError(499, 'invalid_request_error', 'client_closed_request', 'the client closed the request');
  }

  private generationError(error: GenerationError): ApiError {
    switch (error.code) {
      case 'context_length_exceeded':
        return new ApiError(400, 'invalid_request_error', 'context_length_exceeded', "the prompt and max_tokens together exceed the model's context", 'messages');
      case 'busy':
        return new ApiError(429, 'requests', 'rate_limit_exceeded', 'the worker has no free sequence; retry later');
      case 'worker_exited':
        return new ApiError(503, 'server_error', 'model_not_ready', 'the inference worker stopped; it is being restarted');
      default:
        return new ApiError(500, 'server_error', 'generation_failed', 'generation failed');
    }
  }
}
