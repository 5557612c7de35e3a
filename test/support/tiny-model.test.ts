// The tiny model is deterministic and a well-formed GGUF file by an independent reader.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf } from '@huggingface/gguf';
import { tinyModelBytes, tinyModelVocabulary, writeTinyModel } from './tiny-model.js';

it('writes the same bytes every time, and other bytes for another seed', () => {
  expect(tinyModelBytes().equals(tinyModelBytes())).toBe(true);
  expect(tinyModelBytes(2).equals(tinyModelBytes())).toBe(false);
});

it('is read by @huggingface/gguf with every key and tensor', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tiny-'));
  try {
    const path = join(dir, 'tiny.gguf');
    const { sizeBytes } = writeTinyModel(path);
    const parsed = await gguf(path, { allowLocalFile: true });
    expect(parsed.metadata['general.architecture']).toBe('llama');
    expect((parsed.metadata as Record<string, unknown>)['tokenizer.ggml.tokens']).toHaveLength(tinyModelVocabulary().tokens.length);
    expect(parsed.tensorInfos).toHaveLength(21);
    const last = parsed.tensorInfos.at(-1);
    expect(last?.name).toBe('blk.1.ffn_down.weight');
    expect(Number(last?.offset) + 128 * 64 * 4 + Number(parsed.tensorDataOffset)).toBe(sizeBytes);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
