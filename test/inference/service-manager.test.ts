// The inference duty on a node: which services it serves, how fast it stops on revocation and
// cordon, what it reports when it cannot serve, and how it survives a model that aborts its worker.
import { connect, createServer } from 'node:net';
import { request } from 'node:http';
import OpenAI from 'openai';
import { isAlive } from '../../hack/control-plane/control-plane.js';
import { ServiceState, type Report, type ServiceReport } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import type { InferenceServiceManager } from '../../agents/src/inference/inference-service-manager.js';
import {
  baseUrl,
  bearerToken,
  MapTrustedModels,
  ModelDir,
  nodeSandbox,
  servicePlan,
  startManager,
  waitFor,
  type ManagerFixture,
  type ModelFile,
} from './inference-fixtures.js';

const models = new ModelDir();
const auth = bearerToken();
let tiny: ModelFile;
const managers: InferenceServiceManager[] = [];

beforeAll(() => {
  tiny = models.tiny();
});

afterAll(async () => {
  await Promise.all(managers.map((manager) => manager.stop()));
  models.remove();
});

async function managerFor(trusted: MapTrustedModels, options: Parameters<typeof startManager>[1] = {}): Promise<ManagerFixture> {
  const fixture = await startManager(trusted, options);
  managers.push(fixture.manager);
  return fixture;
}

function reportOf(manager: InferenceServiceManager, name = 'chat'): ServiceReport | undefined {
  return manager.reports().find((report) => report.name === name);
}

const serving = (manager: InferenceServiceManager, name = 'chat') =>
  waitFor(() => reportOf(manager, name)?.state === ServiceState.SERVICE_STATE_SERVING && reportOf(manager, name), 60_000, `${name} to serve`);

function workerPid(lines: string[], service = 'chat'): number {
  const line = [...lines].reverse().find((l) => l.includes('"inference service serving"') && l.includes(`"service":"${service}"`));
  if (!line) throw new Error('no serving log line');
  return (JSON.parse(line) as { workerPid: number }).workerPid;
}


function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

/** A long streaming generation; resolves when the server ends or cuts the stream. */
function longStream(manager: InferenceServiceManager): { firstByte: Promise<void>; ended: Promise<number> } {
  let markFirst!: () => void;
  const firstByte = new Promise<void>((resolve) => (markFirst = resolve));
  const ended = new Promise<number>((resolve) => {
    const req = request(
      `${baseUrl(manager)}/chat/completions`,
      { method: 'POST', headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' } },
      (res) => {
        res.on('data', () => markFirst());
        res.on('close', () => resolve(Date.now()));
      },
    );
    req.on('error', () => resolve(Date.now()));
    req.end(JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'go on' }], max_tokens: 1800, temperature: 0, stream: true }));
  });
  return { firstByte, ended };
}

