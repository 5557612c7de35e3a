// Quarantine benchmarks, side by side in one run (the machine is shared and noisy):
// - the verdict pass over a 1 GiB GGUF against `openssl dgst -sha256` on the same file,
//   interleaved (openssl, sandboxed pass, openssl, in-process pass, ...) after a warm-up read, and
//   compared by medians: the sandboxed pass as the agent runs it (bwrap, Node start-up, the one
//   pass, the verdicts) and the same pass in this process;
// - the tensor-tree job that runs before promotion, sandboxed, for the end-to-end time;
// - the header parse of a 150,000-token vocabulary (tokens, scores, types and 150,000 merges).
// The 1 GiB file is written to a temporary directory and deleted afterwards.
//   npx tsx test/bench/quarantine-bench.ts [rounds]
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { runCommand } from '../../agents/src/exec.js';
import { parseGgufHeader } from '../../agents/src/quarantine/gguf-parser.js';
import { scanArtifact } from '../../agents/src/quarantine/one-pass-scan.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { SCANNER_PROTOCOL_VERSION } from '../../agents/src/quarantine/scanner-protocol.js';
import { computeTensorTree } from '../../agents/src/quarantine/tensor-tree.js';
import { encodeGguf, GgmlType, gguf } from '../support/gguf-writer.js';
import { gigabyteModelTensors, writeLargeGguf } from './quarantine-fixture.js';

const run = promisify(execFile);

