import fc from 'fast-check';
import { SANDBOX_CHANNEL_FD } from '../sandbox/bubblewrap.js';
import {
  encodeFrame,
  FrameDecoder,
  LIMITS,
  parseAgentMessage,
  parseWorkerMessage,
  ProtocolError,
  WORKER_CHANNEL_FD,
  type AgentMessage,
  type WorkerMessage,
} from './worker-protocol.js';

describe('framing', () => {
  it('round-trips messages however the stream is split', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 200 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 17 }), (texts, step) => {
        const messages: WorkerMessage[] = texts.map((text, id) => ({ type: 'text', id, text }));
        const stream = Buffer.concat(messages.map((m) => encodeFrame(m, LIMITS.workerFrameBytes)));
        const decoder = new FrameDecoder(LIMITS.workerFrameBytes);
        const received: unknown[] = [];
        for (let at = 0; at < stream.length; at += step) received.push(...decoder.push(stream.subarray(at, at + step)));
        expect(received).toEqual(messages);
      }),
    );
  });

  it('refuses a frame above the bound from its length alone', () => {
    const decoder = new FrameDecoder(1024);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1025);
    expect(() => decoder.push(header)).toThrow(ProtocolError);
  });

  it('refuses a frame that is not JSON', () => {
    const body = Buffer.from('{nope');
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length);
    expect(() => new FrameDecoder(1024).push(Buffer.concat([header, body]))).toThrow('not JSON');
  });

  it('will not encode a message above the bound', () => {
    expect(() => encodeFrame({ type: 'text', id: 1, text: 'x'.repeat(2000) }, 1000)).toThrow(ProtocolError);
  });

  it('uses the sandbox channel descriptor', () => {
    expect(WORKER_CHANNEL_FD).toBe(SANDBOX_CHANNEL_FD);
  });
});

describe('worker messages (untrusted)', () => {
  const valid: WorkerMessage[] = [
    { type: 'ready', containment: { seccomp: true, landlock: true, networkInterfaces: ['lo'] }, gpu: false, gpuLayers: 0, contextSize: 2048 },
    { type: 'ready', containment: { seccomp: false, landlock: false, networkInterfaces: [] }, gpu: 'cuda', gpuLayers: 33, contextSize: 4096 },
    { type: 'load-failed', reason: 'GPUUnavailable', message: 'no GPU' },
    { type: 'text', id: 3, text: 'hello' },
    { type: 'done', id: 3, finishReason: 'length', promptTokens: 4, completionTokens: 16 },
    { type: 'failed', id: 3, code: 'context_length_exceeded' },
  ];
  it.each(valid.map((m) => [m.type, m]))('accepts %s', (_type, message) => {
    expect(parseWorkerMessage(JSON.parse(JSON.stringify(message)))).toEqual(message);
  });

  const invalid: Array<[string, unknown]> = [
    ['not an object', 'text'],
    ['an unknown type', { type: 'exec', command: 'sh' }],
    ['an oversized text chunk', { type: 'text', id: 1, text: 'x'.repeat(LIMITS.textChunkChars + 1) }],
    ['a negative id', { type: 'text', id: -1, text: '' }],
    ['a fractional token count', { type: 'done', id: 1, finishReason: 'stop', promptTokens: 1.5, completionTokens: 1 }],
    ['an unknown finish reason', { type: 'done', id: 1, finishReason: 'exploded', promptTokens: 1, completionTokens: 1 }],
    ['an unknown load failure', { type: 'load-failed', reason: 'Whatever', message: '' }],
    ['an oversized message', { type: 'load-failed', reason: 'ModelLoadFailed', message: 'x'.repeat(LIMITS.messageChars + 1) }],
    ['too many interfaces', { type: 'ready', containment: { networkInterfaces: Array(LIMITS.interfaces + 1).fill('lo') }, gpu: false, gpuLayers: 0, contextSize: 1 }],
    ['an unknown failure code', { type: 'failed', id: 1, code: 'rm -rf' }],
  ];
  it.each(invalid)('refuses %s', (_what, value) => {
    expect(() => parseWorkerMessage(value)).toThrow(ProtocolError);
  });
});

describe('agent messages', () => {
  const valid: AgentMessage[] = [
    { type: 'load', modelPath: '/model/model.gguf', sha256: 'a'.repeat(64), gpuLayers: -1, contextSize: 2048, threads: 1, sequences: 2 },
    { type: 'generate', id: 1, request: { kind: 'completion', prompt: 'hi', maxTokens: 16, temperature: 0, topP: 1, stop: [] } },
    {
      type: 'generate',
      id: 2,
      request: { kind: 'chat', messages: [{ role: 'user', content: 'hi' }], maxTokens: 16, temperature: 0.7, topP: 0.9, seed: 42, stop: ['\n'] },
    },
    { type: 'cancel', id: 2 },
  ];
  it.each(valid.map((m) => [m.type, m]))('accepts %s', (_type, message) => {
    expect(parseAgentMessage(JSON.parse(JSON.stringify(message)))).toEqual(message);
  });

  it.each([
    ['a role the model does not know', { type: 'generate', id: 1, request: { kind: 'chat', messages: [{ role: 'tool', content: '' }], maxTokens: 1, temperature: 0, topP: 1, stop: [] } }],
    ['a temperature above 2', { type: 'generate', id: 1, request: { kind: 'completion', prompt: '', maxTokens: 1, temperature: 3, topP: 1, stop: [] } }],
    ['five stop sequences', { type: 'generate', id: 1, request: { kind: 'completion', prompt: '', maxTokens: 1, temperature: 0, topP: 1, stop: ['a', 'b', 'c', 'd', 'e'] } }],
    ['zero threads', { type: 'load', modelPath: '/m', sha256: '', gpuLayers: 0, contextSize: 1, threads: 0, sequences: 1 }],
  ])('refuses %s', (_what, value) => {
    expect(() => parseAgentMessage(value)).toThrow(ProtocolError);
  });
});
