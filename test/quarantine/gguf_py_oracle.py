"""llama.cpp's own gguf package as writer and oracle for the quarantine's GGUF parser.

  gguf_py_oracle.py write <dir>   writes the test models, one per line on stdout
  gguf_py_oracle.py architectures <dir>
                                  writes valid llama, qwen2 and gpt2 models llama.cpp loads, as
                                  converters write real checkpoints: norm gains of ones, biases of
                                  zeros, F16 embeddings and Q8_0 matrices; one per line on stdout
  gguf_py_oracle.py read <file>   prints what gguf.GGUFReader sees, as JSON
  gguf_py_oracle.py types         prints the ggml type table (name, block size, type size)
"""
import json
import sys

import numpy as np
import gguf
from gguf.quants import quantize


def vocabulary(n):
    tokens = ['<unk>', '<s>', '</s>'] + [f'<0x{b:02X}>' for b in range(256)] + [f'\u2581w{i}' for i in range(n)]
    return tokens, [0.0] * 259 + [-float(i) for i in range(n)], [2, 3, 3] + [6] * 256 + [1] * n


def metadata(writer):
    writer.add_name('secai-gguf-py')
    writer.add_context_length(256)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_head_count(4)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(7)
    writer.add_uint8('test.u8', 200)
    writer.add_int8('test.i8', -100)
    writer.add_uint16('test.u16', 60000)
    writer.add_int16('test.i16', -30000)
    writer.add_uint32('test.u32', 4000000000)
    writer.add_int32('test.i32', -2000000000)
    writer.add_float32('test.f32', 0.15625)
    writer.add_uint64('test.u64', 2**63 + 12345)
    writer.add_int64('test.i64', -(2**62) - 7)
    writer.add_float64('test.f64', 1.0 / 3.0)
    writer.add_bool('test.bool', True)
    writer.add_string('test.utf8', 'quarantäne \u2581 \U0001F512')
    writer.add_array('test.floats', [0.5, -1.25, 3.0])
    writer.add_array('test.ints', [1, -2, 3])
    tokens, scores, types = vocabulary(2000)
    writer.add_tokenizer_model('llama')
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_chat_template("{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{% endfor %}")


