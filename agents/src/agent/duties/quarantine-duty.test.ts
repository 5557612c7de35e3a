// The model duty with real parts (a loopback HTTP source, the bubblewrap scanner, the trusted store
// on disk): a plan model is quarantined in the background and becomes servable; a digest that does
// not match is rejected once and not retried; a fetch that failed is retried when a new plan comes;
// a revoked digest is contained and never served again; a model the plan drops leaves the store.
// And the store stays honest: a trusted file that changes or goes is suspended at once, hashed
// again, and served again only if it still matches, else quarantined afresh from its source.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { DutyStatus, ModelState, NodePlan, type ModelPlan, type Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DriftKind } from '../../../../api/proto/duty-results.js';
import { tinyModelBytes } from '../../../../test/support/tiny-model.js';
import { MemoryAuditSink } from '../../audit/audit-sink.js';
import { runCommand } from '../../exec.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../quarantine/policy.js';
import { createScannerSandbox } from '../../quarantine/scanner-sandbox.js';
import { TrustedStore } from '../../quarantine/trusted-store.js';
import { recordingDutyContext } from '../../../../test/support/duty-context.js';
import { QuarantineDuty } from './quarantine-duty.js';

const model = tinyModelBytes();
const sha256 = createHash('sha256').update(model).digest('hex');
let dir: string;
let server: http.Server;
let base: string;
let serving = true;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'model-duty-'));
  server = http.createServer((req, res) => {
    if (!serving || req.url !== '/tiny.gguf') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': model.length }).end(model);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

function duty(storeDir: string, options: { rehashMs?: number } = {}) {
  const audit = new MemoryAuditSink();
  const events = { trustChanged: 0 };
  const store = new TrustedStore(storeDir);
  const d = new QuarantineDuty({
    deps: {
      store,
      sandbox: createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner }),
      audit,
      clock: () => new Date(),
      logger: pino({ level: 'silent' }),
    },
    nodePolicy: DEFAULT_QUARANTINE_POLICY,
    audit,
    logger: pino({ level: 'silent' }),
    trustChanged: () => events.trustChanged++,
    watch: false,
    ...options,
  });
  const recorded = recordingDutyContext();
  const converge = (p: NodePlan) => d.converge(p, recorded.ctx);
  return { d, audit, events, store, converge, drifts: recorded.drifts };
}

function modelPlan(name: string, over: Partial<ModelPlan> = {}): ModelPlan {
  return { name, url: `${base}/tiny.gguf`, revision: '', format: 'gguf', sha256, sizeBytes: model.length, allowInsecureHttp: true, ...over };
}

function plan(generation: number, models: ModelPlan[], revoked: { name: string; sha256: string; reason: string }[] = []): NodePlan {
  return NodePlan.fromPartial({ nodeName: 'n', generation, models, revoked });
}

async function reportOf(d: QuarantineDuty): Promise<Report['models']> {
  const report: Report = { planGeneration: 0, planDigest: '', planError: '', models: [], services: [], observedUnixMillis: 0, duties: [] };
  await d.contribute(report);
  return report.models;
}

