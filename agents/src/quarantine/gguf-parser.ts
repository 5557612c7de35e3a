// A bounded GGUF v2/v3 header parser: pure, no dependencies, no recursion. Every count, length,
// dimension, rank, offset and the alignment read from the file has an explicit limit, because the
// GGUF parser CVEs of llama.cpp (CVE-2024-21802, -23605, -21836, the ggml_nbytes overflow family)
// all came from trusting one of them. Metadata arrays are not decoded while parsing — a 150k-token
// vocabulary is skipped by its length prefixes — and can be read on demand with readArrayItems.
// Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
import { GGML_TYPES } from './ggml-types.js';
import { Reason, type ReasonCode } from './verdict.js';

export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** Byte size of each fixed-size value type; STRING and ARRAY are absent. */
const SCALAR_SIZE: ReadonlyMap<number, number> = new Map([
  [GgufType.UINT8, 1],
  [GgufType.INT8, 1],
  [GgufType.UINT16, 2],
  [GgufType.INT16, 2],
  [GgufType.UINT32, 4],
  [GgufType.INT32, 4],
  [GgufType.FLOAT32, 4],
  [GgufType.BOOL, 1],
  [GgufType.UINT64, 8],
  [GgufType.INT64, 8],
  [GgufType.FLOAT64, 8],
]);

export interface GgufLimits {
  /** Header (metadata and tensor infos) size; a 256k-token vocabulary with merges is about 20 MiB. */
  maxHeaderBytes: number;
  /** SecAI OS: at most 10,000 metadata entries. */
  maxKeys: number;
  /** SecAI OS: 1 to 200,000 tensors. */
  maxTensors: number;
  /** SecAI OS: keys 1 to 1024 bytes. */
  maxKeyBytes: number;
  maxStringBytes: number;
  /** SecAI OS: string arrays of at most 2,000,000 items. */
  maxStringArrayItems: number;
  maxArrayItems: number;
  /** SecAI OS: tensor names of at most 4096 bytes. */
  maxTensorNameBytes: number;
  /** SecAI OS: rank 1 to 8. */
  maxRank: number;
  /** SecAI OS: general.alignment a power of two of at most 4096. */
  maxAlignment: number;
}

export const DEFAULT_GGUF_LIMITS: GgufLimits = {
  maxHeaderBytes: 128 * 1024 * 1024,
  maxKeys: 10_000,
  maxTensors: 200_000,
  maxKeyBytes: 1024,
  maxStringBytes: 16 * 1024 * 1024,
  maxStringArrayItems: 2_000_000,
  maxArrayItems: 64 * 1024 * 1024,
  maxTensorNameBytes: 4096,
  maxRank: 8,
  maxAlignment: 4096,
};

export const DEFAULT_ALIGNMENT = 32;
export const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32

export type GgufScalar = number | bigint | boolean | string;

/** An array left undecoded: where its items sit in the header bytes. */
export interface GgufArrayRef {
  itemType: number;
  count: number;
  /** Offset of the first item in the header bytes. */
  offset: number;
  byteLength: number;
}

export interface GgufKeyValue {
  key: string;
  type: number;
  value: GgufScalar | GgufArrayRef;
}

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] varies fastest. */
  dims: number[];
  type: number;
  typeName: string;
  /** Offset of the tensor data relative to the start of the data section. */
  offset: number;
  elements: number;
  byteSize: number;
}

export interface GgufHeader {
  version: number;
  metadata: GgufKeyValue[];
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Where the tensor infos end. */
  headerBytes: number;
  /** headerBytes aligned up: where the data section begins. */
  dataOffset: number;
}

export type GgufParse =
  | { status: 'ok'; header: GgufHeader }
  /** The header continues past the bytes given (but not past the file): call again with at least needBytes. */
  | { status: 'incomplete'; needBytes: number }
  | { status: 'invalid'; reason: ReasonCode; message: string; offset: number };