describe('serving', () => {
  it('serves a trusted model and says which sandbox it runs in', async () => {
    const fixture = await managerFor(new MapTrustedModels(tiny));
    await fixture.manager.reconcile({ services: [servicePlan(tiny, auth.sha256)], revoked: new Set(), cordoned: false });
    const report = await serving(fixture.manager);
    expect(report).toMatchObject({ name: 'chat', model: 'tiny', reason: 'Serving', gpuLayers: 0 });
    expect(report.message).toMatch(/CPU; 1 thread\(s\); sandbox: bubblewrap, seccomp \w+, Landlock ABI \d+/);
    expect(fixture.audit.events).toContainEqual(expect.objectContaining({ type: 'service.started', subject: 'chat' }));

    const report2: Report = { services: [] } as unknown as Report;
    await fixture.manager.contribute(report2);
    expect(report2.services).toEqual([report]);
  });

  it('serves on a node without Landlock but says the sandbox is degraded', async () => {
    const full = await nodeSandbox();
    const fixture = await managerFor(new MapTrustedModels(tiny), { sandbox: { ...full, landlock: { available: false, why: 'the kernel has no Landlock (ABI 0)' } } });
    await fixture.manager.reconcile({ services: [servicePlan(tiny, auth.sha256)], revoked: new Set(), cordoned: false });
    const report = await serving(fixture.manager);
    expect(report.reason).toBe('SandboxDegraded');
    expect(report.message).toContain('no Landlock (the kernel has no Landlock (ABI 0))');
  });

  it('waits for quarantine while the model is not trusted, then serves it', async () => {
    const trusted = new MapTrustedModels();
    const fixture = await managerFor(trusted);
    const desired = { services: [servicePlan(tiny, auth.sha256)], revoked: new Set<string>(), cordoned: false };
    await fixture.manager.reconcile(desired);
    expect(reportOf(fixture.manager)).toMatchObject({ state: ServiceState.SERVICE_STATE_PENDING, reason: 'ModelNotTrusted' });
    expect(fixture.manager.endpoint('chat')).toBeUndefined();
    trusted.trust(tiny);
    await fixture.manager.reconcile(desired);
    await serving(fixture.manager);
  });

  it('rotates the bearer token without restarting the worker', async () => {
    const fixture = await managerFor(new MapTrustedModels(tiny));
    const plan = servicePlan(tiny, auth.sha256);
    await fixture.manager.reconcile({ services: [plan], revoked: new Set(), cordoned: false });
    await serving(fixture.manager);
    const pid = workerPid(fixture.logLines);
    const next = bearerToken();
    await fixture.manager.reconcile({ services: [{ ...plan, authTokenSha256: next.sha256 }], revoked: new Set(), cordoned: false });
    const url = baseUrl(fixture.manager);
    await expect(new OpenAI({ apiKey: auth.token, baseURL: url, maxRetries: 0 }).models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect((await new OpenAI({ apiKey: next.token, baseURL: url, maxRetries: 0 }).models.list()).data).toHaveLength(1);
    expect(workerPid(fixture.logLines)).toBe(pid);
    expect(isAlive(pid)).toBe(true);
  });
});

describe('stopping', () => {
  it.each([
    ['revocation', { revoked: new Set<string>(), cordoned: false }, 'ModelRevoked'],
    ['a cordon', { revoked: new Set<string>(), cordoned: true }, 'NodeCordoned'],
  ])('%s stops serving within 2 s, cutting a stream in flight', async (what, change, reason) => {
    const fixture = await managerFor(new MapTrustedModels(tiny));
    const plan = servicePlan(tiny, auth.sha256);
    await fixture.manager.reconcile({ services: [plan], revoked: new Set(), cordoned: false });
    await serving(fixture.manager);
    const port = fixture.manager.endpoint('chat')!.port;
    const pid = workerPid(fixture.logLines);
    const stream = longStream(fixture.manager);
    await stream.firstByte;

    const planArrived = Date.now();
    const revoked = what === 'revocation' ? new Set([tiny.sha256]) : change.revoked;
    await fixture.manager.reconcile({ services: [plan], revoked, cordoned: change.cordoned });
    const applied = Date.now();
    expect(reportOf(fixture.manager)).toMatchObject({ state: ServiceState.SERVICE_STATE_STOPPED, reason });
    expect(await refusesConnections(port)).toBe(true);
    const streamEnded = await stream.ended;
    await waitFor(() => !isAlive(pid), 2000, 'the worker to be gone');
    const workerGone = Date.now();

    for (const at of [applied, streamEnded, workerGone]) expect(at - planArrived).toBeLessThan(2000);
    expect(fixture.audit.events).toContainEqual(expect.objectContaining({ type: 'service.stopped', subject: 'chat', data: expect.objectContaining({ reason }) }));
  });
});

describe('failing visibly', () => {
  it('says GPUUnavailable when asked for GPU layers on a CPU-only node, and does not retry', async () => {
    const fixture = await managerFor(new MapTrustedModels(tiny), { restartPolicy: { initialDelayMs: 100, maxDelayMs: 100, stableAfterMs: 60_000 } });
    await fixture.manager.reconcile({ services: [servicePlan(tiny, auth.sha256, { gpuLayers: -1 })], revoked: new Set(), cordoned: false });
    const report = await waitFor(() => reportOf(fixture.manager)?.state === ServiceState.SERVICE_STATE_FAILED && reportOf(fixture.manager), 60_000, 'a failure');
    expect(report.reason).toBe('GPUUnavailable');
    expect(report.message).toMatch(/all GPU layers.*not retried/);
    const client = new OpenAI({ apiKey: auth.token, baseURL: baseUrl(fixture.manager), maxRetries: 0 });
    const error = await client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 1 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, code: 'model_not_ready' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await fixture.registry.getSingleMetricAsString('secai_agent_inference_worker_restarts_total')).not.toMatch(/service="chat"\} [1-9]/);
  });

  it('says ListenFailed when its port is taken, and binds on the next plan once it is free', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    const fixture = await managerFor(new MapTrustedModels(tiny));
    const desired = { services: [servicePlan(tiny, auth.sha256, { port })], revoked: new Set<string>(), cordoned: false };
    await fixture.manager.reconcile(desired);
    expect(reportOf(fixture.manager)).toMatchObject({ state: ServiceState.SERVICE_STATE_FAILED, reason: 'ListenFailed' });
    await new Promise((resolve) => blocker.close(resolve));
    await fixture.manager.reconcile(desired);
    await serving(fixture.manager);
    expect(fixture.manager.endpoint('chat')!.port).toBe(port);
  });

  it('refuses a file whose digest is not the trusted one (ModelDigestMismatch)', async () => {
    const other = models.tiny('other.gguf', 2);
    const trusted = new MapTrustedModels();
    trusted.byDigest.set(tiny.sha256, other.path);
    const fixture = await managerFor(trusted);
    await fixture.manager.reconcile({ services: [servicePlan(tiny, auth.sha256)], revoked: new Set(), cordoned: false });
    const report = await waitFor(() => reportOf(fixture.manager)?.state === ServiceState.SERVICE_STATE_FAILED && reportOf(fixture.manager), 60_000, 'a failure');
    expect(report.reason).toBe('ModelDigestMismatch');
    expect(report.message).toContain(other.sha256);
  });

  it('restarts a worker that a malformed model aborts, with backoff, and the agent keeps serving', async () => {
    const aborting = models.aborting();
    const fixture = await managerFor(new MapTrustedModels(tiny, aborting), { restartPolicy: { initialDelayMs: 200, maxDelayMs: 800, stableAfterMs: 60_000 } });
    await fixture.manager.reconcile({
      services: [servicePlan(tiny, auth.sha256), servicePlan(aborting, auth.sha256, { name: 'broken', model: 'broken' })],
      revoked: new Set(),
      cordoned: false,
    });
    await serving(fixture.manager);
    const failures = () =>
      fixture.logLines
        .map((line) => JSON.parse(line) as { msg: string; service?: string; retryInMs?: number })
        .filter((entry) => entry.msg === 'inference worker failed' && entry.service === 'broken');
    await waitFor(() => failures().length >= 4, 60_000, 'four failed starts');
    expect(failures().map((entry) => entry.retryInMs).slice(0, 4)).toEqual([200, 400, 800, 800]);
    expect(reportOf(fixture.manager, 'broken')).toMatchObject({ state: ServiceState.SERVICE_STATE_FAILED, reason: 'WorkerCrashed' });
    expect(reportOf(fixture.manager, 'broken')!.message).toMatch(/killed by SIGABRT before it was ready.*GGML_ASSERT.*restart \d+ in \d+ ms/);
    expect(await fixture.registry.getSingleMetricAsString('secai_agent_inference_worker_restarts_total')).toMatch(/service="broken"\} [3-9]/);

    // Meanwhile the healthy service answers.
    const client = new OpenAI({ apiKey: auth.token, baseURL: baseUrl(fixture.manager), maxRetries: 0 });
    const completion = await client.completions.create({ model: 'tiny', prompt: 'the', max_tokens: 4 });
    expect(completion.usage!.completion_tokens).toBe(4);

    // Removed from the plan, it is no longer restarted.
    await fixture.manager.reconcile({ services: [servicePlan(tiny, auth.sha256)], revoked: new Set(), cordoned: false });
    const count = failures().length;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(failures().length).toBe(count);
    expect(reportOf(fixture.manager, 'broken')).toBeUndefined();
  }, 90_000);
});
