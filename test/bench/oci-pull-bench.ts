// Pull + quarantine of a 1 GiB GGUF from a local OCI registry (CNCF distribution on loopback, pushed
// by oras in Docker's model layout) against `openssl dgst -sha256` of the same file, side by side,
// alternating, the file warm in the page cache. The pull is the agent's: the manifest, the blob
// hashed while it streams into staging, then the sandboxed one pass (bubblewrap, a fresh Node).
//
//   npx tsx test/bench/oci-pull-bench.ts [rounds] [staging dir]
//
// The staging file is written to disk, so the pull is bounded by the disk's write speed, which
// openssl over a cached file never pays: a tmpfs staging dir (/dev/shm) shows the rest alone.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runCommand } from '../../agents/src/exec.js';
import { DOCKER_MODEL_CONFIG_TYPE, DOCKER_MODEL_GGUF } from '../../agents/src/quarantine/oci-source.js';
import { verifyArtifact } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { startRegistry } from '../quarantine/oci-registry.js';
import { gigabyteModelTensors, writeLargeGguf } from './quarantine-fixture.js';

const run = promisify(execFile);
const rounds = Number(process.argv[2] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'oci-pull-bench-'));
const registry = await startRegistry(dir);
try {
  const model = join(dir, 'model.gguf');
  await writeLargeGguf(model, gigabyteModelTensors());
  const sizeBytes = statSync(model).size;
  const sha256 = (await run('openssl', ['dgst', '-sha256', model])).stdout.trim().split('= ')[1]!;
  const digest = await registry.push('models/big', 'v1', { 'config.json': '{"config":{"format":"gguf"}}' }, ['--disable-path-validation', '--config', `config.json:${DOCKER_MODEL_CONFIG_TYPE}`], [`${model}:${DOCKER_MODEL_GGUF}`]);
  const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
  const staging = process.argv[3] ? mkdtempSync(join(process.argv[3], 'oci-pull-bench-staging-')) : join(dir, 'staging');
  const pull = async () => {
    const started = performance.now();
    const { results, staged } = await verifyArtifact({ source: { kind: 'oci', oci: { registry: registry.host, repository: 'models/big', digest, plainHttp: true } }, pin: { sha256, sizeBytes }, policy: DEFAULT_QUARANTINE_POLICY }, { sandbox, stagingDir: staging });
    const ms = performance.now() - started;
    const failedStage = results.find((r) => r.status === 'failed');
    if (failedStage) throw new Error(`${failedStage.stage}: ${failedStage.reason}: ${failedStage.message}`);
    if (staged) unlinkSync(staged.path);
    return ms;
  };
  const openssl = async () => {
    const started = performance.now();
    await run('openssl', ['dgst', '-sha256', model]);
    return performance.now() - started;
  };
  await pull();
  await openssl();
  const times = { pull: [] as number[], openssl: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    times.openssl.push(await openssl());
    times.pull.push(await pull());
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const mbps = (ms: number) => sizeBytes / 1e6 / (ms / 1000);
  const result = {
    sizeBytes,
    rounds,
    opensslMBps: Math.round(mbps(median(times.openssl))),
    pullQuarantineMBps: Math.round(mbps(median(times.pull))),
    ratio: Number((median(times.openssl) / median(times.pull)).toFixed(2)),
    runsMs: { openssl: times.openssl.map(Math.round), pull: times.pull.map(Math.round) },
    leftInStaging: readdirSync(staging).length,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await registry.stop();
  rmSync(dir, { recursive: true, force: true });
  if (process.argv[3]) for (const d of readdirSync(process.argv[3]).filter((n) => n.startsWith('oci-pull-bench-staging-'))) rmSync(join(process.argv[3], d), { recursive: true, force: true });
}
