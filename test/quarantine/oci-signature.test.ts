// cosign-signed OCI model artifacts against a real registry (CNCF distribution on loopback), pushed
// with oras and signed with the real `cosign sign --key` (v3 default bundle format, no transparency
// log, no signing config): a Model that requires the signature is pulled only when a sigstore bundle
// referring to its manifest is signed by its key; unsigned, signed by another key, and a signature
// over another manifest are each refused at Fetch with their own reason, before the model blob is
// pulled, with nothing left in staging.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { ModelPlan } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { runCommand } from '../../agents/src/exec.js';
import { DOCKER_MODEL_CONFIG_TYPE, DOCKER_MODEL_GGUF, type OciModelSource } from '../../agents/src/quarantine/oci-source.js';
import { quarantineModel, verifyArtifact } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { TrustedStore } from '../../agents/src/quarantine/trusted-store.js';
import { tinyModelBytes } from '../support/tiny-model.js';
import { startRegistry, type TestRegistry } from './oci-registry.js';

const run = promisify(execFile);
const COSIGN = process.env.TEST_ASSET_COSIGN ?? resolve(import.meta.dirname, '../../hack/bin/cosign');
const ORAS = process.env.TEST_ASSET_ORAS ?? resolve(import.meta.dirname, '../../hack/bin/oras');

let dir: string;
let registry: TestRegistry;
const digests: Record<string, string> = {};
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const model = tinyModelBytes();
const env = { ...process.env, COSIGN_PASSWORD: '', HOME: '' };

async function cosign(args: string[], cwd: string): Promise<void> {
  await run(COSIGN, args, { cwd, env: { ...env, HOME: cwd }, timeout: 120_000 });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'oci-signature-'));
  registry = await startRegistry(dir);
  for (const name of ['ours', 'theirs']) {
    mkdirSync(join(dir, name));
    await cosign(['generate-key-pair'], join(dir, name));
  }
  const push = (tag: string, note: string) =>
    registry.push('models/tiny', tag, { 'model.gguf': model, 'config.json': Buffer.from(`{"config":{"format":"gguf"},"note":"${note}"}`) }, ['--config', `config.json:${DOCKER_MODEL_CONFIG_TYPE}`], [`model.gguf:${DOCKER_MODEL_GGUF}`]);
  for (const tag of ['signed', 'other-key', 'unsigned', 'borrowed']) digests[tag] = await push(tag, tag);
  const sign = (key: string, digest: string) => cosign(['sign', '--key', join(dir, key, 'cosign.key'), '--tlog-upload=false', '--use-signing-config=false', '--allow-http-registry', '-y', `${registry.host}/models/tiny@${digest}`], join(dir, key));
  await sign('ours', digests.signed!);
  await sign('theirs', digests['other-key']!);
  // The signature of another manifest put where cosign looks for this one's: its sha256- tag.
  await run(ORAS, ['tag', '--plain-http', `${registry.host}/models/tiny:sha256-${digests.signed!.slice(7)}`, `sha256-${digests.borrowed!.slice(7)}`], { timeout: 60_000 });
}, 300_000);

afterAll(async () => {
  await registry?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function pull(tag: string, requireSignature = false) {
  const staging = join(dir, 'staging');
  mkdirSync(staging, { recursive: true });
  const oci: OciModelSource = { registry: registry.host, repository: 'models/tiny', digest: digests[tag]!, plainHttp: true, cosignPublicKeyPem: readFileSync(join(dir, 'ours/cosign.pub'), 'utf8') };
  const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
  const requested: string[] = [];
  const { results, staged } = await verifyArtifact(
    { source: { kind: 'oci', oci }, pin: { sha256: sha256(model) }, policy: { ...DEFAULT_QUARANTINE_POLICY, requireSignature } },
    { sandbox, stagingDir: staging, allowDestination: (url) => (requested.push(url.pathname), true) },
  );
  if (staged?.owned) rmSync(staged.path);
  const left = readdirSync(staging);
  return { results, left, blobPulled: requested.includes(`/v2/models/tiny/blobs/sha256:${sha256(model)}`) };
}

it('pulls a manifest cosign-signed by the Model\'s key, the signature standing for the Signature stage', async () => {
  const { results, blobPulled } = await pull('signed', true);
  expect(results.map((r) => `${r.stage}: ${r.reason}`)).toEqual(expect.arrayContaining(['Fetch: Passed', 'Signature: Passed']));
  expect(results.filter((r) => r.status === 'failed')).toEqual([]);
  expect(results[0]!.details).toMatchObject({ cosignSigned: true, layout: 'docker-model' });
  expect(blobPulled).toBe(true);
}, 120_000);

it.each([
  ['signed by another key', 'other-key', 'Fetch: KeyMismatch'],
  ['not signed', 'unsigned', 'Fetch: OciSignatureMissing'],
  ['carrying the signature of another manifest', 'borrowed', 'Fetch: DigestNotSigned'],
])('refuses a manifest %s before the model blob is pulled', async (_name, tag, expected) => {
  const { results, left, blobPulled } = await pull(tag);
  expect(`${results[0]!.stage}: ${results[0]!.reason}`).toBe(expected);
  expect(results).toHaveLength(1);
  expect({ left, blobPulled }).toEqual({ left: [], blobPulled: false });
}, 120_000);

describe('the agent, from a plan whose Model requires the registry signature (spec.signature.bundle.oci)', () => {
  async function quarantine(tag: string, signature: Partial<NonNullable<ModelPlan['signature']>>) {
    const store = new TrustedStore(mkdtempSync(join(dir, `store-${tag}-`)));
    await store.init();
    const plan = ModelPlan.fromPartial({ name: tag, format: 'gguf', sha256: sha256(model), allowInsecureHttp: true, oci: { registry: registry.host, repository: 'models/tiny', digest: digests[tag]! }, signature });
    const deps = { store, audit: new MemoryAuditSink(), sandbox: createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner }), clock: () => new Date(), logger: pino({ level: 'silent' }) };
    const { verdict } = await quarantineModel(plan, { ...DEFAULT_QUARANTINE_POLICY, requireSignature: true }, deps);
    return verdict.trusted ? 'trusted' : `${verdict.stage}: ${verdict.reason}`;
  }
  const key = () => readFileSync(join(dir, 'ours/cosign.pub'), 'utf8');

  it('trusts the signed manifest; refuses the unsigned one, another key, and an OCI signature without a key', async () => {
    expect(await quarantine('signed', { ociCosign: true, publicKeyPem: key() })).toBe('trusted');
    expect(await quarantine('unsigned', { ociCosign: true, publicKeyPem: key() })).toBe('Fetch: OciSignatureMissing');
    expect(await quarantine('other-key', { ociCosign: true, publicKeyPem: key() })).toBe('Fetch: KeyMismatch');
    expect(await quarantine('signed', { ociCosign: true })).toBe('Fetch: SignaturePolicyInvalid');
    // Without the OCI signature required, an unsigned manifest under a node that requires signatures is not trusted.
    expect(await quarantine('unsigned', {})).toBe('Signature: SignatureRequired');
  }, 120_000);
});
