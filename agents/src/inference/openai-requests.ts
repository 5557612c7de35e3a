// Parsing of OpenAI-style request bodies into worker generation requests, and OpenAI's error shape.
// Pure and bounded: unknown fields are ignored as OpenAI clients send many, but every field this
// server uses is checked, and features it does not offer (n > 1, tools, logprobs, images) are
// refused with a clear 400 instead of being silently dropped.
import type { ChatMessage, GenerationRequest, Sampling } from './worker-protocol.js';

export interface RequestLimits {
  /** Upper bound for max_tokens (further bounded by the worker's context). */
  maxTokens: number;
  defaultCompletionTokens: number;
  defaultChatTokens: number;
  maxMessages: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = {
  maxTokens: 4096,
  // OpenAI's default for /v1/completions.
  defaultCompletionTokens: 16,
  defaultChatTokens: 256,
  maxMessages: 256,
};

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'requests' | 'server_error';

/** An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly type: ApiErrorType,
    readonly code: string | null,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }

  toBody(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export interface ParsedRequest {
  model: string;
  stream: boolean;
  /** stream_options.include_usage: a final chunk carries the token counts. */
  includeUsage: boolean;
  generation: GenerationRequest;
}

type Body = Record<string, unknown>;

function invalid(message: string, param: string | null, code: string | null = null): ApiError {
  return new ApiError(400, 'invalid_request_error', code, message, param);
}

function bodyObject(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('the request body must be a JSON object', null);
  return body as Body;
}

function optionalNumber(body: Body, field: string, min: number, max: number, fallback: number): number {
  const value = body[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw invalid(`${field} must be a number from ${min} to ${max}`, field);
  }
  return value;
}

function optionalInteger(body: Body, field: string, min: number, max: number): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${field} must be an integer from ${min} to ${max}`, field);
  }
  return value;
}

function refuseUnless(condition: boolean, field: string, what: string): void {
  if (!condition) throw invalid(`${what} is not supported by this server`, field, 'unsupported_parameter');
}

function parseStop(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== 'string' || s.length === 0 || s.length > 256)) {
    throw invalid('stop must be a string or up to 4 strings of 1 to 256 characters', 'stop');
  }
  return list as string[];
}

function parseCommon(body: Body, limits: RequestLimits, defaultTokens: number, tokenField: string): { model: string; stream: boolean; includeUsage: boolean; sampling: Sampling } {
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0 || model.length > 256) throw invalid('model must be a non-empty string', 'model');
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw invalid('stream must be a boolean', 'stream');
  const stream = body.stream === true;
  const options = body.stream_options;
  const includeUsage = stream && typeof options === 'object' && options !== null && (options as Body).include_usage === true;
  refuseUnless(body.n === undefined || body.n === null || body.n === 1, 'n', 'n other than 1');
  refuseUnless(body.logprobs === undefined || body.logprobs === null || body.logprobs === false, 'logprobs', 'logprobs');
  const maxTokens = optionalInteger(body, tokenField, 1, limits.maxTokens) ?? defaultTokens;
  const seed = optionalInteger(body, 'seed', 0, 2 ** 32 - 1);
  const sampling: Sampling = {
    maxTokens,
    temperature: optionalNumber(body, 'temperature', 0, 2, 1),
    topP: optionalNumber(body, 'top_p', 0, 1, 1),
    stop: parseStop(body.stop),
  };
  if (seed !== undefined) sampling.seed = seed;
  return { model, stream, includeUsage, sampling };
}

export function parseCompletionRequest(raw: unknown, limits: RequestLimits = DEFAULT_REQUEST_LIMITS): ParsedRequest {
  const body = bodyObject(raw);
  const common = parseCommon(body, limits, limits.defaultCompletionTokens, 'max_tokens');
  refuseUnless(body.echo === undefined || body.echo === null || body.echo === false, 'echo', 'echo');
  refuseUnless(body.suffix === undefined || body.suffix === null, 'suffix', 'suffix');
  refuseUnless(body.best_of === undefined || body.best_of === null || body.best_of === 1, 'best_of', 'best_of other than 1');
  let prompt = body.prompt;
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') prompt = prompt[0];
  if (typeof prompt !== 'string') throw invalid('prompt must be a string (or a list of exactly one string)', 'prompt');
  return {
    model: common.model,
    stream: common.stream,
    includeUsage: common.includeUsage,
    generation: { kind: 'completion', prompt, ...common.sampling },
  };
}

function messageContent(value: unknown, index: number): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    return value
      .map((part: unknown) => {
        const p = part as Body | null;
        if (typeof p !== 'object' || p === null || p.type !== 'text' || typeof p.text !== 'string') {
          throw invalid(`messages[${index}].content may hold only text parts`, `messages[${index}].content`, 'unsupported_content');
        }
        return p.text;
      })
      .join('');
  }
  throw invalid(`messages[${index}].content must be a string or a list of text parts`, `messages[${index}].content`);
}

export function parseChatCompletionRequest(raw: unknown, limits: RequestLimits = DEFAULT_REQUEST_LIMITS): ParsedRequest {
  const body = bodyObject(raw);
  const tokenField = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
  const common = parseCommon(body, limits, limits.defaultChatTokens, tokenField);
  refuseUnless(body.tools === undefined || body.tools === null || (Array.isArray(body.tools) && body.tools.length === 0), 'tools', 'tools');
  refuseUnless(body.functions === undefined || body.functions === null, 'functions', 'functions');
  const format = body.response_format as Body | undefined | null;
  refuseUnless(format === undefined || format === null || format.type === 'text', 'response_format', 'a response_format other than text');
  const list = body.messages;
  if (!Array.isArray(list) || list.length === 0 || list.length > limits.maxMessages) {
    throw invalid(`messages must be a list of 1 to ${limits.maxMessages} messages`, 'messages');
  }
  const messages: ChatMessage[] = list.map((item: unknown, index) => {
    const message = item as Body | null;
    if (typeof message !== 'object' || message === null) throw invalid(`messages[${index}] must be an object`, `messages[${index}]`);
    const role = message.role;
    if (role !== 'system' && role !== 'developer' && role !== 'user' && role !== 'assistant') {
      throw invalid(`messages[${index}].role must be system, developer, user or assistant`, `messages[${index}].role`);
    }
    return { role: role === 'developer' ? 'system' : role, content: messageContent(message.content, index) };
  });
  return {
    model: common.model,
    stream: common.stream,
    includeUsage: common.includeUsage,
    generation: { kind: 'chat', messages, ...common.sampling },
  };
}
