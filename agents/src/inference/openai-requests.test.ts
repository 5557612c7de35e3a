import { ApiError, DEFAULT_REQUEST_LIMITS, parseChatCompletionRequest, parseCompletionRequest } from './openai-requests.js';

describe('completion requests', () => {
  it('take defaults from OpenAI', () => {
    expect(parseCompletionRequest({ model: 'tiny', prompt: 'hello' })).toEqual({
      model: 'tiny',
      stream: false,
      includeUsage: false,
      generation: { kind: 'completion', prompt: 'hello', maxTokens: DEFAULT_REQUEST_LIMITS.defaultCompletionTokens, temperature: 1, topP: 1, stop: [] },
    });
  });

  it('carry sampling settings, streaming and usage', () => {
    const parsed = parseCompletionRequest({
      model: 'tiny',
      prompt: ['one prompt'],
      max_tokens: 40,
      temperature: 0,
      top_p: 0.5,
      seed: 7,
      stop: '\n',
      stream: true,
      stream_options: { include_usage: true },
      user: 'ignored',
    });
    expect(parsed).toEqual({
      model: 'tiny',
      stream: true,
      includeUsage: true,
      generation: { kind: 'completion', prompt: 'one prompt', maxTokens: 40, temperature: 0, topP: 0.5, seed: 7, stop: ['\n'] },
    });
  });

  const refused: Array<[string, unknown, string | null]> = [
    ['a body that is not an object', [1, 2], null],
    ['a missing model', { prompt: 'x' }, 'model'],
    ['a missing prompt', { model: 'm' }, 'prompt'],
    ['two prompts', { model: 'm', prompt: ['a', 'b'] }, 'prompt'],
    ['token ids as prompt', { model: 'm', prompt: [1, 2, 3] }, 'prompt'],
    ['max_tokens of 0', { model: 'm', prompt: 'x', max_tokens: 0 }, 'max_tokens'],
    ['max_tokens above the bound', { model: 'm', prompt: 'x', max_tokens: DEFAULT_REQUEST_LIMITS.maxTokens + 1 }, 'max_tokens'],
    ['a fractional max_tokens', { model: 'm', prompt: 'x', max_tokens: 1.5 }, 'max_tokens'],
    ['a temperature above 2', { model: 'm', prompt: 'x', temperature: 2.5 }, 'temperature'],
    ['a negative top_p', { model: 'm', prompt: 'x', top_p: -0.1 }, 'top_p'],
    ['five stop sequences', { model: 'm', prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    ['an empty stop sequence', { model: 'm', prompt: 'x', stop: [''] }, 'stop'],
    ['n of 2', { model: 'm', prompt: 'x', n: 2 }, 'n'],
    ['logprobs', { model: 'm', prompt: 'x', logprobs: 5 }, 'logprobs'],
    ['echo', { model: 'm', prompt: 'x', echo: true }, 'echo'],
    ['a suffix', { model: 'm', prompt: 'x', suffix: 'end' }, 'suffix'],
    ['a string stream flag', { model: 'm', prompt: 'x', stream: 'yes' }, 'stream'],
  ];
  it.each(refused)('refuse %s with a 400 naming the field', (_what, body, param) => {
    let error: unknown;
    try {
      parseCompletionRequest(body);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 400, type: 'invalid_request_error', param });
  });
});

describe('chat completion requests', () => {
  it('map roles and text parts onto the worker request', () => {
    const parsed = parseChatCompletionRequest({
      model: 'tiny',
      messages: [
        { role: 'developer', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'hel' }, { type: 'text', text: 'lo' }] },
        { role: 'assistant', content: 'hi' },
        { role: 'user', content: 'again' },
      ],
      max_completion_tokens: 12,
      temperature: 0,
    });
    expect(parsed.generation).toEqual({
      kind: 'chat',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello' },
        { role: 'assistant', content: 'hi' },
        { role: 'user', content: 'again' },
      ],
      maxTokens: 12,
      temperature: 0,
      topP: 1,
      stop: [],
    });
  });

  it('default to the chat token budget', () => {
    const parsed = parseChatCompletionRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }] });
    expect(parsed.generation.maxTokens).toBe(DEFAULT_REQUEST_LIMITS.defaultChatTokens);
  });

  const refused: Array<[string, unknown, string | null]> = [
    ['no messages', { model: 'm', messages: [] }, 'messages'],
    ['too many messages', { model: 'm', messages: Array(DEFAULT_REQUEST_LIMITS.maxMessages + 1).fill({ role: 'user', content: 'x' }) }, 'messages'],
    ['a tool message', { model: 'm', messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
    ['an image part', { model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content'],
    ['null content', { model: 'm', messages: [{ role: 'user', content: null }] }, 'messages[0].content'],
    ['tools', { model: 'm', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function' }] }, 'tools'],
    ['a JSON response format', { model: 'm', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } }, 'response_format'],
  ];
  it.each(refused)('refuse %s', (_what, body, param) => {
    expect(() => parseChatCompletionRequest(body)).toThrow(ApiError);
    try {
      parseChatCompletionRequest(body);
    } catch (error) {
      expect(error).toMatchObject({ status: 400, param });
    }
  });
});

describe('ApiError', () => {
  it('answers in OpenAI error shape', () => {
    expect(new ApiError(429, 'requests', 'rate_limit_exceeded', 'slow down').toBody()).toEqual({
      error: { message: 'slow down', type: 'requests', param: null, code: 'rate_limit_exceeded' },
    });
  });
});