async function waitForState(d: QuarantineDuty, name: string, state: ModelState, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const entry = (await reportOf(d)).find((m) => m.name === name);
    if (entry?.state === state) return entry;
    if (Date.now() > deadline) throw new Error(`${name} did not reach ${state}: ${JSON.stringify(entry)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

it('quarantines a plan model in the background, then lets inference serve it', async () => {
  const { d, audit, events, store, converge } = duty(join(dir, 'store-a'));
  await converge(plan(1, [modelPlan('tiny')]));
  expect(d.pathOf(sha256)).toBeUndefined();
  await waitForState(d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
  expect(d.pathOf(sha256)).toBe(store.artifactPath(sha256));
  expect(existsSync(store.artifactPath(sha256))).toBe(true);
  expect(events.trustChanged).toBeGreaterThan(0);
  expect(audit.events.map((e) => e.type)).toContain('model.promoted');
  await d.stop();
}, 90_000);

it('rejects bytes that do not match the pin once, at the stage that found it, and does not retry', async () => {
  const { d, audit, converge } = duty(join(dir, 'store-b'));
  await converge(plan(1, [modelPlan('mispinned', { sha256: 'b'.repeat(64) })]));
  const rejected = await waitForState(d, 'mispinned', ModelState.MODEL_STATE_REJECTED);
  expect(rejected.stage).toBe('Integrity');
  await new Promise((r) => setTimeout(r, 500));
  await converge(plan(2, [modelPlan('mispinned', { sha256: 'b'.repeat(64) })]));
  await new Promise((r) => setTimeout(r, 500));
  expect(audit.events.filter((e) => e.type === 'model.rejected')).toHaveLength(1);
  expect(d.pathOf('b'.repeat(64))).toBeUndefined();
  await d.stop();
}, 90_000);

it('retries a fetch that failed when the next plan arrives', async () => {
  const { d, converge } = duty(join(dir, 'store-c'));
  serving = false;
  try {
    await converge(plan(1, [modelPlan('late')]));
    expect((await waitForState(d, 'late', ModelState.MODEL_STATE_REJECTED)).stage).toBe('Fetch');
  } finally {
    serving = true;
  }
  await converge(plan(2, [modelPlan('late')]));
  await waitForState(d, 'late', ModelState.MODEL_STATE_TRUSTED);
  await d.stop();
}, 90_000);

it('contains a revoked digest, stops it being served, and never trusts it again', async () => {
  const { d, audit, store, converge } = duty(join(dir, 'store-d'));
  await converge(plan(1, [modelPlan('tiny')]));
  await waitForState(d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
  await converge(plan(2, [], [{ name: 'tiny', sha256, reason: 'leaked' }]));
  expect(d.pathOf(sha256)).toBeUndefined();
  expect(existsSync(store.artifactPath(sha256))).toBe(false);
  expect(await reportOf(d)).toEqual([expect.objectContaining({ name: 'tiny', state: ModelState.MODEL_STATE_CONTAINED, reason: 'Revoked' })]);
  expect(audit.events.map((e) => e.type)).toContain('model.contained');
  // The same digest under another name stays out: containment is sticky on the node.
  await converge(plan(3, [modelPlan('tiny-again')], [{ name: 'tiny', sha256, reason: 'leaked' }]));
  expect(d.pathOf(sha256)).toBeUndefined();
  await d.stop();
}, 90_000);

it('removes a model the plan no longer names from the trusted store', async () => {
  const { d, audit, store, converge } = duty(join(dir, 'store-e'));
  await converge(plan(1, [modelPlan('tiny')]));
  await waitForState(d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
  await converge(plan(2, []));
  expect(existsSync(store.artifactPath(sha256))).toBe(false);
  expect(d.pathOf(sha256)).toBeUndefined();
  expect(await reportOf(d)).toEqual([]);
  expect(audit.events.map((e) => e.type)).toContain('model.removed');
  await d.stop();
}, 90_000);

describe('the trusted store is re-checked', () => {
  async function trustedDuty(name: string, options: { rehashMs?: number } = {}) {
    const parts = duty(join(dir, name), options);
    await parts.converge(plan(1, [modelPlan('tiny')]));
    await waitForState(parts.d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
    expect((await parts.converge(plan(1, [modelPlan('tiny')]))).status).toBe(DutyStatus.DUTY_STATUS_OK);
    return parts;
  }

  it('suspends a trusted file whose bytes changed, drops it, and quarantines it again from the source', async () => {
    const { d, audit, store, converge, drifts } = await trustedDuty('store-f');
    const path = store.artifactPath(sha256);
    chmodSync(path, 0o644);
    appendFileSync(path, Buffer.from('tampered'));
    const suspended = await converge(plan(1, [modelPlan('tiny')]));
    // At once: not servable, reported Drifted.
    expect(d.pathOf(sha256)).toBeUndefined();
    expect(suspended.status).toBe(DutyStatus.DUTY_STATUS_DRIFTED);
    expect(drifts.map((x) => x.kind)).toEqual([DriftKind.StoreFileChanged]);
    expect((await reportOf(d))[0]).toMatchObject({ state: ModelState.MODEL_STATE_SCANNING, reason: 'Reverifying' });
    // The full hash finds the change: the file leaves the store and the model is quarantined afresh.
    await d.idle();
    await converge(plan(1, [modelPlan('tiny')]));
    await waitForState(d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
    expect(d.pathOf(sha256)).toBe(path);
    expect(createHash('sha256').update(readFileSync(path)).digest('hex')).toBe(sha256);
    const types = audit.events.map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['model.suspended', 'model.reverified']));
    expect(audit.events.find((e) => e.type === 'model.reverified')?.data).toMatchObject({ matches: false });
    expect(types.filter((t) => t === 'model.promoted')).toHaveLength(2);
    expect((await converge(plan(1, [modelPlan('tiny')]))).status).toBe(DutyStatus.DUTY_STATUS_OK);
    await d.stop();
  }, 90_000);

  it('serves a file again whose state changed but whose bytes did not, once the full hash clears it', async () => {
    const { d, audit, store, converge, drifts } = await trustedDuty('store-g');
    const path = store.artifactPath(sha256);
    const later = new Date(Date.now() + 60_000);
    utimesSync(path, later, later);
    await converge(plan(1, [modelPlan('tiny')]));
    expect(d.pathOf(sha256)).toBeUndefined();
    await d.idle();
    expect(d.pathOf(sha256)).toBe(path);
    expect(drifts.map((x) => x.kind)).toEqual([DriftKind.StoreFileChanged]);
    expect(audit.events.find((e) => e.type === 'model.reverified')?.data).toMatchObject({ matches: true });
    expect(audit.events.filter((e) => e.type === 'model.promoted')).toHaveLength(1);
    // The new state is the baseline: the next check finds nothing.
    expect((await converge(plan(1, [modelPlan('tiny')]))).status).toBe(DutyStatus.DUTY_STATUS_OK);
    expect(drifts).toHaveLength(1);
    await d.stop();
  }, 90_000);

  it('notices a trusted file that disappeared and fetches it again', async () => {
    const { d, store, converge, drifts } = await trustedDuty('store-h');
    rmSync(store.artifactPath(sha256));
    await converge(plan(1, [modelPlan('tiny')]));
    expect(d.pathOf(sha256)).toBeUndefined();
    expect(drifts.map((x) => x.kind)).toEqual([DriftKind.StoreFileMissing]);
    await d.idle();
    await converge(plan(1, [modelPlan('tiny')]));
    await waitForState(d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
    expect(existsSync(store.artifactPath(sha256))).toBe(true);
    await d.stop();
  }, 90_000);

  it('hashes every trusted file in full on its re-hash interval', async () => {
    const { d, audit, converge } = await trustedDuty('store-i', { rehashMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    await converge(plan(1, [modelPlan('tiny')]));
    await d.idle();
    const rehashes = audit.events.filter((e) => e.type === 'model.reverified').map((e) => e.data);
    expect(rehashes.length).toBeGreaterThanOrEqual(1);
    for (const rehash of rehashes) expect(rehash).toMatchObject({ matches: true, routine: true });
    expect(d.pathOf(sha256)).toBeDefined();
    await d.stop();
  }, 90_000);

  it('is woken by inotify when a trusted file changes', async () => {
    const parts = duty(join(dir, 'store-j'));
    await parts.converge(plan(1, [modelPlan('tiny')]));
    await waitForState(parts.d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
    let woken = 0;
    await parts.d.stop();
    const watched = new QuarantineDuty({
      deps: { store: parts.store, sandbox: createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner }), audit: parts.audit, clock: () => new Date(), logger: pino({ level: 'silent' }) },
      nodePolicy: DEFAULT_QUARANTINE_POLICY,
      audit: parts.audit,
      logger: pino({ level: 'silent' }),
      trustChanged: () => {},
    });
    watched.watch({ drift: async () => {}, changed: () => {}, wake: () => void woken++ });
    utimesSync(parts.store.artifactPath(sha256), new Date(), new Date());
    const deadline = Date.now() + 5_000;
    while (woken === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(woken).toBeGreaterThan(0);
    await watched.stop();
  }, 90_000);
});
