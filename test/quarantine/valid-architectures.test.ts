// No false rejections: valid models of three architectures llama.cpp supports (llama, qwen2, gpt2),
// written by llama.cpp's own Python gguf writer the way converters write real checkpoints — norm
// gains of ones, biases of zeros (qwen2's q/k/v biases, every gpt2 bias and LayerNorm shift), F16
// embeddings and Q8_0 matrices — go through the agent's whole pipeline: the sandboxed
// one pass, the smoke test (llama.cpp loads each in the inference sandbox and answers) and
// promotion into the trusted store.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { ModelPlan } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { runCommand } from '../../agents/src/exec.js';
import { loadModelForSmokeTest } from '../../agents/src/inference/smoke-test-model.js';
import { isArrayRef, parseGgufHeader } from '../../agents/src/quarantine/gguf-parser.js';
import { quarantineModel } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { TrustedStore } from '../../agents/src/quarantine/trusted-store.js';
import { nodeSandbox } from '../inference/inference-fixtures.js';
import { pythonToolsBin } from './python-tools.js';

const ORACLE = resolve(import.meta.dirname, 'gguf_py_oracle.py');
let dir: string;
let files: string[];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'valid-architectures-'));
  files = execFileSync(join(pythonToolsBin(), 'python'), [ORACLE, 'architectures', dir], { encoding: 'utf8' }).trim().split('\n');
}, 600_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function architectureOf(bytes: Buffer): string {
  const parsed = parseGgufHeader(bytes, bytes.length);
  if (parsed.status !== 'ok') throw new Error('unparsable');
  const kv = parsed.header.metadata.find((m) => m.key === 'general.architecture');
  if (!kv || isArrayRef(kv.value)) throw new Error('no architecture');
  return String(kv.value);
}

/** Names of the F32 vectors whose values are all `value`. */
function constantVectors(bytes: Buffer, value: number): string[] {
  const parsed = parseGgufHeader(bytes, bytes.length);
  if (parsed.status !== 'ok') throw new Error('unparsable');
  const { tensors, dataOffset } = parsed.header;
  return tensors
    .filter((t) => t.type === 0 && t.dims.length === 1)
    .filter((t) => {
      const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + dataOffset + t.offset, bytes.byteOffset + dataOffset + t.offset + t.byteSize));
      return data.every((v) => v === value);
    })
    .map((t) => t.name);
}

it('writes llama, qwen2 and gpt2, with all-ones norms and all-zero biases', () => {
  const bytes = files.map((f) => readFileSync(f));
  expect(bytes.map(architectureOf)).toEqual(['llama', 'qwen2', 'gpt2']);
  expect(bytes.map((b) => constantVectors(b, 1).length)).toEqual([5, 5, 5]);
  expect(bytes.map((b) => constantVectors(b, 0).length)).toEqual([0, 6, 13]);
});

it.each(['llama', 'qwen2', 'gpt2'])('trusts the %s model: scanned, loaded and answered by llama.cpp, promoted', async (arch) => {
  const file = files.find((f) => basename(f) === `valid-${arch}.gguf`)!;
  const bytes = readFileSync(file);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const inbox = join(dir, `inbox-${arch}`);
  mkdirSync(inbox);
  copyFileSync(file, join(inbox, 'model.gguf'));
  const store = new TrustedStore(mkdtempSync(join(dir, `store-${arch}-`)));
  await store.init();
  const sandbox = await nodeSandbox();
  const plan = ModelPlan.fromPartial({ name: arch, url: pathToFileURL(join(inbox, 'model.gguf')).href, format: 'gguf', sha256, sizeBytes: bytes.length, quarantine: { smokeTest: true, smokeTestMaxScore: 0.3 } });
  const { verdict, manifest } = await quarantineModel(plan, DEFAULT_QUARANTINE_POLICY, {
    store,
    audit: new MemoryAuditSink(),
    sandbox: createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner }),
    clock: () => new Date(),
    logger: pino({ level: 'silent' }),
    openSmokeTestModel: (modelPath, digest) => loadModelForSmokeTest({ modelPath, sha256: digest, sandbox, maxTokens: 8 }),
  });
  expect(verdict.trusted ? 'trusted' : `${verdict.stage}: ${verdict.reason}: ${verdict.message}`).toBe('trusted');
  expect(verdict.stages.map((s) => `${s.stage}:${s.reason}`)).toEqual([
    'Fetch:Passed', 'Sandbox:Passed', 'Integrity:Passed', 'Signature:NotRequested', 'Format:Passed', 'StaticScan:Passed', 'SmokeTest:Passed', 'Promotion:Passed',
  ]);
  expect(manifest).toMatchObject({ sha256, name: arch });
}, 180_000);
