// OCI model sources against a real registry (CNCF distribution, built from the Go module proxy) on
// loopback, with artifacts pushed by oras in the CNCF ModelPack and Docker model layouts: the GGUF
// layer is pulled by manifest digest and quarantined; a blob whose bytes the registry changed, an
// oversized or endless manifest, a manifest that is not the digest asked for, a redirect to another
// destination and a layer count over the limit are each refused at Fetch with their own reason,
// and nothing is left in staging. The sandboxed verdict pass follows the layer's download, and its
// outcome counts only for the file the download wrote and hashed.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runCommand } from '../../agents/src/exec.js';
import { verifyArtifact } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { createScannerSandbox, type ScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { DOCKER_MODEL_CONFIG_TYPE, DOCKER_MODEL_GGUF, MODELPACK_ARTIFACT_TYPE, MODELPACK_CONFIG_TYPE, MODELPACK_RAW_WEIGHT, type OciModelSource } from '../../agents/src/quarantine/oci-source.js';
import { tinyModelBytes } from '../support/tiny-model.js';
import { startRegistry, type TestRegistry } from './oci-registry.js';


const BIN = resolve(import.meta.dirname, '../../bin/secai-quarantine.mjs');

let dir: string;
let registry: TestRegistry;
let host: string;
let fake: http.Server;
let fakeHost: string;
const digests: Record<string, string> = {};
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const model = tinyModelBytes();
const other = tinyModelBytes(2);
const push = (tag: string, files: Record<string, Buffer>, args: string[], layers: string[]) => registry.push('models/tiny', tag, files, args, layers);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'oci-source-'));
  registry = await startRegistry(dir);
  host = registry.host;
  const config = Buffer.from('{"descriptor":{"name":"tiny"},"config":{"format":"gguf"},"modelfs":{"type":"layers","diffIds":[]}}');
  const annotations = (extra: Record<string, string> = {}) => Buffer.from(JSON.stringify({ 'model.gguf': { 'org.cncf.model.filepath': 'model.gguf' }, $manifest: extra }));
  const modelpack = ['--artifact-type', MODELPACK_ARTIFACT_TYPE, '--config', `config.json:${MODELPACK_CONFIG_TYPE}`, '--annotation-file', 'annotations.json'];
  digests.modelpack = await push('modelpack', { 'model.gguf': model, 'config.json': config, 'annotations.json': annotations() }, modelpack, [`model.gguf:${MODELPACK_RAW_WEIGHT}`]);
  digests.docker = await push('docker', { 'model.gguf': model, 'config.json': Buffer.from('{"config":{"format":"gguf"}}') }, ['--config', `config.json:${DOCKER_MODEL_CONFIG_TYPE}`], [`model.gguf:${DOCKER_MODEL_GGUF}`]);
  digests.tampered = await push('tampered', { 'model.gguf': other, 'config.json': config, 'annotations.json': annotations() }, modelpack, [`model.gguf:${MODELPACK_RAW_WEIGHT}`]);
  const blob = join(registry.storage, 'docker/registry/v2/blobs/sha256', sha256(other).slice(0, 2), sha256(other), 'data');
  const bytes = readFileSync(blob);
  bytes[bytes.length - 5]! ^= 0x20;
  writeFileSync(blob, bytes);
  digests.huge = await push('huge', { 'model.gguf': model, 'config.json': config, 'annotations.json': annotations({ padding: 'x'.repeat(1100 * 1024) }) }, modelpack, [`model.gguf:${MODELPACK_RAW_WEIGHT}`]);
  const many: Record<string, Buffer> = { 'model.gguf': model, 'config.json': config, 'annotations.json': annotations() };
  for (let i = 0; i < 65; i++) many[`extra-${i}.txt`] = Buffer.from(`file ${i}\n`);
  digests.many = await push('many', many, modelpack, [`model.gguf:${MODELPACK_RAW_WEIGHT}`, ...Object.keys(many).filter((f) => f.startsWith('extra-')).map((f) => `${f}:text/plain`)]);
  // A misbehaving "registry": an endless manifest, one that is not what was asked for, a redirect elsewhere.
  fake = http.createServer((req, res) => {
    if (req.url?.startsWith('/v2/endless/')) {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const write = () => { while (res.write(chunk)); };
      res.on('drain', write);
      write();
      req.on('close', () => res.destroy());
    } else if (req.url?.startsWith('/v2/wrong/')) {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end('{"schemaVersion":2}');
    } else {
      res.writeHead(307, { location: `http://${host}${req.url?.replace('/v2/away/', '/v2/models/tiny/')}` }).end();
    }
  });
  fake.listen(0, '127.0.0.1');
  await once(fake, 'listening');
  fakeHost = `127.0.0.1:${(fake.address() as AddressInfo).port}`;
}, 300_000);

