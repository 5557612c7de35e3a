// The model duty with real parts (a loopback HTTP source, the bubblewrap scanner, the trusted store
// on disk): a plan model is quarantined in the background and becomes servable; a digest that does
// not match is rejected once and not retried; a fetch that failed is retried when a new plan comes;
// a revoked digest is contained and never served again; a model the plan drops leaves the store.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ModelState, NodePlan, type ModelPlan, type Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { tinyModelBytes } from '../../../../test/support/tiny-model.js';
import { MemoryAuditSink } from '../../audit/audit-sink.js';
import { runCommand } from '../../exec.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../quarantine/policy.js';
import { createScannerSandbox } from '../../quarantine/scanner-sandbox.js';
import { TrustedStore } from '../../quarantine/trusted-store.js';
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

function duty(storeDir: string) {
  const audit = new MemoryAuditSink();
  const events = { trustChanged: 0, changed: 0 };
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
    changed: () => events.changed++,
  });
  return { d, audit, events, store };
}

function modelPlan(name: string, over: Partial<ModelPlan> = {}): ModelPlan {
  return { name, url: `${base}/tiny.gguf`, revision: '', format: 'gguf', sha256, sizeBytes: model.length, allowInsecureHttp: true, ...over };
}

function plan(generation: number, models: ModelPlan[], revoked: { name: string; sha256: string; reason: string }[] = []): NodePlan {
  return NodePlan.fromPartial({ nodeName: 'n', generation, models, revoked });
}

async function reportOf(d: QuarantineDuty): Promise<Report['models']> {
  const report: Report = { planGeneration: 0, planDigest: '', planError: '', models: [], services: [], observedUnixMillis: 0 };
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
  const { d, audit, events, store } = duty(join(dir, 'store-a'));
  await d.apply(plan(1, [modelPlan('tiny')]));
  expect(d.pathOf(sha256)).toBeUndefined();
  await waitForState(d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
  expect(d.pathOf(sha256)).toBe(store.artifactPath(sha256));
  expect(existsSync(store.artifactPath(sha256))).toBe(true);
  expect(events.trustChanged).toBeGreaterThan(0);
  expect(audit.events.map((e) => e.type)).toContain('model.promoted');
  await d.stop();
}, 90_000);

it('rejects bytes that do not match the pin once, at the stage that found it, and does not retry', async () => {
  const { d, audit } = duty(join(dir, 'store-b'));
  await d.apply(plan(1, [modelPlan('mispinned', { sha256: 'b'.repeat(64) })]));
  const rejected = await waitForState(d, 'mispinned', ModelState.MODEL_STATE_REJECTED);
  expect(rejected.stage).toBe('Integrity');
  await new Promise((r) => setTimeout(r, 500));
  await d.apply(plan(2, [modelPlan('mispinned', { sha256: 'b'.repeat(64) })]));
  await new Promise((r) => setTimeout(r, 500));
  expect(audit.events.filter((e) => e.type === 'model.rejected')).toHaveLength(1);
  expect(d.pathOf('b'.repeat(64))).toBeUndefined();
  await d.stop();
}, 90_000);

it('retries a fetch that failed when the next plan arrives', async () => {
  const { d } = duty(join(dir, 'store-c'));
  serving = false;
  try {
    await d.apply(plan(1, [modelPlan('late')]));
    expect((await waitForState(d, 'late', ModelState.MODEL_STATE_REJECTED)).stage).toBe('Fetch');
  } finally {
    serving = true;
  }
  await d.apply(plan(2, [modelPlan('late')]));
  await waitForState(d, 'late', ModelState.MODEL_STATE_TRUSTED);
  await d.stop();
}, 90_000);

it('contains a revoked digest, stops it being served, and never trusts it again', async () => {
  const { d, audit, store } = duty(join(dir, 'store-d'));
  await d.apply(plan(1, [modelPlan('tiny')]));
  await waitForState(d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
  await d.apply(plan(2, [], [{ name: 'tiny', sha256, reason: 'leaked' }]));
  expect(d.pathOf(sha256)).toBeUndefined();
  expect(existsSync(store.artifactPath(sha256))).toBe(false);
  expect(await reportOf(d)).toEqual([expect.objectContaining({ name: 'tiny', state: ModelState.MODEL_STATE_CONTAINED, reason: 'Revoked' })]);
  expect(audit.events.map((e) => e.type)).toContain('model.contained');
  // The same digest under another name stays out: containment is sticky on the node.
  await d.apply(plan(3, [modelPlan('tiny-again')], [{ name: 'tiny', sha256, reason: 'leaked' }]));
  expect(d.pathOf(sha256)).toBeUndefined();
  await d.stop();
}, 90_000);

it('removes a model the plan no longer names from the trusted store', async () => {
  const { d, audit, store } = duty(join(dir, 'store-e'));
  await d.apply(plan(1, [modelPlan('tiny')]));
  await waitForState(d, 'tiny', ModelState.MODEL_STATE_TRUSTED);
  await d.apply(plan(2, []));
  expect(existsSync(store.artifactPath(sha256))).toBe(false);
  expect(d.pathOf(sha256)).toBeUndefined();
  expect(await reportOf(d)).toEqual([]);
  expect(audit.events.map((e) => e.type)).toContain('model.removed');
  await d.stop();
}, 90_000);
