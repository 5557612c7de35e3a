// Encodes GGUF files (v2 and v3) from a description of their metadata and tensors. Tests build
// valid models with it and, through the low-level options, the malformed ones of the adversarial
// corpus. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md

export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** ggml tensor types used here (ggml.h `enum ggml_type`). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
}

export type GgufScalar = number | bigint | boolean | string;

export type GgufValue =
  | { type: Exclude<GgufValueType, GgufValueType.ARRAY>; value: GgufScalar }
  | { type: GgufValueType.ARRAY; itemType: Exclude<GgufValueType, GgufValueType.ARRAY>; items: GgufScalar[] };

export interface GgufKv {
  key: string;
  value: GgufValue;
}

export interface GgufTensor {
  name: string;
  /** ggml order: dims[0] is the fastest-varying dimension. */
  dims: number[];
  type: GgmlType;
  data: Buffer;
  /** Overrides the computed offset (relative to the data section) — for malformed files. */
  offset?: bigint;
}

export interface GgufDocument {
  version?: number;
  kv: GgufKv[];
  tensors: GgufTensor[];
  /** Alignment of tensor data; must match general.alignment when that key is present. Default 32. */
  alignment?: number;
  /** Overrides the tensor and kv counts written in the header — for malformed files. */
  tensorCount?: bigint;
  kvCount?: bigint;
  magic?: string;
}

class ByteSink {
  private chunks: Buffer[] = [];
  length = 0;

  push(buf: Buffer): void {
    this.chunks.push(buf);
    this.length += buf.length;
  }

  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }

  u64(v: bigint | number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }

  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

function writeScalar(sink: ByteSink, type: GgufValueType, value: GgufScalar): void {
  const b = Buffer.alloc(8);
  switch (type) {
    case GgufValueType.UINT8: b.writeUInt8(Number(value)); sink.push(b.subarray(0, 1)); return;
    case GgufValueType.INT8: b.writeInt8(Number(value)); sink.push(b.subarray(0, 1)); return;
    case GgufValueType.UINT16: b.writeUInt16LE(Number(value)); sink.push(b.subarray(0, 2)); return;
    case GgufValueType.INT16: b.writeInt16LE(Number(value)); sink.push(b.subarray(0, 2)); return;
    case GgufValueType.UINT32: b.writeUInt32LE(Number(value)); sink.push(b.subarray(0, 4)); return;
    case GgufValueType.INT32: b.writeInt32LE(Number(value)); sink.push(b.subarray(0, 4)); return;
    case GgufValueType.FLOAT32: b.writeFloatLE(Number(value)); sink.push(b.subarray(0, 4)); return;
    case GgufValueType.BOOL: b.writeUInt8(value ? 1 : 0); sink.push(b.subarray(0, 1)); return;
    case GgufValueType.STRING: sink.string(String(value)); return;
    case GgufValueType.UINT64: b.writeBigUInt64LE(BigInt(value)); sink.push(b); return;
    case GgufValueType.INT64: b.writeBigInt64LE(BigInt(value)); sink.push(b); return;
    case GgufValueType.FLOAT64: b.writeDoubleLE(Number(value)); sink.push(b); return;
    default: throw new Error(`cannot write value type ${type}`);
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

export function encodeGguf(doc: GgufDocument): Buffer {
  const alignment = doc.alignment ?? 32;
  const sink = new ByteSink();
  sink.push(Buffer.from(doc.magic ?? 'GGUF', 'latin1'));
  sink.u32(doc.version ?? 3);
  sink.u64(doc.tensorCount ?? BigInt(doc.tensors.length));
  sink.u64(doc.kvCount ?? BigInt(doc.kv.length));
  for (const { key, value } of doc.kv) {
    sink.string(key);
    sink.u32(value.type);
    if (value.type === GgufValueType.ARRAY) {
      sink.u32(value.itemType);
      sink.u64(value.items.length);
      for (const item of value.items) writeScalar(sink, value.itemType, item);
    } else {
      writeScalar(sink, value.type, value.value);
    }
  }
  // Data is laid out in tensor order, each tensor aligned; an `offset` override changes only what
  // the header claims.
  const actual: number[] = [];
  let cursor = 0;
  for (const t of doc.tensors) {
    actual.push(cursor);
    cursor = alignUp(cursor + t.data.length, alignment);
  }
  doc.tensors.forEach((t, i) => {
    sink.string(t.name);
    sink.u32(t.dims.length);
    for (const d of t.dims) sink.u64(d);
    sink.u32(t.type);
    sink.u64(t.offset ?? BigInt(actual[i] ?? 0));
  });
  sink.push(Buffer.alloc(alignUp(sink.length, alignment) - sink.length));
  doc.tensors.forEach((t, i) => {
    sink.push(t.data);
    const next = i + 1 < doc.tensors.length ? (actual[i + 1] ?? 0) : alignUp((actual[i] ?? 0) + t.data.length, alignment);
    sink.push(Buffer.alloc(next - (actual[i] ?? 0) - t.data.length));
  });
  return sink.toBuffer();
}

// Value helpers for readable model descriptions.
export const gguf = {
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  u64: (value: bigint | number): GgufValue => ({ type: GgufValueType.UINT64, value: BigInt(value) }),
  strings: (items: string[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, items }),
  f32s: (items: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32, items }),
  i32s: (items: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, items }),
};