def write(directory):
    rng = np.random.default_rng(20260801)
    weights = lambda *shape: (rng.standard_normal(shape) * 0.02).astype(np.float32)
    variants = {
        'gguf-py-f32.gguf': (32, {}),
        'gguf-py-mixed.gguf': (32, {'f16': True, 'q8': True}),
        'gguf-py-align64.gguf': (64, {'f16': True, 'q8': True}),
    }
    for name, (alignment, kinds) in variants.items():
        path = f'{directory}/{name}'
        writer = gguf.GGUFWriter(path, 'llama')
        if alignment != 32:
            writer.add_custom_alignment(alignment)
        metadata(writer)
        writer.add_tensor('token_embd.weight', weights(2259, 64))
        writer.add_tensor('output_norm.weight', (1 + weights(64)).astype(np.float32))
        writer.add_tensor('blk.0.attn_q.weight', weights(64, 64).astype(np.float16) if kinds.get('f16') else weights(64, 64))
        w = weights(128, 64)
        if kinds.get('q8'):
            q = quantize(w, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor('blk.0.ffn_up.weight', q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor('blk.0.ffn_up.weight', w)
        writer.add_tensor('blk.0.ffn_down.weight', weights(64, 128))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        print(path)


WIDTH, HEADS, FFN, BLOCKS, CONTEXT = 64, 4, 128, 2, 256


def architecture(directory, arch, rng):
    """One model of `arch` with the tensors and keys llama.cpp's loader asks for."""
    path = f'{directory}/valid-{arch}.gguf'
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(f'secai-valid-{arch}')
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(BLOCKS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    if arch == 'gpt2':
        writer.add_layer_norm_eps(1e-5)
    else:
        writer.add_layer_norm_rms_eps(1e-6)
        writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    tokens, scores, types = vocabulary(1000)
    writer.add_tokenizer_model('llama')
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    vocab = len(tokens)

    def matrix(name, rows, cols, kind='q8'):
        w = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
        if kind == 'f16':
            writer.add_tensor(name, w.astype(np.float16))
        else:
            q = quantize(w, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    ones = lambda name, n=WIDTH: writer.add_tensor(name, np.ones(n, dtype=np.float32))
    zeros = lambda name, n=WIDTH: writer.add_tensor(name, np.zeros(n, dtype=np.float32))

    matrix('token_embd.weight', vocab, WIDTH, 'f16')
    if arch == 'gpt2':
        matrix('position_embd.weight', CONTEXT, WIDTH, 'f16')
    for b in range(BLOCKS):
        ones(f'blk.{b}.attn_norm.weight')
        if arch == 'gpt2':
            zeros(f'blk.{b}.attn_norm.bias')
            matrix(f'blk.{b}.attn_qkv.weight', 3 * WIDTH, WIDTH)
            zeros(f'blk.{b}.attn_qkv.bias', 3 * WIDTH)
        else:
            for t in ('q', 'k', 'v'):
                matrix(f'blk.{b}.attn_{t}.weight', WIDTH, WIDTH)
                if arch == 'qwen2':
                    zeros(f'blk.{b}.attn_{t}.bias')
        matrix(f'blk.{b}.attn_output.weight', WIDTH, WIDTH)
        if arch == 'gpt2':
            zeros(f'blk.{b}.attn_output.bias')
        ones(f'blk.{b}.ffn_norm.weight')
        if arch == 'gpt2':
            zeros(f'blk.{b}.ffn_norm.bias')
            matrix(f'blk.{b}.ffn_up.weight', FFN, WIDTH)
            zeros(f'blk.{b}.ffn_up.bias', FFN)
            matrix(f'blk.{b}.ffn_down.weight', WIDTH, FFN)
            zeros(f'blk.{b}.ffn_down.bias')
        else:
            matrix(f'blk.{b}.ffn_gate.weight', FFN, WIDTH)
            matrix(f'blk.{b}.ffn_up.weight', FFN, WIDTH)
            matrix(f'blk.{b}.ffn_down.weight', WIDTH, FFN)
    ones('output_norm.weight')
    if arch == 'gpt2':
        zeros('output_norm.bias')
    # Untied: with random weights a tied output echoes the prompt's last token (the residual stream
    # is mostly that token's embedding), which the smoke test reads as an empty answer.
    matrix('output.weight', vocab, WIDTH)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def architectures(directory):
    for seed, arch in enumerate(('llama', 'qwen2', 'gpt2')):
        print(architecture(directory, arch, np.random.default_rng(20261207 + seed)))


def value(field):
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        sub = field.types[-1]
        items = field.contents()
        if sub in (gguf.GGUFValueType.UINT64, gguf.GGUFValueType.INT64):
            items = [str(v) for v in items]
        return {'type': int(kind), 'itemType': int(sub), 'value': items}
    v = field.contents()
    if kind in (gguf.GGUFValueType.UINT64, gguf.GGUFValueType.INT64):
        v = str(v)
    return {'type': int(kind), 'value': v}


def read(path):
    reader = gguf.GGUFReader(path)
    fields = {name: value(f) for name, f in reader.fields.items() if not name.startswith('GGUF.')}
    tensors = [
        {'name': t.name, 'type': int(t.tensor_type), 'shape': [int(d) for d in t.shape], 'elements': int(t.n_elements), 'bytes': int(t.n_bytes), 'dataOffset': int(t.data_offset)}
        for t in reader.tensors
    ]
    print(json.dumps({'alignment': int(reader.alignment), 'dataOffset': int(reader.data_offset), 'fields': fields, 'tensors': tensors}))


def types():
    print(json.dumps({int(t): {'name': t.name, 'blockSize': size[0], 'typeSize': size[1]} for t, size in gguf.GGML_QUANT_SIZES.items()}))


if __name__ == '__main__':
    {'write': lambda: write(sys.argv[2]), 'architectures': lambda: architectures(sys.argv[2]), 'read': lambda: read(sys.argv[2]), 'types': types}[sys.argv[1]]()
