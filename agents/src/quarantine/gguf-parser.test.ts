// The GGUF parser: agreement with an independent reader on a valid model, and the bound or check
// that stops each kind of malformed header.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf as hfGguf } from '@huggingface/gguf';
import { encodeGguf, GgmlType, gguf, GgufValueType, type GgufDocument } from '../../../test/support/gguf-writer.js';
import { tinyModelBytes, tinyModelDocument } from '../../../test/support/tiny-model.js';
import { checkTensorLayout, DEFAULT_GGUF_LIMITS, isArrayRef, parseGgufHeader, readArrayItems, type GgufHeader } from './gguf-parser.js';
import { Reason } from './verdict.js';

function parseOk(bytes: Buffer): GgufHeader {
  const r = parseGgufHeader(bytes, bytes.length);
  if (r.status !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(r)}`);
  return r.header;
}

function tinyWith(change: (doc: GgufDocument) => void): Buffer {
  const doc = tinyModelDocument();
  change(doc);
  return encodeGguf(doc);
}

function u64At(bytes: Buffer, offset: number, value: bigint): Buffer {
  const copy = Buffer.from(bytes);
  copy.writeBigUInt64LE(value, offset);
  return copy;
}

const small = (): GgufDocument => ({
  version: 3,
  kv: [{ key: 'general.architecture', value: gguf.str('llama') }],
  tensors: [{ name: 'w', dims: [4], type: GgmlType.F32, data: Buffer.alloc(16, 1) }],
});

it('reads the tiny model exactly as @huggingface/gguf does', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gguf-parser-'));
  try {
    const bytes = tinyModelBytes();
    const path = join(dir, 'tiny.gguf');
    writeFileSync(path, bytes);
    const oracle = await hfGguf(path, { allowLocalFile: true });
    const header = parseOk(bytes);
    expect(header.version).toBe(3);
    expect(Number(oracle.tensorDataOffset)).toBe(header.dataOffset);
    const ours: Record<string, unknown> = {};
    for (const kv of header.metadata) ours[kv.key] = isArrayRef(kv.value) ? readArrayItems(bytes, kv.value) : kv.value;
    const theirs = Object.fromEntries(Object.entries(oracle.metadata).filter(([k]) => !['version', 'tensor_count', 'kv_count'].includes(k)));
    expect(Object.keys(ours).sort()).toEqual(Object.keys(theirs).sort());
    for (const [key, value] of Object.entries(theirs)) expect(ours[key]).toEqual(value);
    expect(header.tensors.map((t) => ({ name: t.name, shape: t.dims, dtype: t.type, offset: t.offset }))).toEqual(
      oracle.tensorInfos.map((t) => ({ name: t.name, shape: t.shape.map(Number), dtype: t.dtype, offset: Number(t.offset) })),
    );
    expect(checkTensorLayout(header, bytes.length)).toBeUndefined();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('asks for more bytes while the header is incomplete, never more than the header needs', () => {
  const bytes = tinyModelBytes();
  const full = parseOk(bytes);
  for (const cut of [0, 3, 24, 100, 5000, full.headerBytes - 1]) {
    const r = parseGgufHeader(bytes.subarray(0, cut), bytes.length);
    expect(r.status).toBe('incomplete');
    if (r.status === 'incomplete') {
      expect(r.needBytes).toBeGreaterThan(cut);
      expect(r.needBytes).toBeLessThanOrEqual(full.headerBytes);
    }
  }
  expect(parseGgufHeader(bytes.subarray(0, full.headerBytes), bytes.length).status).toBe('ok');
});

it('does not decode the vocabulary while parsing, and decodes it on demand', () => {
  const bytes = tinyModelBytes();
  const header = parseOk(bytes);
  const tokens = header.metadata.find((kv) => kv.key === 'tokenizer.ggml.tokens')!;
  expect(isArrayRef(tokens.value)).toBe(true);
  const items = readArrayItems(bytes, tokens.value as never);
  expect(items.slice(0, 3)).toEqual(['<unk>', '<s>', '</s>']);
});

describe('rejects malformed headers with the reason of the violated bound', () => {
  const tiny = tinyModelBytes();
  const header = parseOk(tiny);
  const cases: [string, () => Buffer, string][] = [
    ['wrong magic', () => Buffer.concat([Buffer.from('GGUG'), tiny.subarray(4)]), Reason.BadMagic],
    ['version 1', () => tinyWith((d) => (d.version = 1)), Reason.UnsupportedVersion],
    ['version 4', () => tinyWith((d) => (d.version = 4)), Reason.UnsupportedVersion],
    ['truncated inside the magic', () => tiny.subarray(0, 3), Reason.HeaderTruncated],
    ['truncated inside the metadata', () => tiny.subarray(0, 500), Reason.HeaderTruncated],
    ['tensor count near 2^64', () => u64At(tiny, 8, 2n ** 64n - 1n), Reason.TooManyTensors],
    ['200,001 tensors', () => u64At(tiny, 8, 200_001n), Reason.TooManyTensors],
    ['no tensors', () => encodeGguf({ ...small(), tensors: [] }), Reason.NoTensors],
    ['metadata count near 2^64', () => u64At(tiny, 16, 2n ** 64n - 2n), Reason.TooManyKeys],
    ['10,001 metadata entries', () => u64At(tiny, 16, 10_001n), Reason.TooManyKeys],
    ['a metadata count beyond the entries present', () => u64At(tiny, 16, 5000n), Reason.KeyInvalid],
    ['key length near 2^64', () => u64At(tiny, 24, 2n ** 64n - 1n), Reason.KeyInvalid],
    ['empty key', () => encodeGguf({ ...small(), kv: [{ key: '', value: gguf.u32(1) }] }), Reason.KeyInvalid],
    ['key of 1025 bytes', () => encodeGguf({ ...small(), kv: [{ key: 'k'.repeat(1025), value: gguf.u32(1) }] }), Reason.KeyInvalid],
    ['key not UTF-8', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'abc', value: gguf.u32(1) }] }); b[24 + 8] = 0xff; return b; }, Reason.KeyInvalid],
    ['duplicate key', () => tinyWith((d) => d.kv.push({ key: 'general.name', value: gguf.str('again') })), Reason.DuplicateKey],
    ['unknown value type', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'k', value: gguf.u32(1) }] }); b.writeUInt32LE(13, 24 + 8 + 1); return b; }, Reason.ValueTypeUnknown],
    ['array of unknown type', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'k', value: gguf.i32s([1]) }] }); b.writeUInt32LE(99, 24 + 8 + 1 + 4); return b; }, Reason.ValueTypeUnknown],
    ['array of arrays', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'k', value: gguf.i32s([1]) }] }); b.writeUInt32LE(GgufValueType.ARRAY, 24 + 8 + 1 + 4); return b; }, Reason.ValueInvalid],
    ['bool that is neither 0 nor 1', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'k', value: gguf.bool(true) }] }); b[24 + 8 + 1 + 4] = 7; return b; }, Reason.ValueInvalid],
    ['string length beyond the file', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'k', value: gguf.str('abc') }] }); b.writeBigUInt64LE(10_000n, 24 + 8 + 1 + 4); return b; }, Reason.HeaderTruncated],
    ['string longer than the string bound', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'k', value: gguf.str('abc') }] }); b.writeBigUInt64LE(2n ** 60n, 24 + 8 + 1 + 4); return b; }, Reason.StringTooLong],
    ['string array with 2,000,001 items', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'k', value: gguf.strings(['a']) }] }); b.writeBigUInt64LE(2_000_001n, 24 + 8 + 1 + 4 + 4); return b; }, Reason.ArrayTooLong],
    ['numeric array count beyond the file', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'k', value: gguf.i32s([1, 2]) }] }); b.writeBigUInt64LE(1_000_000n, 24 + 8 + 1 + 4 + 4); return b; }, Reason.HeaderTruncated],
    ['numeric array count near 2^64', () => { const b = encodeGguf({ ...small(), kv: [{ key: 'k', value: gguf.i32s([1]) }] }); b.writeBigUInt64LE(2n ** 63n, 24 + 8 + 1 + 4 + 4); return b; }, Reason.ArrayTooLong],
    ['alignment not a power of two', () => tinyWith((d) => (d.kv.find((kv) => kv.key === 'general.alignment')!.value = gguf.u32(48))), Reason.AlignmentInvalid],
    ['alignment 8192', () => tinyWith((d) => (d.kv.find((kv) => kv.key === 'general.alignment')!.value = gguf.u32(8192))), Reason.AlignmentInvalid],
    ['alignment 0', () => tinyWith((d) => (d.kv.find((kv) => kv.key === 'general.alignment')!.value = gguf.u32(0))), Reason.AlignmentInvalid],
    ['alignment of the wrong type', () => tinyWith((d) => (d.kv.find((kv) => kv.key === 'general.alignment')!.value = gguf.u64(32))), Reason.AlignmentInvalid],
    ['empty tensor name', () => encodeGguf({ ...small(), tensors: [{ name: '', dims: [4], type: GgmlType.F32, data: Buffer.alloc(16) }] }), Reason.TensorNameInvalid],
    ['tensor name of 4097 bytes', () => encodeGguf({ ...small(), tensors: [{ name: 'n'.repeat(4097), dims: [4], type: GgmlType.F32, data: Buffer.alloc(16) }] }), Reason.TensorNameInvalid],
    ['duplicate tensor name', () => tinyWith((d) => (d.tensors[1]!.name = d.tensors[0]!.name)), Reason.DuplicateTensorName],
    ['rank 0', () => encodeGguf({ ...small(), tensors: [{ name: 'w', dims: [], type: GgmlType.F32, data: Buffer.alloc(4) }] }), Reason.TensorRankInvalid],
    ['rank 9', () => encodeGguf({ ...small(), tensors: [{ name: 'w', dims: [1, 1, 1, 1, 1, 1, 1, 1, 4], type: GgmlType.F32, data: Buffer.alloc(16) }] }), Reason.TensorRankInvalid],
    ['zero dimension', () => encodeGguf({ ...small(), tensors: [{ name: 'w', dims: [4, 0], type: GgmlType.F32, data: Buffer.alloc(16) }] }), Reason.TensorDimensionInvalid],
    ['dimensions whose product overflows 64 bits', () => encodeGguf({ ...small(), tensors: [{ name: 'w', dims: [2 ** 32, 2 ** 32, 2 ** 32], type: GgmlType.F32, data: Buffer.alloc(16) }] }), Reason.TensorTooLarge],
    ['dimension near 2^64', () => { const b = encodeGguf(small()); const at = header.headerBytes ? b.indexOf(Buffer.from('w')) + 1 + 4 : 0; b.writeBigUInt64LE(2n ** 64n - 1n, at); return b; }, Reason.TensorTooLarge],
    ['unknown ggml type', () => encodeGguf({ ...small(), tensors: [{ name: 'w', dims: [4], type: 5 as GgmlType, data: Buffer.alloc(16) }] }), Reason.TensorTypeUnknown],
    ['ggml type 1000', () => encodeGguf({ ...small(), tensors: [{ name: 'w', dims: [4], type: 1000 as GgmlType, data: Buffer.alloc(16) }] }), Reason.TensorTypeUnknown],
    ['Q8_0 row not a multiple of the block', () => encodeGguf({ ...small(), tensors: [{ name: 'w', dims: [33], type: GgmlType.Q8_0, data: Buffer.alloc(34) }] }), Reason.TensorShapeInvalid],
    ['tensor offset near 2^64', () => encodeGguf({ ...small(), tensors: [{ name: 'w', dims: [4], type: GgmlType.F32, data: Buffer.alloc(16), offset: 2n ** 64n - 32n }] }), Reason.TensorOutOfBounds],
  ];
  it.each(cases)('%s', (_name, build, reason) => {
    const bytes = build();
    const r = parseGgufHeader(bytes, bytes.length);
    if (r.status === 'ok') {
      expect(checkTensorLayout(r.header, bytes.length)?.reason).toBe(reason);
    } else {
      expect(r).toMatchObject({ status: 'invalid', reason });
    }
  });
});

describe('rejects tensor data that is not laid out exactly like llama.cpp expects', () => {
  const twoTensors = (change: (doc: GgufDocument) => void = () => undefined): Buffer => {
    const doc: GgufDocument = {
      version: 3,
      kv: [{ key: 'general.alignment', value: gguf.u32(32) }],
      tensors: [
        { name: 'a', dims: [8], type: GgmlType.F32, data: Buffer.alloc(32, 1) },
        { name: 'b', dims: [8], type: GgmlType.F32, data: Buffer.alloc(32, 2) },
      ],
    };
    change(doc);
    return encodeGguf(doc);
  };
  const layout = (bytes: Buffer) => checkTensorLayout(parseOk(bytes), bytes.length);
  /** Moves tensor b of the two-tensor file to `offset` in the header only. */
  const moveB = (offset: bigint, extra = 0): Buffer => {
    const bytes = twoTensors();
    const at = parseOk(bytes).headerBytes - 8;
    return Buffer.concat([u64At(bytes, at, offset), Buffer.alloc(extra)]);
  };

  it('accepts the well-formed file, with or without the last tensor padding', () => {
    expect(layout(twoTensors())).toBeUndefined();
    const doc: GgufDocument = { version: 3, kv: [], tensors: [{ name: 'a', dims: [3], type: GgmlType.F32, data: Buffer.alloc(12, 1) }] };
    const padded = encodeGguf(doc);
    expect(layout(padded)).toBeUndefined();
    expect(layout(padded.subarray(0, padded.length - 20))).toBeUndefined();
  });
  it.each([
    ['misaligned', () => moveB(40n), Reason.TensorMisaligned],
    ['overlapping', () => moveB(0n), Reason.TensorOverlap],
    ['starting past the end', () => moveB(64n), Reason.TensorOutOfBounds],
    ['with a gap before them', () => moveB(64n, 32), Reason.TensorGap],
    ['in another order than declared', () => { const b = moveB(0n); const a = parseOk(b).tensors[0]!; return u64At(b, parseOk(b).headerBytes - 8 - 8 - 4 - 8 - 4 - 1 - 8, 32n + BigInt(a.offset)); }, Reason.TensorGap],
  ] as const)('%s', (_name, build, reason) => {
    expect(layout(build())?.reason).toBe(reason);
  });
  it('truncated data and trailing data', () => {
    const bytes = twoTensors();
    expect(layout(bytes.subarray(0, bytes.length - 20))?.reason).toBe(Reason.DataTruncated);
    expect(layout(Buffer.concat([bytes, Buffer.alloc(32)]))?.reason).toBe(Reason.TrailingData);
  });
});

it('keeps its limits at the SecAI OS values', () => {
  expect(DEFAULT_GGUF_LIMITS).toMatchObject({ maxKeys: 10_000, maxTensors: 200_000, maxKeyBytes: 1024, maxStringArrayItems: 2_000_000, maxTensorNameBytes: 4096, maxRank: 8, maxAlignment: 4096 });
});
