// Large GGUF files for the quarantine benchmarks, written by streaming repeated tensor data
// (generating a gigabyte of fresh pseudo-random weights would take longer than scanning it). The
// data looks like quantized and half-precision weights: roughly normal values, entropy near 7 bits/byte.
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { encodeGguf, GgmlType, gguf, type GgufKv, type GgufTensor } from '../support/gguf-writer.js';
import { prng } from '../support/tiny-model.js';

function normal(random: () => number): number {
  return (random() + random() + random() + random() - 2) * Math.sqrt(3);
}

function floatToHalf(x: number): number {
  const f = new Float32Array([x]);
  const bits = new Uint32Array(f.buffer)[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  const mantissa = (bits >>> 13) & 0x3ff;
  if (exponent <= 0) return sign;
  if (exponent >= 31) return sign | 0x7c00;
  return sign | (exponent << 10) | mantissa;
}

/** Pattern bytes per tensor type; tensors repeat them. */
function patternBytes(type: GgmlType, bytes: number, random: () => number): Buffer {
  const out = Buffer.alloc(bytes);
  if (type === GgmlType.Q8_0) {
    for (let block = 0; block + 34 <= bytes; block += 34) {
      out.writeUInt16LE(floatToHalf(0.002 + random() * 0.002), block);
      for (let q = 0; q < 32; q++) out.writeInt8(Math.max(-127, Math.min(127, Math.round(normal(random) * 30))), block + 2 + q);
    }
  } else if (type === GgmlType.F16) {
    for (let i = 0; i + 2 <= bytes; i += 2) out.writeUInt16LE(floatToHalf(normal(random) * 0.02), i);
  } else {
    for (let i = 0; i + 4 <= bytes; i += 4) out.writeFloatLE(normal(random) * 0.02, i);
  }
  return out;
}

export interface LargeTensor {
  name: string;
  dims: number[];
  type: GgmlType;
}

const TYPE_GEOMETRY: Record<number, { block: number; bytes: number }> = {
  [GgmlType.F32]: { block: 1, bytes: 4 },
  [GgmlType.F16]: { block: 1, bytes: 2 },
  [GgmlType.Q8_0]: { block: 32, bytes: 34 },
};

export function tensorBytes(t: LargeTensor): number {
  const g = TYPE_GEOMETRY[t.type]!;
  return (t.dims.reduce((a, b) => a * b, 1) / g.block) * g.bytes;
}

/** About 1 GiB: 24 Q8_0, 4 F16 and 4 F32 tensors of a 4096-wide model. */
export function gigabyteModelTensors(): LargeTensor[] {
  const tensors: LargeTensor[] = [];
  for (let i = 0; i < 24; i++) tensors.push({ name: `blk.${i}.ffn_up.weight`, dims: [4096, 8192], type: GgmlType.Q8_0 });
  for (let i = 0; i < 4; i++) tensors.push({ name: `blk.${i}.attn_q.weight`, dims: [4096, 4096], type: GgmlType.F16 });
  for (let i = 0; i < 4; i++) tensors.push({ name: `blk.${i}.attn_k.weight`, dims: [4096, 1024], type: GgmlType.F32 });
  return tensors;
}

/** Writes a GGUF with the given tensors and extra metadata; returns its size. */
export async function writeLargeGguf(path: string, tensors: readonly LargeTensor[], kv: GgufKv[] = []): Promise<number> {
  const alignment = 32;
  const random = prng(7);
  const align = (n: number) => Math.ceil(n / alignment) * alignment;
  let offset = 0;
  const headerTensors: GgufTensor[] = tensors.map((t) => {
    const described: GgufTensor = { name: t.name, dims: t.dims, type: t.type, data: Buffer.alloc(0), offset: BigInt(offset) };
    offset += align(tensorBytes(t));
    return described;
  });
  const header = encodeGguf({
    version: 3,
    alignment,
    kv: [{ key: 'general.architecture', value: gguf.str('llama') }, { key: 'general.alignment', value: gguf.u32(alignment) }, ...kv],
    tensors: headerTensors,
  });
  const patterns = new Map<GgmlType, Buffer>();
  const out = createWriteStream(path, { mode: 0o600 });
  const write = async (chunk: Buffer) => {
    if (!out.write(chunk)) await once(out, 'drain');
  };
  await write(header);
  let size = header.length;
  for (const t of tensors) {
    const g = TYPE_GEOMETRY[t.type]!;
    // A multiple of the block size and of 4 so that values never straddle a repeat.
    const patternLength = g.bytes * 4 * 16384;
    let pattern = patterns.get(t.type);
    if (!pattern) {
      pattern = patternBytes(t.type, patternLength, random);
      patterns.set(t.type, pattern);
    }
    const length = tensorBytes(t);
    for (let written = 0; written < length; written += pattern.length) await write(pattern.subarray(0, Math.min(pattern.length, length - written)));
    const padding = align(length) - length;
    if (padding) await write(Buffer.alloc(padding));
    size += align(length);
  }
  out.end();
  await once(out, 'finish');
  return size;
}
