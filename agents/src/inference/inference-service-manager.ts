// The inference duty: turns the plan's services into running workers and API listeners, serving
// only trusted, non-revoked models and nothing while cordoned. Stopping is immediate (the
// listener closes its sockets, the sandbox is killed), so a revocation or cordon stops serving as
// soon as the plan arrives. Each service's state and reason go into the node's report.
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { DutyStatus, ServiceState, type NodePlan, type Report, type ServicePlan, type ServiceReport } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DutyReason } from '../../../api/proto/duty-results.js';
import type { Duty, DutyContext, DutyOutcome } from '../agent/node-agent.js';
import type { AuditEvent, AuditSink } from '../audit/audit-sink.js';
import { describeSandboxSupport, sandboxIsDegraded, type SandboxSupport } from '../sandbox/sandbox-support.js';
import { InferenceWorker } from './inference-worker.js';
import type { InferenceMetrics } from './inference-metrics.js';
import { OpenAiServer, type ApiLimits } from './openai-server.js';
import { decideServices, ServiceReason, type DesiredInference, type ServiceSettings } from './service-decisions.js';
import { DEFAULT_RESTART_POLICY, SupervisedWorker, type RestartPolicy, type WorkerStatus } from './supervised-worker.js';

/** The node's trusted store, as far as serving needs it: where a trusted digest's file is. */
export interface TrustedModels {
  pathOf(sha256: string): string | undefined;
}

export interface InferenceServiceManagerOptions {
  trustedModels: TrustedModels;
  sandbox: SandboxSupport;
  metrics: InferenceMetrics;
  logger: Logger;
  audit: AuditSink;
  /** Address the API listeners bind. */
  listenHost: string;
  restartPolicy?: RestartPolicy;
  apiLimits?: Partial<ApiLimits>;
  loadTimeoutMs?: number;
  /** Runs each sandbox through this command (tests: `ip netns exec NAME`). */
  spawnPrefix?: readonly string[];
}

const MAX_REPORT_MESSAGE_CHARS = 1024;

/** What, when changed, needs a new worker and listener; the token alone is rotated in place. */
function runningKey(plan: ServicePlan, settings: ServiceSettings, path: string): string {
  return JSON.stringify([plan.model, plan.modelSha256, plan.port, path, settings]);
}

class RunningService {
  readonly server: OpenAiServer;
  readonly supervisor: SupervisedWorker;
  address: AddressInfo | undefined;
  report: ServiceReport;

  constructor(
    public plan: ServicePlan,
    readonly key: string,
    private readonly settings: ServiceSettings,
    modelPath: string,
    private readonly options: InferenceServiceManagerOptions,
    private readonly logger: Logger,
    /** The service's state changed (the duty re-runs and reports). */
    private readonly onChange: () => void,
  ) {
    this.report = {
      name: plan.name,
      model: plan.model,
      state: ServiceState.SERVICE_STATE_STARTING,
      reason: ServiceReason.WorkerStarting,
      message: 'starting the inference worker',
      gpuLayers: 0,
    };
    this.server = new OpenAiServer({
      service: plan.name,
      model: plan.model,
      authTokenSha256: plan.authTokenSha256,
      concurrency: settings.parallelRequests,
      queueDepth: settings.queueDepth,
      backend: () => this.supervisor.worker,
      metrics: options.metrics,
      logger,
      limits: options.apiLimits,
    });
    this.supervisor = new SupervisedWorker({
      policy: options.restartPolicy ?? DEFAULT_RESTART_POLICY,
      onStatus: (status) => this.onWorkerStatus(status),
      start: () =>
        InferenceWorker.start({
          model: { path: modelPath, sha256: plan.modelSha256 },
          gpuLayers: settings.gpuLayers,
          contextSize: settings.contextSize,
          threads: settings.threads,
          sequences: settings.parallelRequests,
          sandbox: options.sandbox,
          loadTimeoutMs: options.loadTimeoutMs,
          spawnPrefix: options.spawnPrefix,
        }),
    });
  }

  async start(): Promise<void> {
    try {
      this.address = await this.server.listen(this.plan.port, this.options.listenHost);
    } catch (error) {
      this.setReport(ServiceState.SERVICE_STATE_FAILED, ServiceReason.ListenFailed, `cannot listen on port ${this.plan.port}: ${(error as Error).message}`);
      return;
    }
    this.supervisor.run();
  }

  async stop(): Promise<void> {
    await Promise.all([this.server.close(), this.supervisor.stop()]);
  }

  private setReport(state: ServiceState, reason: ServiceReason, message: string, gpuLayers = 0): void {
    const previous = this.report;
    this.report = { name: this.plan.name, model: this.plan.model, state, reason, message: message.slice(0, MAX_REPORT_MESSAGE_CHARS), gpuLayers };
    if (previous.state === state && previous.reason === reason) return;
    this.onChange();
    const data = { model: this.plan.model, sha256: this.plan.modelSha256, reason };
    if (state === ServiceState.SERVICE_STATE_SERVING) this.record({ type: 'service.started', subject: this.plan.name, data: { ...data, gpuLayers } });
    if (state === ServiceState.SERVICE_STATE_FAILED) this.record({ type: 'service.failed', subject: this.plan.name, data });
  }

  private record(event: AuditEvent): void {
    this.options.audit.record(event).catch((error: Error) => this.logger.error({ err: { message: error.message }, type: event.type }, 'could not record an audit event'));
  }