// Plain fields rather than parameter properties: the sandboxed scanner loads this file with
// Node's own type stripping, which accepts only erasable syntax.
class Invalid {
  readonly reason: ReasonCode;
  readonly message: string;
  readonly offset: number;

  constructor(reason: ReasonCode, message: string, offset: number) {
    this.reason = reason;
    this.message = message;
    this.offset = offset;
  }
}

class Incomplete {
  readonly needBytes: number;

  constructor(needBytes: number) {
    this.needBytes = needBytes;
  }
}

const TWO_32 = 4294967296;
const utf8Strict = new TextDecoder('utf-8', { fatal: true });
const utf8 = new TextDecoder('utf-8');

/** Reads little-endian values from the header bytes, knowing where the file ends. */
class Cursor {
  pos = 0;
  private readonly bytes: Uint8Array;
  private readonly fileSize: number;
  private readonly maxHeaderBytes: number;
  private readonly view: DataView;

  constructor(bytes: Uint8Array, fileSize: number, maxHeaderBytes: number) {
    this.bytes = bytes;
    this.fileSize = fileSize;
    this.maxHeaderBytes = maxHeaderBytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Ensures n more bytes are available, or says why not. */
  need(n: number, what: string): void {
    const end = this.pos + n;
    if (end <= this.bytes.length) return;
    if (end > this.fileSize) throw new Invalid(Reason.HeaderTruncated, `${what} at offset ${this.pos} runs past the end of the file (${this.fileSize} bytes)`, this.pos);
    if (end > this.maxHeaderBytes) throw new Invalid(Reason.HeaderTooLarge, `the header exceeds ${this.maxHeaderBytes} bytes at ${what}`, this.pos);
    throw new Incomplete(end);
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /**
   * A u64 as a number. Above 2^53 the number is rounded, which keeps every comparison with the
   * (much smaller) limits correct.
   */
  u64(what: string): number {
    this.need(8, what);
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    this.pos += 8;
    return hi * TWO_32 + lo;
  }

  scalar(type: number, what: string): GgufScalar {
    const size = SCALAR_SIZE.get(type) ?? 0;
    this.need(size, what);
    const at = this.pos;
    this.pos += size;
    const v = this.view;
    switch (type) {
      case GgufType.UINT8: return v.getUint8(at);
      case GgufType.INT8: return v.getInt8(at);
      case GgufType.UINT16: return v.getUint16(at, true);
      case GgufType.INT16: return v.getInt16(at, true);
      case GgufType.UINT32: return v.getUint32(at, true);
      case GgufType.INT32: return v.getInt32(at, true);
      case GgufType.FLOAT32: return v.getFloat32(at, true);
      case GgufType.UINT64: return v.getBigUint64(at, true);
      case GgufType.INT64: return v.getBigInt64(at, true);
      case GgufType.FLOAT64: return v.getFloat64(at, true);
      case GgufType.BOOL: {
        const b = v.getUint8(at);
        if (b > 1) throw new Invalid(Reason.ValueInvalid, `${what} is a bool with byte value ${b}`, at);
        return b === 1;
      }
      default: throw new Invalid(Reason.ValueTypeUnknown, `${what} has unknown type ${type}`, at);
    }
  }

  /** Length-prefixed bytes, checked against max before anything is read. */
  stringBytes(max: number, tooLong: ReasonCode, what: string): Uint8Array {
    const at = this.pos;
    const length = this.u64(`${what} length`);
    if (length > max) throw new Invalid(tooLong, `${what} is ${length} bytes, more than ${max}`, at);
    this.need(length, what);
    const out = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function readValue(c: Cursor, type: number, key: string, limits: GgufLimits): GgufScalar | GgufArrayRef {
  if (type === GgufType.STRING) return utf8.decode(c.stringBytes(limits.maxStringBytes, Reason.StringTooLong, `value of ${key}`));
  if (type !== GgufType.ARRAY) {
    if (!SCALAR_SIZE.has(type)) throw new Invalid(Reason.ValueTypeUnknown, `${key} has unknown value type ${type}`, c.pos - 4);
    return c.scalar(type, `value of ${key}`);
  }
  const itemType = c.u32(`item type of ${key}`);
  if (itemType === GgufType.ARRAY) throw new Invalid(Reason.ValueInvalid, `${key} is an array of arrays, which GGUF readers do not support`, c.pos - 4);
  if (itemType !== GgufType.STRING && !SCALAR_SIZE.has(itemType)) {
    throw new Invalid(Reason.ValueTypeUnknown, `${key} is an array of unknown type ${itemType}`, c.pos - 4);
  }
  const countAt = c.pos;
  const count = c.u64(`item count of ${key}`);
  const max = itemType === GgufType.STRING ? limits.maxStringArrayItems : limits.maxArrayItems;
  if (count > max) throw new Invalid(Reason.ArrayTooLong, `${key} has ${count} items, more than ${max}`, countAt);
  const offset = c.pos;
  if (itemType === GgufType.STRING) {
    for (let i = 0; i < count; i++) c.stringBytes(limits.maxStringBytes, Reason.StringTooLong, `item ${i} of ${key}`);
  } else {
    const size = (SCALAR_SIZE.get(itemType) ?? 1) * count;
    c.need(size, `items of ${key}`);
    if (itemType === GgufType.BOOL) {
      for (let i = 0; i < count; i++) c.scalar(GgufType.BOOL, `item ${i} of ${key}`);
    } else {
      c.pos += size;
    }
  }
  return { itemType, count, offset, byteLength: c.pos - offset };
}

/**
 * Parses the header from a prefix of the file. `bytes` may be shorter than the header; the
 * answer is then `incomplete` with the number of bytes needed (never more than maxHeaderBytes).
 */
export function parseGgufHeader(bytes: Uint8Array, fileSize: number, limits: GgufLimits = DEFAULT_GGUF_LIMITS): GgufParse {
  const c = new Cursor(bytes, fileSize, limits.maxHeaderBytes);
  try {
    const magic = c.u32('magic');
    if (magic !== GGUF_MAGIC) return { status: 'invalid', reason: Reason.BadMagic, message: 'the file does not start with the GGUF magic', offset: 0 };
    const version = c.u32('version');
    if (version !== 2 && version !== 3) return { status: 'invalid', reason: Reason.UnsupportedVersion, message: `GGUF version ${version} is not supported (2 or 3)`, offset: 4 };
    const tensorCount = c.u64('tensor count');
    if (tensorCount > limits.maxTensors) throw new Invalid(Reason.TooManyTensors, `${tensorCount} tensors, more than ${limits.maxTensors}`, 8);
    if (tensorCount === 0) throw new Invalid(Reason.NoTensors, 'the file declares no tensors', 8);
    const kvCount = c.u64('metadata count');
    if (kvCount > limits.maxKeys) throw new Invalid(Reason.TooManyKeys, `${kvCount} metadata entries, more than ${limits.maxKeys}`, 16);

    const metadata: GgufKeyValue[] = [];
    const keys = new Set<string>();
    let alignment = DEFAULT_ALIGNMENT;
    for (let i = 0; i < kvCount; i++) {
      const keyAt = c.pos;
      const keyBytes = c.stringBytes(limits.maxKeyBytes, Reason.KeyInvalid, `key ${i}`);
      if (keyBytes.length === 0) throw new Invalid(Reason.KeyInvalid, `key ${i} is empty`, keyAt);
      let key: string;
      try {
        key = utf8Strict.decode(keyBytes);
      } catch {
        throw new Invalid(Reason.KeyInvalid, `key ${i} is not valid UTF-8`, keyAt);
      }
      if (keys.has(key)) throw new Invalid(Reason.DuplicateKey, `key ${key} appears twice`, keyAt);
      keys.add(key);
      const type = c.u32(`type of ${key}`);
      const value = readValue(c, type, key, limits);
      if (key === 'general.alignment') {
        if (type !== GgufType.UINT32) throw new Invalid(Reason.AlignmentInvalid, `general.alignment has type ${type}, not uint32`, keyAt);
        if (!isPowerOfTwo(value as number) || (value as number) > limits.maxAlignment) {
          throw new Invalid(Reason.AlignmentInvalid, `general.alignment ${String(value)} is not a power of two of at most ${limits.maxAlignment}`, keyAt);
        }
        alignment = value as number;
      }
      metadata.push({ key, type, value });
    }

    const tensors: GgufTensorInfo[] = [];
    const names = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      const nameAt = c.pos;
      const nameBytes = c.stringBytes(limits.maxTensorNameBytes, Reason.TensorNameInvalid, `name of tensor ${i}`);
      let name: string;
      try {
        name = utf8Strict.decode(nameBytes);
      } catch {
        throw new Invalid(Reason.TensorNameInvalid, `the name of tensor ${i} is not valid UTF-8`, nameAt);
      }
      if (name.length === 0) throw new Invalid(Reason.TensorNameInvalid, `tensor ${i} has an empty name`, nameAt);
      if (names.has(name)) throw new Invalid(Reason.DuplicateTensorName, `tensor name ${name} appears twice`, nameAt);
      names.add(name);
      const rankAt = c.pos;
      const rank = c.u32(`rank of ${name}`);
      if (rank < 1 || rank > limits.maxRank) throw new Invalid(Reason.TensorRankInvalid, `tensor ${name} has rank ${rank} (1 to ${limits.maxRank})`, rankAt);
      const dims: number[] = [];
      let elements = 1;
      for (let d = 0; d < rank; d++) {
        const dimAt = c.pos;
        const dim = c.u64(`dimension ${d} of ${name}`);
        if (dim === 0) throw new Invalid(Reason.TensorDimensionInvalid, `tensor ${name} has a zero dimension`, dimAt);
        elements *= dim;
        // Checked per dimension so the product never leaves the exact range of a double.
        if (elements > fileSize * 8) throw new Invalid(Reason.TensorTooLarge, `tensor ${name} has more elements than the file could hold`, dimAt);
        dims.push(dim);
      }
      const typeAt = c.pos;
      const type = c.u32(`type of ${name}`);
      const info = GGML_TYPES.get(type);
      if (!info) throw new Invalid(Reason.TensorTypeUnknown, `tensor ${name} has unknown ggml type ${type}`, typeAt);
      if ((dims[0] ?? 0) % info.blockSize !== 0) {
        throw new Invalid(Reason.TensorShapeInvalid, `tensor ${name}: first dimension ${dims[0]} is not a multiple of the ${info.name} block size ${info.blockSize}`, typeAt);
      }
      const byteSize = (elements / info.blockSize) * info.typeSize;
      if (byteSize > fileSize) throw new Invalid(Reason.TensorTooLarge, `tensor ${name} needs ${byteSize} bytes, more than the file holds`, typeAt);
      const offsetAt = c.pos;
      const offset = c.u64(`offset of ${name}`);
      if (offset > fileSize) throw new Invalid(Reason.TensorOutOfBounds, `tensor ${name} starts at ${offset}, past the end of the file`, offsetAt);
      tensors.push({ name, dims, type, typeName: info.name, offset, elements, byteSize });
    }
    const headerBytes = c.pos;
    return { status: 'ok', header: { version, metadata, tensors, alignment, headerBytes, dataOffset: alignUp(headerBytes, alignment) } };
  } catch (e) {
    if (e instanceof Invalid) return { status: 'invalid', reason: e.reason, message: e.message, offset: e.offset };
    if (e instanceof Incomplete) return { status: 'incomplete', needBytes: e.needBytes };
    throw e;
  }
}

export interface LayoutProblem {
  reason: ReasonCode;
  message: string;
}

/**
 * Checks where the tensor data lies, as llama.cpp's gguf.cpp requires: each tensor aligned, inside
 * the data section, no overlaps, laid out contiguously in declaration order, and the data section
 * exactly as long as the padded tensors (the last tensor's padding may be absent). Anything else
 * is room to hide bytes the model never uses.
 */
export function checkTensorLayout(header: GgufHeader, fileSize: number): LayoutProblem | undefined {
  const { alignment, dataOffset, tensors } = header;
  if (dataOffset > fileSize) return { reason: Reason.DataTruncated, message: `the data section would start at ${dataOffset}, past the end of the file (${fileSize})` };
  const dataSize = fileSize - dataOffset;
  for (const t of tensors) {
    if (t.offset % alignment !== 0) return { reason: Reason.TensorMisaligned, message: `tensor ${t.name} at offset ${t.offset} is not aligned to ${alignment}` };
    if (t.offset >= dataSize) return { reason: Reason.TensorOutOfBounds, message: `tensor ${t.name} starts at ${t.offset}, past the data section (${dataSize} bytes)` };
  }
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (prev.offset + prev.byteSize > cur.offset) return { reason: Reason.TensorOverlap, message: `tensors ${prev.name} and ${cur.name} overlap` };
  }
  let expected = 0;
  for (const t of tensors) {
    if (t.offset !== expected) {
      return { reason: Reason.TensorGap, message: `tensor ${t.name} is at offset ${t.offset}, expected ${expected}: tensor data must be contiguous in declaration order` };
    }
    expected += alignUp(t.byteSize, alignment);
  }
  const last = tensors[tensors.length - 1];
  const lastPadding = last ? alignUp(last.byteSize, alignment) - last.byteSize : 0;
  // A tensor that starts inside the data section but ends past it means the file was cut short.
  if (dataSize < expected - lastPadding) return { reason: Reason.DataTruncated, message: `the data section has ${dataSize} bytes, the tensors need ${expected - lastPadding}` };
  if (dataSize > expected) return { reason: Reason.TrailingData, message: `${dataSize - expected} bytes follow the last tensor` };
  return undefined;
}

/** Decodes the items of an array from the header bytes it was parsed from. */
export function readArrayItems(bytes: Uint8Array, array: GgufArrayRef): GgufScalar[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const items: GgufScalar[] = [];
  let pos = array.offset;
  for (let i = 0; i < array.count; i++) {
    if (array.itemType === GgufType.STRING) {
      const length = Number(view.getBigUint64(pos, true));
      items.push(utf8.decode(bytes.subarray(pos + 8, pos + 8 + length)));
      pos += 8 + length;
      continue;
    }
    const size = SCALAR_SIZE.get(array.itemType) ?? 1;
    switch (array.itemType) {
      case GgufType.UINT8: items.push(view.getUint8(pos)); break;
      case GgufType.INT8: items.push(view.getInt8(pos)); break;
      case GgufType.UINT16: items.push(view.getUint16(pos, true)); break;
      case GgufType.INT16: items.push(view.getInt16(pos, true)); break;
      case GgufType.UINT32: items.push(view.getUint32(pos, true)); break;
      case GgufType.INT32: items.push(view.getInt32(pos, true)); break;
      case GgufType.FLOAT32: items.push(view.getFloat32(pos, true)); break;
      case GgufType.BOOL: items.push(view.getUint8(pos) === 1); break;
      case GgufType.UINT64: items.push(view.getBigUint64(pos, true)); break;
      case GgufType.INT64: items.push(view.getBigInt64(pos, true)); break;
      case GgufType.FLOAT64: items.push(view.getFloat64(pos, true)); break;
    }
    pos += size;
  }
  return items;
}

/** Strings of a metadata value: the string itself, or the items of a string array. */
export function metadataStrings(bytes: Uint8Array, kv: GgufKeyValue): string[] {
  if (typeof kv.value === 'string') return [kv.value];
  if (typeof kv.value === 'object' && kv.value.itemType === GgufType.STRING) return readArrayItems(bytes, kv.value) as string[];
  return [];
}

export function isArrayRef(value: GgufKeyValue['value']): value is GgufArrayRef {
  return typeof value === 'object' && value !== null && typeof value !== 'bigint';
}
