// The OpenAI-compatible API, driven by the official `openai` client against the real sandboxed
// worker with the tiny model.
import { request } from 'node:http';
import OpenAI from 'openai';
import { ServiceState } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import {
  baseUrl,
  bearerToken,
  MapTrustedModels,
  ModelDir,
  servicePlan,
  startManager,
  waitFor,
  type ManagerFixture,
  type ModelFile,
} from './inference-fixtures.js';

const models = new ModelDir();
let model: ModelFile;
let fixture: ManagerFixture;
let client: OpenAI;
const auth = bearerToken();

beforeAll(async () => {
  model = models.tiny();
  fixture = await startManager(new MapTrustedModels(model));
  await fixture.manager.reconcile({
    services: [servicePlan(model, auth.sha256, { parallelRequests: 1, queueDepth: 1, contextSize: 2048 })],
    revoked: new Set(),
    cordoned: false,
  });
  await waitFor(() => fixture.manager.reports()[0]?.state === ServiceState.SERVICE_STATE_SERVING, 60_000, 'the service to serve');
  client = new OpenAI({ apiKey: auth.token, baseURL: baseUrl(fixture.manager), maxRetries: 0, timeout: 30_000 });
}, 90_000);

afterAll(async () => {
  await fixture?.manager.stop();
  models.remove();
});

/** A raw HTTP exchange, for what the client library hides (status lines, SSE framing). */
function raw(path: string, body: string | undefined, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const url = new URL(`${baseUrl(fixture.manager)}${path}`);
  return new Promise((resolve, reject) => {
    const req = request(url, { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('models', () => {
  it('lists the served model', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['tiny']);
  });
});

describe('completions', () => {
  it('generates up to max_tokens and reports usage', async () => {
    const completion = await client.completions.create({ model: 'tiny', prompt: 'the water of the', max_tokens: 8, temperature: 0 });
    expect(completion.object).toBe('text_completion');
    expect(completion.choices).toHaveLength(1);
    expect(typeof completion.choices[0]!.text).toBe('string');
    expect(completion.choices[0]!.finish_reason).toBe('length');
    expect(completion.usage).toMatchObject({ completion_tokens: 8 });
    expect(completion.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(completion.usage!.total_tokens).toBe(completion.usage!.prompt_tokens + 8);
  });

  it('is deterministic at temperature 0, and streams the same text', async () => {
    const params = { model: 'tiny', prompt: 'people know the', max_tokens: 12, temperature: 0 } as const;
    const first = await client.completions.create(params);
    const second = await client.completions.create(params);
    expect(second.choices[0]!.text).toBe(first.choices[0]!.text);
    const stream = await client.completions.create({ ...params, stream: true });
    let streamed = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      streamed += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(streamed).toBe(first.choices[0]!.text);
    expect(finish).toBe('length');
  });
});

describe('chat completions', () => {
  it('answers a conversation', async () => {
    const chat = await client.chat.completions.create({
      model: 'tiny',
      messages: [
        { role: 'system', content: 'answer briefly' },
        { role: 'user', content: 'what is water' },
      ],
      max_tokens: 10,
      temperature: 0,
    });
    expect(chat.object).toBe('chat.completion');
    expect(chat.choices[0]!.message.role).toBe('assistant');
    expect(typeof chat.choices[0]!.message.content).toBe('string');
    expect(chat.usage!.completion_tokens).toBeLessThanOrEqual(10);
  });

  it('streams deltas with a final finish reason and usage', async () => {
    const messages = [{ role: 'user' as const, content: 'tell me about the day' }];
    const whole = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 10, temperature: 0 });
    const stream = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let content = '';
    let role: string | undefined;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      role ??= chunk.choices[0]?.delta.role;
      content += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(role).toBe('assistant');
    expect(content).toBe(whole.choices[0]!.message.content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(usage).toEqual(whole.usage);
  });

  it('frames the stream as server-sent events ending with [DONE]', async () => {
    const response = await raw('/chat/completions', JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, stream: true }));
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = response.text.split('\n\n').filter(Boolean);
    expect(events.every((event) => event.startsWith('data: '))).toBe(true);
    expect(events.at(-1)).toBe('data: [DONE]');
  });
});

describe('refusals in OpenAI error shape', () => {
  it('401 without a valid bearer token', async () => {
    const stranger = new OpenAI({ apiKey: 'sk-not-the-token', baseURL: baseUrl(fixture.manager), maxRetries: 0 });
    await expect(stranger.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const response = await raw('/models', undefined, { authorization: '' });
    expect(response.status).toBe(401);
    expect(JSON.parse(response.text)).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
  });

  it('404 for a model this endpoint does not serve', async () => {
    const error = await client.completions.create({ model: 'gpt-4', prompt: 'x', max_tokens: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    expect(error).toMatchObject({ code: 'model_not_found', param: 'model' });
  });

  it('400 naming the parameter for what the server does not offer', async () => {
    const error = await client.completions.create({ model: 'tiny', prompt: 'x', n: 2 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ param: 'n', code: 'unsupported_parameter' });
  });

  it('400 when prompt and max_tokens exceed the context', async () => {
    const error = await client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 4000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ code: 'context_length_exceeded' });
  });

  it('413 for a body above the limit, without reading it', async () => {
    const response = await raw('/completions', JSON.stringify({ model: 'tiny', prompt: 'x'.repeat(1024 * 1024 + 10) }));
    expect(response.status).toBe(413);
    expect(JSON.parse(response.text).error.code).toBe('request_too_large');
  });

  it('400 for a body that is not JSON, 404 for an unknown path', async () => {
    expect((await raw('/completions', '{not json')).status).toBe(400);
    const unknown = await raw('/embeddings', '{}');
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.text).error.type).toBe('invalid_request_error');
  });

  it('429 beyond the concurrency limit and the queue (1 running, 1 queued)', async () => {
    // At temperature 0 this prompt runs to max_tokens (no end-of-sequence token).
    const long = () => client.completions.create({ model: 'tiny', prompt: 'the', max_tokens: 400, temperature: 0 }).then(
      () => 'ok',
      (error: unknown) => error,
    );
    const outcomes = await Promise.all([long(), long(), long()]);
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(2);
    const refused = outcomes.find((o) => o !== 'ok');
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    expect(refused).toMatchObject({ code: 'rate_limit_exceeded' });
  });
});

