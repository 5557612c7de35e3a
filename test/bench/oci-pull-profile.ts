// Where the time of a 1 GiB OCI pull goes, phase by phase, against one local registry (the setup of
// oci-pull-bench.ts): curl into /dev/null; Node's HTTP client receiving only, then hashing, then
// writing as fetch.ts does (fetchToStaging, the blob digest checked); the sandboxed one pass alone
// over the staged file; the whole verifyArtifact; and openssl over the cached file. Milliseconds, the
// best of `rounds`, and the load average before each phase.
//
//   npx tsx test/bench/oci-pull-profile.ts [rounds] [staging dir]
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runCommand } from '../../agents/src/exec.js';
import { fetchToStaging } from '../../agents/src/quarantine/fetch.js';
import { DOCKER_MODEL_CONFIG_TYPE, DOCKER_MODEL_GGUF } from '../../agents/src/quarantine/oci-source.js';
import { verifyArtifact } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { SCANNER_PROTOCOL_VERSION } from '../../agents/src/quarantine/scanner-protocol.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { startRegistry } from '../quarantine/oci-registry.js';
import { gigabyteModelTensors, writeLargeGguf } from './quarantine-fixture.js';

const run = promisify(execFile);
const rounds = Number(process.argv[2] ?? 2);
const dir = mkdtempSync(join(tmpdir(), 'oci-pull-profile-'));
const registry = await startRegistry(dir);
const staging = process.argv[3] ? mkdtempSync(join(process.argv[3], 'oci-pull-profile-staging-')) : join(dir, 'staging');
try {
  const model = join(dir, 'model.gguf');
  await writeLargeGguf(model, gigabyteModelTensors());
  const sizeBytes = statSync(model).size;
  const sha256 = (await run('openssl', ['dgst', '-sha256', model])).stdout.trim().split('= ')[1]!;
  const digest = await registry.push('models/big', 'v1', { 'config.json': '{"config":{"format":"gguf"}}' }, ['--disable-path-validation', '--config', `config.json:${DOCKER_MODEL_CONFIG_TYPE}`], [`${model}:${DOCKER_MODEL_GGUF}`]);
  const blobUrl = `http://${registry.host}/v2/models/big/blobs/sha256:${sha256}`;
  const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
  const options = { ...DEFAULT_QUARANTINE_POLICY.fetch, maxBytes: sizeBytes, allowInsecureHttp: true, expectSha256: sha256 };

  const nodeGet = (hash: boolean) =>
    new Promise<number>((resolve, reject) => {
      http.get(blobUrl, (res) => {
        const h = hash ? createHash('sha256') : undefined;
        let n = 0;
        let chunks = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          chunks++;
          h?.update(c);
        });
        res.on('end', () => {
          if (h && h.digest('hex') !== sha256) reject(new Error('digest'));
          else resolve(n / chunks);
        });
        res.on('error', reject);
      }).on('error', reject);
    });
  let meanChunk = 0;
  const phases: Record<string, () => Promise<unknown>> = {
    openssl: () => run('openssl', ['dgst', '-sha256', model]),
    curl: () => run('curl', ['-s', '-o', '/dev/null', blobUrl]),
    nodeReceive: async () => (meanChunk = await nodeGet(false)),
    nodeReceiveHash: () => nodeGet(true),
    fetchToStaging: async () => {
      const got = await fetchToStaging(blobUrl, staging, options);
      if (!got.file) throw new Error(got.stage.message);
      unlinkSync(got.file.path);
    },
    sandboxScan: async () => {
      const job = { version: SCANNER_PROTOCOL_VERSION, artifactPath: model, pin: { sha256, sizeBytes }, blockedDigests: [], requireSignature: false };
      const { outcome, sandbox: stage } = await sandbox.scan(model, job, sizeBytes);
      if (!outcome) throw new Error(stage.message);
    },
    verifyArtifact: async () => {
      const { results, staged } = await verifyArtifact({ source: { kind: 'oci', oci: { registry: registry.host, repository: 'models/big', digest, plainHttp: true } }, pin: { sha256, sizeBytes }, policy: DEFAULT_QUARANTINE_POLICY }, { sandbox, stagingDir: staging });
      const failedStage = results.find((r) => r.status === 'failed');
      if (failedStage) throw new Error(`${failedStage.stage}: ${failedStage.message}`);
      if (staged) unlinkSync(staged.path);
    },
  };
  const only = process.env.PHASES?.split(',');
  for (const [name, phase] of Object.entries(phases)) {
    if (only && !only.includes(name)) continue;
    await phase();
    const ms: number[] = [];
    const load = loadavg()[0]!.toFixed(2);
    for (let i = 0; i < rounds; i++) {
      const started = performance.now();
      await phase();
      ms.push(Math.round(performance.now() - started));
    }
    const best = Math.min(...ms);
    process.stdout.write(`${name.padEnd(16)} best ${String(best).padStart(5)} ms  ${Math.round(sizeBytes / 1e3 / best)} MB/s  runs ${ms.join(',')}  load1 ${load}${name === 'nodeReceive' ? `  mean chunk ${Math.round(meanChunk)} B` : ''}\n`);
  }
} finally {
  await registry.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(staging, { recursive: true, force: true });
}