  private onWorkerStatus(status: WorkerStatus): void {
    const sandbox = describeSandboxSupport(this.options.sandbox);
    switch (status.phase) {
      case 'starting':
        this.setReport(
          ServiceState.SERVICE_STATE_STARTING,
          ServiceReason.WorkerStarting,
          status.lastFailure ? `restart ${status.restarts} of the inference worker after ${status.lastFailure}` : 'starting the inference worker',
        );
        break;
      case 'ready': {
        const ready = status.worker.ready;
        const degraded = sandboxIsDegraded(this.options.sandbox);
        const device = ready.gpu === false ? 'CPU' : `${ready.gpu}, ${ready.gpuLayers} layers offloaded`;
        this.setReport(
          ServiceState.SERVICE_STATE_SERVING,
          degraded ? ServiceReason.SandboxDegraded : ServiceReason.Serving,
          `serving on port ${this.address?.port}; ${device}; ${this.settings.threads} thread(s); sandbox: ${sandbox}`,
          ready.gpuLayers,
        );
        this.logger.info({ port: this.address?.port, gpu: ready.gpu, gpuLayers: ready.gpuLayers, workerPid: status.worker.pid }, 'inference service serving');
        break;
      }
      case 'failed': {
        const retry = status.retryInMs === undefined ? 'not retried until the plan changes' : `restart ${status.restarts + 1} in ${status.retryInMs} ms`;
        this.setReport(ServiceState.SERVICE_STATE_FAILED, status.reason, `${status.message}; ${retry}`);
        this.logger.warn({ reason: status.reason, retryInMs: status.retryInMs, restarts: status.restarts }, 'inference worker failed');
        if (status.retryInMs !== undefined) this.options.metrics.workerRestarts.inc({ service: this.plan.name });
        break;
      }
      case 'stopped':
        break;
    }
  }
}

/** How often the duty re-checks its services against the plan and the trusted store. */
export const INFERENCE_RESYNC_MS = 10_000;

export class InferenceServiceManager implements Duty {
  readonly name = 'inference' as const;
  readonly resyncMs = INFERENCE_RESYNC_MS;
  private readonly running = new Map<string, RunningService>();
  private idle: ServiceReport[] = [];
  private ctx: Pick<DutyContext, 'wake'> | undefined;

  constructor(private readonly options: InferenceServiceManagerOptions) {}

  watch(ctx: DutyContext): void {
    this.ctx = ctx;
  }

  async converge(plan: NodePlan): Promise<DutyOutcome> {
    await this.reconcile({ services: plan.services, revoked: new Set(plan.revoked.map((r) => r.sha256)), cordoned: plan.cordoned });
    const reports = this.reports();
    const starting = reports.filter((r) => r.state === ServiceState.SERVICE_STATE_STARTING).length;
    const serving = reports.filter((r) => r.state === ServiceState.SERVICE_STATE_SERVING).length;
    if (starting > 0) return { status: DutyStatus.DUTY_STATUS_PROGRESSING, reason: DutyReason.Progressing, message: `${starting} service(s) starting, ${serving} serving` };
    return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message: `${serving} of ${reports.length} service(s) serving` };
  }

  async contribute(report: Report): Promise<void> {
    report.services = this.reports();
  }

  reports(): ServiceReport[] {
    return [...[...this.running.values()].map((service) => ({ ...service.report })), ...this.idle.map((report) => ({ ...report }))].sort((a, b) =>
      a.name.localeCompare(b.name),
    );
  }

  /** Where a service listens, once it does. */
  endpoint(name: string): AddressInfo | undefined {
    return this.running.get(name)?.address;
  }

  async stop(): Promise<void> {
    await this.reconcile({ services: [], revoked: new Set(), cordoned: false });
  }

  /**
   * Converges on the desired services. The agent's duty loop never runs two at once; callers
   * outside it (tests) await each call.
   */
  async reconcile(desired: DesiredInference): Promise<void> {
    const { trustedModels, logger, audit } = this.options;
    const paths = new Map<string, string>();
    for (const plan of desired.services) {
      const path = trustedModels.pathOf(plan.modelSha256);
      if (path !== undefined) paths.set(plan.modelSha256, path);
    }
    const wanted = new Map<string, { plan: ServicePlan; key: string; settings: ServiceSettings; path: string }>();
    const idle: ServiceReport[] = [];
    for (const decision of decideServices(desired, (sha256) => paths.has(sha256))) {
      const { plan } = decision;
      if (decision.serve) {
        const path = paths.get(plan.modelSha256)!;
        wanted.set(plan.name, { plan, key: runningKey(plan, decision.settings, path), settings: decision.settings, path });
      } else {
        idle.push({ name: plan.name, model: plan.model, state: decision.state, reason: decision.reason, message: decision.message, gpuLayers: 0 });
      }
    }

    const stopping: Promise<void>[] = [];
    for (const [name, service] of this.running) {
      const want = wanted.get(name);
      // A listener that could not bind is retried on the next plan.
      if (want && want.key === service.key && service.report.reason !== ServiceReason.ListenFailed) {
        if (want.plan.authTokenSha256 !== service.plan.authTokenSha256) service.server.setAuthTokenSha256(want.plan.authTokenSha256);
        service.plan = want.plan;
        wanted.delete(name);
        continue;
      }
      this.running.delete(name);
      const why = idle.find((report) => report.name === name)?.reason ?? (want ? 'ServiceChanged' : 'ServiceRemoved');
      logger.info({ service: name, reason: why }, 'stopping inference service');
      stopping.push(service.stop().then(() => audit.record({ type: 'service.stopped', subject: name, data: { model: service.plan.model, reason: why } })));
    }
    this.idle = idle;
    await Promise.all(stopping);

    for (const { plan, key, settings, path } of wanted.values()) {
      const service = new RunningService(plan, key, settings, path, this.options, logger.child({ service: plan.name }), () => this.ctx?.wake());
      this.running.set(plan.name, service);
      logger.info({ service: plan.name, model: plan.model }, 'starting inference service');
      await service.start();
    }
  }
}
