// A deterministic tiny llama-architecture GGUF model (about half a megabyte): small enough to
// generate in milliseconds, real enough for llama.cpp to load and generate from, and clean under every
// quarantine check. Tests, the adversarial corpus and the lab all use it; it is never committed.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { encodeGguf, GgmlType, gguf, type GgufDocument, type GgufKv, type GgufTensor } from './gguf-writer.js';

export const TINY_MODEL = {
  embedding: 64,
  feedForward: 128,
  blocks: 2,
  heads: 4,
  context: 256,
} as const;

const WORDS = [
  'the', 'of', 'and', 'to', 'a', 'in', 'is', 'it', 'you', 'that', 'he', 'was', 'for', 'on', 'are', 'with', 'as', 'I',
  'his', 'they', 'be', 'at', 'one', 'have', 'this', 'from', 'or', 'had', 'by', 'not', 'word', 'but', 'what', 'some',
  'we', 'can', 'out', 'other', 'were', 'all', 'there', 'when', 'up', 'use', 'your', 'how', 'said', 'an', 'each',
  'she', 'which', 'do', 'their', 'time', 'if', 'will', 'way', 'about', 'many', 'then', 'them', 'write', 'would',
  'like', 'so', 'these', 'her', 'long', 'make', 'thing', 'see', 'him', 'two', 'has', 'look', 'more', 'day', 'could',
  'go', 'come', 'did', 'number', 'sound', 'no', 'most', 'people', 'my', 'over', 'know', 'water', 'than', 'call',
  'first', 'who', 'may', 'down', 'side', 'been', 'now', 'find', 'any', 'new', 'work', 'part', 'take', 'get', 'place',
  'made', 'live',
];

/** Mulberry32: a small seeded PRNG, so every run writes the same bytes. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function f32Tensor(name: string, dims: number[], fill: (i: number) => number): GgufTensor {
  const count = dims.reduce((a, b) => a * b, 1);
  const data = Buffer.alloc(count * 4);
  for (let i = 0; i < count; i++) data.writeFloatLE(fill(i), i * 4);
  return { name, dims, type: GgmlType.F32, data };
}

export function tinyModelVocabulary(): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  // SentencePiece turns spaces into U+2581; a lone one keeps text round-tripping exactly.
  for (const w of ['', ...WORDS]) {
    tokens.push(`\u2581${w}`);
    types.push(1);
  }
  const scores = tokens.map((_, i) => (i < 259 ? 0 : -(i - 258)));
  return { tokens, scores, types };
}

/** The model as a GGUF document, so tests can derive variants (extra keys, other tensors). */
export function tinyModelDocument(seed = 1): GgufDocument {
  const { embedding: e, feedForward: ff, blocks, heads, context } = TINY_MODEL;
  const vocab = tinyModelVocabulary();
  const n = vocab.tokens.length;
  const kv: GgufKv[] = [
    { key: 'general.architecture', value: gguf.str('llama') },
    { key: 'general.name', value: gguf.str('secai-tiny') },
    { key: 'general.alignment', value: gguf.u32(32) },
    { key: 'general.file_type', value: gguf.u32(0) },
    { key: 'llama.context_length', value: gguf.u32(context) },
    { key: 'llama.embedding_length', value: gguf.u32(e) },
    { key: 'llama.block_count', value: gguf.u32(blocks) },
    { key: 'llama.feed_forward_length', value: gguf.u32(ff) },
    { key: 'llama.attention.head_count', value: gguf.u32(heads) },
    { key: 'llama.attention.head_count_kv', value: gguf.u32(heads) },
    { key: 'llama.attention.layer_norm_rms_epsilon', value: gguf.f32(1e-5) },
    { key: 'llama.rope.dimension_count', value: gguf.u32(e / heads) },
    { key: 'llama.rope.freq_base', value: gguf.f32(10000) },
    { key: 'llama.vocab_size', value: gguf.u32(n) },
    { key: 'tokenizer.ggml.model', value: gguf.str('llama') },
    { key: 'tokenizer.ggml.tokens', value: gguf.strings(vocab.tokens) },
    { key: 'tokenizer.ggml.scores', value: gguf.f32s(vocab.scores) },
    { key: 'tokenizer.ggml.token_type', value: gguf.i32s(vocab.types) },
    { key: 'tokenizer.ggml.unknown_token_id', value: gguf.u32(0) },
    { key: 'tokenizer.ggml.bos_token_id', value: gguf.u32(1) },
    { key: 'tokenizer.ggml.eos_token_id', value: gguf.u32(2) },
    { key: 'tokenizer.ggml.add_bos_token', value: gguf.bool(true) },
  ];
  const random = prng(seed);
  // Roughly normal weights (sum of uniforms), std about 0.05; norms near 1 with a little spread so
  // that no tensor is constant (a constant tensor is a weight anomaly).
  const weight = () => (random() + random() + random() + random() - 2) * 0.08;
  const norm = () => 1 + (random() - 0.5) * 0.02;
  const tensors: GgufTensor[] = [
    f32Tensor('token_embd.weight', [e, n], weight),
    f32Tensor('output_norm.weight', [e], norm),
    f32Tensor('output.weight', [e, n], weight),
  ];
  for (let b = 0; b < blocks; b++) {
    tensors.push(
      f32Tensor(`blk.${b}.attn_norm.weight`, [e], norm),
      f32Tensor(`blk.${b}.attn_q.weight`, [e, e], weight),
      f32Tensor(`blk.${b}.attn_k.weight`, [e, e], weight),
      f32Tensor(`blk.${b}.attn_v.weight`, [e, e], weight),
      f32Tensor(`blk.${b}.attn_output.weight`, [e, e], weight),
      f32Tensor(`blk.${b}.ffn_norm.weight`, [e], norm),
      f32Tensor(`blk.${b}.ffn_gate.weight`, [e, ff], weight),
      f32Tensor(`blk.${b}.ffn_up.weight`, [e, ff], weight),
      f32Tensor(`blk.${b}.ffn_down.weight`, [ff, e], weight),
    );
  }
  return { version: 3, kv, tensors, alignment: 32 };
}

export function tinyModelBytes(seed = 1): Buffer {
  return encodeGguf(tinyModelDocument(seed));
}

/** Writes the tiny model to `path` and returns its SHA-256 and size. */
export function writeTinyModel(path: string, seed = 1): { sha256: string; sizeBytes: number } {
  const bytes = tinyModelBytes(seed);
  writeFileSync(path, bytes);
  return { sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.length };
}
