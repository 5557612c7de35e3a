// Files written by llama.cpp's own Python gguf package: our parser agrees with gguf.GGUFReader on
// every key, value and tensor, the ggml type table matches GGML_QUANT_SIZES, and the sandboxed
// pipeline accepts the files. The package comes from PyPI, pinned, in the venv of
// hack/python-tools (python-tools.ts).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { runCommand } from '../../agents/src/exec.js';
import { GGML_TYPES } from '../../agents/src/quarantine/ggml-types.js';
import { checkTensorLayout, GgufType, isArrayRef, parseGgufHeader, readArrayItems, type GgufScalar } from '../../agents/src/quarantine/gguf-parser.js';
import { verifyArtifact } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { pythonToolsBin } from './python-tools.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const ORACLE = join(ROOT, 'test/quarantine/gguf_py_oracle.py');
let python: string;
let dir: string;
let files: string[];


async function oracle(...args: string[]): Promise<string> {
  return (await run(python, [ORACLE, ...args], { maxBuffer: 64 * 1024 * 1024 })).stdout;
}

beforeAll(async () => {
  python = join(pythonToolsBin(), 'python');
  dir = mkdtempSync(join(tmpdir(), 'gguf-py-'));
  files = (await oracle('write', dir)).trim().split('\n');
}, 360_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Our value in the oracle's JSON shape: 64-bit integers as decimal strings. */
function comparable(type: number, value: GgufScalar | GgufScalar[]): unknown {
  const convert = (v: GgufScalar) => (typeof v === 'bigint' ? v.toString() : v);
  return Array.isArray(value) ? value.map(convert) : convert(value);
}

interface OracleView {
  alignment: number;
  dataOffset: number;
  fields: Record<string, { type: number; itemType?: number; value: unknown }>;
  tensors: { name: string; type: number; shape: number[]; elements: number; bytes: number; dataOffset: number }[];
}

it('writes at least three models', () => {
  expect(files.length).toBeGreaterThanOrEqual(3);
});

it('agrees with gguf.GGUFReader on every key, value and tensor', async () => {
  for (const file of files) {
    const theirs = JSON.parse(await oracle('read', file)) as OracleView;
    const bytes = readFileSync(file);
    const parsed = parseGgufHeader(bytes, bytes.length);
    if (parsed.status !== 'ok') throw new Error(`${file}: ${JSON.stringify(parsed)}`);
    const h = parsed.header;
    expect(checkTensorLayout(h, bytes.length)).toBeUndefined();
    expect({ file, alignment: h.alignment, dataOffset: h.dataOffset }).toEqual({ file, alignment: theirs.alignment, dataOffset: theirs.dataOffset });
    const ours = Object.fromEntries(
      h.metadata.map((kv) => [
        kv.key,
        isArrayRef(kv.value)
          ? { type: GgufType.ARRAY, itemType: kv.value.itemType, value: comparable(kv.value.itemType, readArrayItems(bytes, kv.value)) }
          : { type: kv.type, value: comparable(kv.type, kv.value) },
      ]),
    );
    expect(ours).toEqual(theirs.fields);
    expect(h.tensors.map((t) => ({ name: t.name, type: t.type, shape: t.dims, elements: t.elements, bytes: t.byteSize, dataOffset: h.dataOffset + t.offset }))).toEqual(theirs.tensors);
  }
}, 60_000);

it('has the same ggml type table as llama.cpp', async () => {
  const theirs = JSON.parse(await oracle('types')) as Record<string, { name: string; blockSize: number; typeSize: number }>;
  expect(Object.fromEntries(GGML_TYPES)).toEqual(theirs);
});

it('accepts every file through the sandboxed pipeline', async () => {
  const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
  for (const file of files) {
    const bytes = readFileSync(file);
    const pin = { sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.length };
    const { results } = await verifyArtifact({ source: { kind: 'file', path: file }, pin, policy: DEFAULT_QUARANTINE_POLICY }, { sandbox, stagingDir: join(dir, 'staging') });
    expect({ file, failed: results.filter((r) => r.status === 'failed') }).toEqual({ file, failed: [] });
  }
}, 60_000);