describe('a client that goes away', () => {
  it('cancels its generation and frees the slot', async () => {
    const abort = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'tiny', messages: [{ role: 'user', content: 'go on' }], max_tokens: 1800, temperature: 0, stream: true },
      { signal: abort.signal },
    );
    let chunks = 0;
    try {
      for await (const chunk of stream) {
        void chunk;
        if (++chunks === 3) abort.abort();
      }
    } catch (error) {
      expect(error).toBeInstanceOf(OpenAI.APIUserAbortError);
    }
    expect(chunks).toBeGreaterThanOrEqual(3);
    // With one slot and the long generation cancelled, a short request goes through at once.
    const started = Date.now();
    await client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 2 });
    expect(Date.now() - started).toBeLessThan(1000);
    await waitFor(() => fixture.logLines.some((line) => line.includes('"status":499')), 5000, 'the cancelled request to be logged');
  });
});

describe('metrics', () => {
  it('count requests and tokens and time the first token', async () => {
    const text = await fixture.registry.metrics();
    expect(text).toMatch(/secai_agent_inference_requests_total\{service="chat",endpoint="completions",code="200"\} [1-9]/);
    expect(text).toMatch(/secai_agent_inference_requests_total\{service="chat",endpoint="completions",code="429"\} 1/);
    expect(text).toMatch(/secai_agent_inference_generated_tokens_total\{service="chat"\} [1-9]/);
    expect(text).toMatch(/secai_agent_inference_time_to_first_token_seconds_count\{service="chat"\} [1-9]/);
    expect(text).toMatch(/secai_agent_inference_tokens_per_second_count\{service="chat"\} [1-9]/);
  });
});

describe('a request that outlives its time limit', () => {
  it('ends with 504 timeout', async () => {
    const quick = await startManager(new MapTrustedModels(model), { apiLimits: { generationTimeoutMs: 100 } });
    try {
      await quick.manager.reconcile({ services: [servicePlan(model, auth.sha256, { name: 'quick' })], revoked: new Set(), cordoned: false });
      await waitFor(() => quick.manager.reports()[0]?.state === ServiceState.SERVICE_STATE_SERVING, 60_000, 'the service to serve');
      const impatient = new OpenAI({ apiKey: auth.token, baseURL: baseUrl(quick.manager, 'quick'), maxRetries: 0 });
      const error = await impatient.completions.create({ model: 'tiny', prompt: 'the', max_tokens: 1500, temperature: 0 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.APIError);
      expect(error).toMatchObject({ status: 504, code: 'timeout' });
    } finally {
      await quick.manager.stop();
    }
  }, 90_000);
});
