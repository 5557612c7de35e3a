"""Writes the inference benchmark's model with llama.cpp's own gguf writer (PyPI gguf): a llama of
realistic shape (32,000-token vocabulary, 768 wide, 12 blocks, 12 heads, 2,048 feed-forward: about
134 M parameters) quantized Q8_0, with random weights (speed does not depend on them).

  make-bench-model.py <path>
"""
import sys

import numpy as np
import gguf
from gguf.quants import quantize

VOCAB, WIDTH, BLOCKS, HEADS, FFN, CONTEXT = 32000, 768, 12, 12, 2048, 4096


def main(path):
    rng = np.random.default_rng(20261207)
    writer = gguf.GGUFWriter(path, 'llama')
    writer.add_name('secai-bench-134m')
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(BLOCKS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    words = VOCAB - 259
    writer.add_tokenizer_model('llama')
    writer.add_token_list(['<unk>', '<s>', '</s>'] + [f'<0x{b:02X}>' for b in range(256)] + [f'\u2581w{i}' for i in range(words)])
    writer.add_token_scores([0.0] * 259 + [-float(i) for i in range(words)])
    writer.add_token_types([2, 3, 3] + [6] * 256 + [1] * words)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)

    def q8(name, rows, cols):
        w = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)
        q = quantize(w, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def norm(name):
        writer.add_tensor(name, np.ones(WIDTH, dtype=np.float32))

    q8('token_embd.weight', VOCAB, WIDTH)
    for b in range(BLOCKS):
        norm(f'blk.{b}.attn_norm.weight')
        for t in ('q', 'k', 'v', 'output'):
            q8(f'blk.{b}.attn_{t}.weight', WIDTH, WIDTH)
        norm(f'blk.{b}.ffn_norm.weight')
        q8(f'blk.{b}.ffn_gate.weight', FFN, WIDTH)
        q8(f'blk.{b}.ffn_up.weight', FFN, WIDTH)
        q8(f'blk.{b}.ffn_down.weight', WIDTH, FFN)
    norm('output_norm.weight')
    q8('output.weight', VOCAB, WIDTH)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == '__main__':
    main(sys.argv[1])