export interface ThroughputResult {
  sizeBytes: number;
  rounds: number;
  /** 1, 5 and 15 minute load averages before and after (2 cores). */
  loadAverage: { before: number[]; after: number[] };
  /** Every run, in the order run. */
  runsMs: { openssl: number[]; sandboxed: number[]; inProcess: number[]; tensorTree: number[] };
  medianMs: { openssl: number; sandboxed: number; inProcess: number; tensorTree: number; endToEnd: number };
  /** Median openssl time over median verdict-pass time: the bar is 0.9. */
  ratio: { sandboxed: number; inProcess: number };
  MBps: { openssl: number; sandboxed: number; inProcess: number };
  /** CPU time of the in-process pass, all threads, per GiB (median). */
  inProcessCpuSecondsPerGiB: number;
  verdicts: string[];
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function timed<T>(action: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await action();
  return { ms: performance.now() - started, value };
}

export async function measureThroughput(rounds = 7): Promise<ThroughputResult> {
  const dir = mkdtempSync(join(tmpdir(), 'quarantine-bench-'));
  try {
    const path = join(dir, 'model-1gib.gguf');
    await writeLargeGguf(path, gigabyteModelTensors());
    const sizeBytes = statSync(path).size;
    const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
    const openssl = async () => (await run('openssl', ['dgst', '-sha256', path])).stdout.trim().split('= ')[1] ?? '';
    const job = (sha256: string) => ({ version: SCANNER_PROTOCOL_VERSION, artifactPath: '', pin: { sha256, sizeBytes }, blockedDigests: [], requireSignature: false });

    // Warm-up: the file into the page cache, then one run of each (the scanner's code is prepared
    // on first use), checking that they agree.
    const digest = await openssl();
    const warm = await sandbox.scan(path, job(digest), sizeBytes);
    const local = await scanArtifact(path);
    if (local.sha256 !== digest || warm.outcome?.facts.sha256 !== digest) throw new Error(`digests differ: openssl ${digest}, in-process ${local.sha256}, sandboxed ${warm.outcome?.facts.sha256}`);
    const tree = await sandbox.tensorTree(path, sizeBytes);
    const localTree = await computeTensorTree(path);
    if (tree.outcome?.status !== 'ok' || tree.outcome.tensorMerkleRoot !== localTree.tensorMerkleRoot) throw new Error('the sandboxed tensor tree differs from the in-process one');

    const before = loadavg();
    const runsMs: ThroughputResult['runsMs'] = { openssl: [], sandboxed: [], inProcess: [], tensorTree: [] };
    const cpuPerGiB: number[] = [];
    const verdicts = new Set<string>();
    for (let round = 0; round < rounds; round++) {
      runsMs.openssl.push((await timed(openssl)).ms);
      const sandboxed = await timed(() => sandbox.scan(path, job(digest), sizeBytes));
      runsMs.sandboxed.push(sandboxed.ms);
      verdicts.add([sandboxed.value.sandbox.reason, ...(sandboxed.value.outcome?.stages.map((s) => `${s.stage}:${s.reason}`) ?? [])].join(' '));
      runsMs.openssl.push((await timed(openssl)).ms);
      const cpu = process.cpuUsage();
      runsMs.inProcess.push((await timed(() => scanArtifact(path))).ms);
      const used = process.cpuUsage(cpu);
      cpuPerGiB.push((used.user + used.system) / 1e6 / (sizeBytes / 1024 ** 3));
      runsMs.tensorTree.push((await timed(() => sandbox.tensorTree(path, sizeBytes))).ms);
    }
    const after = loadavg();
    const m = { openssl: median(runsMs.openssl), sandboxed: median(runsMs.sandboxed), inProcess: median(runsMs.inProcess), tensorTree: median(runsMs.tensorTree) };
    const round = (x: number, digits = 0) => Number(x.toFixed(digits));
    const mbps = (ms: number) => Math.round(sizeBytes / 1e6 / (ms / 1000));
    return {
      sizeBytes,
      rounds,
      loadAverage: { before: before.map((x) => round(x, 2)), after: after.map((x) => round(x, 2)) },
      runsMs: { openssl: runsMs.openssl.map((x) => round(x)), sandboxed: runsMs.sandboxed.map((x) => round(x)), inProcess: runsMs.inProcess.map((x) => round(x)), tensorTree: runsMs.tensorTree.map((x) => round(x)) },
      medianMs: { openssl: round(m.openssl), sandboxed: round(m.sandboxed), inProcess: round(m.inProcess), tensorTree: round(m.tensorTree), endToEnd: round(median(runsMs.sandboxed.map((v, i) => v + runsMs.tensorTree[i]!))) },
      ratio: { sandboxed: round(m.openssl / m.sandboxed, 3), inProcess: round(m.openssl / m.inProcess, 3) },
      MBps: { openssl: mbps(m.openssl), sandboxed: mbps(m.sandboxed), inProcess: mbps(m.inProcess) },
      inProcessCpuSecondsPerGiB: round(median(cpuPerGiB), 2),
      verdicts: [...verdicts],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Deterministic token-like strings: ASCII words, byte tokens and multi-byte UTF-8 pieces. */
function vocabulary(count: number): string[] {
  const pieces = ['the', 'ing', 'tion', 'er', 'Ġ', 'Ċ', 'ä', 'ß', '的', '🙂', 'http', '::', '_', 'Token'];
  const tokens: string[] = [];
  let x = 12345;
  for (let i = 0; i < count; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    tokens.push(`${pieces[x % pieces.length]}${pieces[(x >>> 8) % pieces.length]}${i.toString(36)}`);
  }
  return tokens;
}

export interface HeaderParseResult {
  tokens: number;
  headerBytes: number;
  runsMs: number[];
  medianMs: number;
}

export function measureVocabularyParse(tokens = 150_000, runs = 7): HeaderParseResult {
  const words = vocabulary(tokens);
  const bytes = encodeGguf({
    version: 3,
    kv: [
      { key: 'general.architecture', value: gguf.str('llama') },
      { key: 'tokenizer.ggml.model', value: gguf.str('gpt2') },
      { key: 'tokenizer.ggml.tokens', value: gguf.strings(words) },
      { key: 'tokenizer.ggml.scores', value: gguf.f32s(words.map((_, i) => -i)) },
      { key: 'tokenizer.ggml.token_type', value: gguf.i32s(words.map(() => 1)) },
      { key: 'tokenizer.ggml.merges', value: gguf.strings(words.map((w, i) => `${w} ${words[(i * 7) % words.length]}`)) },
    ],
    tensors: [{ name: 'token_embd.weight', dims: [32], type: GgmlType.F32, data: Buffer.alloc(128) }],
  });
  const runsMs: number[] = [];
  let headerBytes = 0;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const parsed = parseGgufHeader(bytes, bytes.length);
    runsMs.push(performance.now() - started);
    if (parsed.status !== 'ok') throw new Error('the vocabulary header does not parse');
    headerBytes = parsed.header.headerBytes;
  }
  const sorted = [...runsMs].sort((a, b) => a - b);
  return { tokens, headerBytes, runsMs: runsMs.map((ms) => Number(ms.toFixed(1))), medianMs: Number(sorted[Math.floor(sorted.length / 2)]!.toFixed(1)) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const header = measureVocabularyParse();
  const throughput = await measureThroughput(Number(process.argv[2] ?? 7));
  process.stdout.write(`${JSON.stringify({ header, throughput }, null, 2)}\n`);
}