afterAll(async () => {
  await registry?.stop();
  fake?.closeAllConnections();
  fake?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((done) => {
    execFile(realpathSync(process.execPath), [BIN, ...args], { timeout: 60_000 }, (error, stdout) => {
      done({ code: error ? Number((error as NodeJS.ErrnoException & { code: unknown }).code) : 0, stdout });
    });
  });
}

it.each(['modelpack', 'docker'])('pulls and trusts the GGUF of a %s artifact by manifest digest', async (layout) => {
  const { code, stdout } = await cli([`oci://${host}/models/tiny@${digests[layout]}`, '--sha256', sha256(model), '--allow-insecure-http', '--json']);
  const verdict = JSON.parse(stdout) as { trusted: boolean; stages: { stage: string; details?: Record<string, unknown> }[] };
  expect({ code, trusted: verdict.trusted }).toEqual({ code: 0, trusted: true });
  expect(verdict.stages[0]).toMatchObject({ stage: 'Fetch', details: { layout: layout === 'docker' ? 'docker-model' : 'modelpack', sizeBytes: model.length } });
  // The verdict pass ran while the layer downloaded, not after it.
  expect(verdict.stages[1]).toMatchObject({ stage: 'Sandbox', status: 'passed', message: expect.stringMatching(/as it was downloaded/) });
}, 60_000);

describe('the verdict pass that follows the download counts only for the file the download wrote', () => {
  const staging = () => join(dir, 'staging-followed');
  const real = () => createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
  async function pull(sandbox: ScannerSandbox, digest: string, pin: string) {
    mkdirSync(staging(), { recursive: true });
    const { results, staged } = await verifyArtifact({ source: { kind: 'oci', oci: { registry: host, repository: 'models/tiny', digest, plainHttp: true } }, pin: { sha256: pin }, policy: DEFAULT_QUARANTINE_POLICY }, { sandbox, stagingDir: staging(), followDownloads: true });
    if (staged) rmSync(staged.path);
    expect(readdirSync(staging())).toEqual([]);
    const failure = results.find((r) => r.status === 'failed');
    return { sandbox: results[1]?.message, failure: failure && `${failure.stage}: ${failure.reason}` };
  }

  it('a layer that passes both', async () => {
    expect(await pull(real(), digests.docker!, sha256(model))).toEqual({ sandbox: expect.stringMatching(/as it was downloaded/), failure: undefined });
  }, 60_000);

  it('a layer that matches its digest but not the scan is rejected by the scan', async () => {
    const notGguf = Buffer.from('not a model at all, but the bytes the manifest names\n'.repeat(100));
    const digest = await push('not-gguf', { 'model.gguf': notGguf, 'config.json': Buffer.from('{"config":{"format":"gguf"}}') }, ['--config', `config.json:${DOCKER_MODEL_CONFIG_TYPE}`], [`model.gguf:${DOCKER_MODEL_GGUF}`]);
    expect(await pull(real(), digest, sha256(notGguf))).toEqual({ sandbox: expect.stringMatching(/as it was downloaded/), failure: 'Format: BadMagic' });
  }, 60_000);

  it.each([
    ['the staged file changes after the download', 'changed' as const, 'Integrity: ArtifactChanged'],
    ['the scanner reports a digest other than the download\'s', 'digest' as const, 'Integrity: ArtifactChanged'],
  ])('%s', async (_name, tamper, expected) => {
    const inner = real();
    const sandbox: ScannerSandbox = {
      scan: inner.scan,
      tensorTree: inner.tensorTree,
      async scanFollowing(path, job, follow) {
        const scanned = await inner.scanFollowing!(path, job, follow);
        if (tamper === 'changed') appendFileSync(path, 'x');
        else if (scanned.outcome) scanned.outcome.facts.sha256 = 'f'.repeat(64);
        return scanned;
      },
    };
    expect((await pull(sandbox, digests.docker!, sha256(model))).failure).toBe(expected);
  }, 60_000);
});

describe('bad input, refused at Fetch with nothing left in staging', () => {
  const staging = () => join(dir, 'staging');
  async function pull(oci: OciModelSource, pin = sha256(model)) {
    mkdirSync(staging(), { recursive: true });
    const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
    // The same, whether the verdict pass follows the download (and is stopped) or would come after it.
    const verdicts = [];
    for (const followDownloads of [false, true]) {
      const { results } = await verifyArtifact({ source: { kind: 'oci', oci }, pin: { sha256: pin }, policy: DEFAULT_QUARANTINE_POLICY }, { sandbox, stagingDir: staging(), allowDestination: (url) => url.host !== `127.0.0.1:1`, followDownloads });
      expect(readdirSync(staging())).toEqual([]);
      verdicts.push(`${results[0]!.stage}: ${results[0]!.reason}`);
    }
    expect(verdicts[1]).toBe(verdicts[0]);
    return verdicts[0];
  }
  const at = (registry: string, repository: string, digest: string): OciModelSource => ({ registry, repository, digest, plainHttp: true });
  const any = `sha256:${'0'.repeat(64)}`;

  it.each([
    ['a blob whose bytes the registry changed', () => at(host, 'models/tiny', digests.tampered!), () => sha256(other), 'Fetch: BlobDigestMismatch'],
    ['an oversized manifest', () => at(host, 'models/tiny', digests.huge!), () => sha256(model), 'Fetch: ManifestTooLarge'],
    ['an endless manifest', () => at(fakeHost, 'endless/m', any), () => sha256(model), 'Fetch: ManifestTooLarge'],
    ['a manifest that is not the digest asked for', () => at(fakeHost, 'wrong/m', any), () => sha256(model), 'Fetch: ManifestDigestMismatch'],
    ['a redirect to another destination', () => at(fakeHost, 'away/m', digests.modelpack!), () => sha256(model), 'Fetch: RedirectNotAllowed'],
    ['a layer count over the limit', () => at(host, 'models/tiny', digests.many!), () => sha256(model), 'Fetch: TooManyLayers'],
    ['a GGUF layer that is not the pinned digest', () => at(host, 'models/tiny', digests.modelpack!), () => sha256(other), 'Fetch: LayerNotPinned'],
    ['a registry the egress policy does not allow', () => at('127.0.0.1:1', 'models/tiny', digests.modelpack!), () => sha256(model), 'Fetch: HostNotAllowed'],
  ])('%s', async (_name, source, pin, expected) => {
    expect(await pull(source(), pin())).toBe(expected);
  }, 60_000);
});
