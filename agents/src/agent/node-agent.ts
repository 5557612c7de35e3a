// The node agent's core: it holds the plan the node enforces and runs every duty as a level-triggered
// loop (duty-loop.ts) that reads the node's actual state, compares it with that plan and converges —
// on every new plan (egress first, so enforcement is in place before anything else changes), on the
// duty's resync interval, at once when the duty's own watch sees a change, and with backoff after a
// failure. It persists the plan, keeps each duty's last result and drift, audits and reports. It
// applies the stored plan at start, before any channel exists.
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import {
  type Command,
  type CommandResult,
  type Drift,
  type DutyResult,
  DutyStatus,
  type Hello,
  type NodePlan,
  type Report,
} from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DutyReason, type DriftKind, type DutyName } from '../../../api/proto/duty-results.js';
import { planDigest, PROTOCOL_VERSION } from '../../../api/proto/protocol.js';
import type { AuditSink } from '../audit/audit-sink.js';
import { DutyLoop, type DutyRunResult } from './duty-loop.js';
import type { PlanStore } from './plan-store.js';

/** How a duty's convergence ended. */
export interface DutyOutcome {
  status: DutyStatus;
  reason: DutyReason;
  message: string;
  /** Egress: the digest of the table as read back at this check. */
  readBackDigest?: string;
  /** Run again this soon (ms), sooner than the resync interval (a TTL, a retry that falls due). */
  requeueAfterMs?: number;
}

/** What a duty is handed to tell the agent about the node. */
export interface DutyContext {
  /**
   * Records that the node changed behind the agent's back: an audit entry, the drift metric and a
   * report at once, before the repair. Repeated calls for a drift not yet repaired count once. The
   * drift counts as repaired when the duty next converges.
   */
  drift(kind: DriftKind, detail: string): Promise<void>;
  /** The duty's state changed: send a report soon. */
  changed(): void;
  /** Run the duty's loop as soon as it is idle (its watch saw a change). */
  wake(): void;
}

/** One responsibility of the agent on its node (egress, models, inference, vault, attestation, audit). */
export interface Duty {
  readonly name: DutyName;
  /** How often the duty re-reads the node while the plan stands (ms). */
  readonly resyncMs: number;
  /** Reads the node's actual state, compares it with the plan and converges; may throw. */
  converge(plan: NodePlan, ctx: DutyContext): Promise<DutyOutcome>;
  /** Fills this duty's part of a report. */
  contribute(report: Report): Promise<void>;
  /** Answers a command meant for this duty, or returns undefined when the command is not its. */
  handleCommand?(command: Command): Promise<CommandResult | undefined>;
  /** Starts what watches the node for this duty (netlink, inotify); it calls ctx.wake(). */
  watch?(ctx: DutyContext): void;
  stop?(): Promise<void>;
}

export interface ReportChannel {
  sendReport(report: Report): boolean;
}

export interface NodeAgentOptions {
  nodeName: string;
  version: string;
  capabilities: string[];
  store: PlanStore;
  /** In convergence order for a new plan: the egress duty must come first. */
  duties: Duty[];
  audit: AuditSink;
  auditPublicKey: Buffer;
  logger: Logger;
  registry: Registry;
  /** Milliseconds between periodic reports (counters change without plan changes). */
  reportIntervalMs?: number;
  now?: () => number;
}

const MAX_MESSAGE_CHARS = 1024;
const MAX_DETAIL_CHARS = 512;

interface DutyRecord {
  duty: Duty;
  loop: DutyLoop;
  ctx: DutyContext;
  outcome?: DutyOutcome;
  planGeneration: number;
  checkedAt: number;
  drifts: number;
  lastDrift?: Drift;
}

export class NodeAgent {
  private plan: NodePlan | undefined;
  private planError = '';
  private readonly records: DutyRecord[];
  private readonly reportLoop: DutyLoop;
  private channel: ReportChannel | undefined;
  private started = false;
  private reportQueued = false;
  private readonly now: () => number;
  private readonly generationGauge: Gauge;
  private readonly applySeconds: Histogram;
  private readonly applyFailures: Counter;
  private readonly driftTotal: Counter;
  private readonly dutyUp: Gauge;

  constructor(private readonly opts: NodeAgentOptions) {
    this.now = opts.now ?? Date.now;
    this.generationGauge = new Gauge({ name: 'secai_agent_plan_generation', help: 'Generation of the plan the node enforces.', registers: [opts.registry] });
    this.applySeconds = new Histogram({
      name: 'secai_agent_plan_apply_seconds',
      help: 'Time from accepting a plan to every duty having converged on it once.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [opts.registry],
    });
    this.applyFailures = new Counter({
      name: 'secai_agent_plan_apply_failures_total',
      help: 'Plans that were refused, or on which a duty failed to converge at first.',
      registers: [opts.registry],
    });
    this.driftTotal = new Counter({
      name: 'secai_agent_drift_total',
      help: 'Changes to what the agent enforces that it did not make, by duty and kind.',
      labelNames: ['duty', 'kind'],
      registers: [opts.registry],
    });
    this.dutyUp = new Gauge({
      name: 'secai_agent_duty_converged',
      help: '1 while the duty last converged on the plan (status OK or PROGRESSING), else 0.',
      labelNames: ['duty'],
      registers: [opts.registry],
    });
    this.records = opts.duties.map((duty) => this.recordFor(duty));
    this.reportLoop = new DutyLoop({ name: 'report', intervalMs: opts.reportIntervalMs ?? 15_000, run: () => this.sendReport() });
  }

  private recordFor(duty: Duty): DutyRecord {
    const record = { duty, planGeneration: 0, checkedAt: 0, drifts: 0 } as DutyRecord;
    record.ctx = {
      drift: (kind, detail) => this.recordDrift(record, kind, detail),
      changed: () => this.reportSoon(),
      wake: () => void record.loop.wake(),
    };
    record.loop = new DutyLoop({ name: duty.name, intervalMs: duty.resyncMs, run: () => this.runDuty(record) });
    return record;
  }

  /** Re-applies the persisted plan; call before connecting to the operator. */
  async start(): Promise<void> {
    await this.opts.audit.record({ type: 'agent.started', data: { version: this.opts.version } });
    const stored = this.opts.store.load();
    if (stored) {
      this.opts.logger.info({ generation: stored.generation }, 're-applying the stored plan before connecting');
      await this.accept(stored, { persist: false });
    }
    this.startLoops();
  }

  private startLoops(): void {
    if (this.started) return;
    this.started = true;
    for (const record of this.records) {
      record.duty.watch?.(record.ctx);
      record.loop.start();
    }
    this.reportLoop.start();
  }

  async stop(): Promise<void> {
    await this.reportLoop.stop();
    for (const record of this.records) await record.loop.stop();
    for (const record of [...this.records].reverse()) await record.duty.stop?.();
  }

  attach(channel: ReportChannel | undefined): void {
    this.channel = channel;
  }

  /** The plan the node holds (and enforces wherever its duties converged). */
  currentPlan(): NodePlan | undefined {
    return this.plan;
  }

  /** Runs a duty's loop as soon as it is idle; resolves when that run has finished. */
  wake(duty: DutyName): Promise<void> {
    return this.records.find((r) => r.duty.name === duty)?.loop.wake() ?? Promise.resolve();
  }

  /** Each duty's last result, as reported. */
  dutyResults(): DutyResult[] {
    return this.records.map((record) => this.resultOf(record));
  }

  hello(): Hello {
    return {
      nodeName: this.opts.nodeName,
      agentVersion: this.opts.version,
      protocolVersion: PROTOCOL_VERSION,
      capabilities: this.opts.capabilities,
      auditPublicKey: this.opts.auditPublicKey,
      appliedPlanGeneration: this.plan?.generation ?? 0,
      appliedPlanDigest: this.plan?.digest ?? '',
    };
  }

  /**
   * Takes a plan from the operator. The duties' loops read the newest plan when they run, so plans
   * arriving while one converges collapse to the newest. Resolves once every duty has run on it.
   */
  async receivePlan(plan: NodePlan): Promise<void> {
    await this.accept(plan, { persist: true });
  }

  private refusal(plan: NodePlan): string | undefined {
    if (plan.nodeName !== this.opts.nodeName) return `plan is for node ${plan.nodeName}, not ${this.opts.nodeName}`;
    if (planDigest(plan) !== plan.digest) return 'plan does not match its digest';
    if (this.plan && plan.generation < this.plan.generation) {
      return `plan generation ${plan.generation} is older than the applied ${this.plan.generation}`;
    }
    return undefined;
  }

  private async accept(plan: NodePlan, { persist }: { persist: boolean }): Promise<void> {
    const log = this.opts.logger.child({ generation: plan.generation });
    const refused = this.refusal(plan);
    if (refused) {
      this.applyFailures.inc();
      this.planError = refused;
      log.error({ why: refused }, 'plan refused; keeping the current one');
      await this.opts.audit.record({ type: 'plan.rejected', subject: String(plan.generation), data: { reason: refused } });
      this.reportSoon();
      return;
    }
    this.planError = '';
    if (this.plan?.digest === plan.digest && this.plan.generation === plan.generation && !persist) return;
    const fresh = this.plan?.digest !== plan.digest || this.plan.generation !== plan.generation;
    this.plan = plan;
    this.generationGauge.set(plan.generation);
    // Persisted before the duties run: an agent that dies mid-way comes back to this plan.
    if (persist && fresh) this.opts.store.save(plan);
    const stopTimer = this.applySeconds.startTimer();
    // In order, egress first: each duty converges on the plan before the next begins.
    for (const record of this.records) await record.loop.wake();
    stopTimer();
    if (this.plan !== plan) return;
    const failed = this.records.filter((r) => r.outcome?.status === DutyStatus.DUTY_STATUS_FAILED && r.planGeneration === plan.generation);
    if (failed.length > 0) this.applyFailures.inc();
    if (fresh) {
      await this.opts.audit.record({ type: 'plan.applied', subject: String(plan.generation), data: { digest: plan.digest, failures: failed.length } });
      log.info({ digest: plan.digest, failed: failed.map((r) => `${r.duty.name}: ${r.outcome?.message}`) }, 'plan applied');
    }
    this.reportSoon();
  }

  private async runDuty(record: DutyRecord): Promise<DutyRunResult> {
    const plan = this.plan;
    if (!plan) return { ok: true };
    let outcome: DutyOutcome;
    try {
      outcome = await record.duty.converge(plan, record.ctx);
    } catch (error) {
      outcome = { status: DutyStatus.DUTY_STATUS_FAILED, reason: DutyReason.Failed, message: (error as Error).message };
      this.opts.logger.error({ duty: record.duty.name, err: (error as Error).message }, 'duty failed to converge');
    }
    const before = record.outcome;
    record.outcome = { ...outcome, message: outcome.message.slice(0, MAX_MESSAGE_CHARS) };
    record.planGeneration = plan.generation;
    record.checkedAt = this.now();
    const converged = outcome.status === DutyStatus.DUTY_STATUS_OK || outcome.status === DutyStatus.DUTY_STATUS_PROGRESSING;
    this.dutyUp.set({ duty: record.duty.name }, converged ? 1 : 0);
    if (converged && record.lastDrift && record.lastDrift.repairedUnixMillis === 0) {
      record.lastDrift = { ...record.lastDrift, repairedUnixMillis: record.checkedAt };
      const tookMs = record.checkedAt - record.lastDrift.detectedUnixMillis;
      this.opts.logger.warn({ duty: record.duty.name, kind: record.lastDrift.kind, tookMs }, 'drift repaired and read back in force');
      await this.opts.audit.record({ type: 'drift.repaired', subject: record.duty.name, data: { kind: record.lastDrift.kind, tookMs } });
      this.reportSoon();
    }
    if (!before || before.status !== outcome.status || before.reason !== outcome.reason || before.readBackDigest !== outcome.readBackDigest || before.message !== record.outcome.message) {
      this.reportSoon();
    }
    return { ok: outcome.status !== DutyStatus.DUTY_STATUS_FAILED, requeueAfterMs: outcome.requeueAfterMs };
  }

  private async recordDrift(record: DutyRecord, kind: DriftKind, detail: string): Promise<void> {
    const open = record.lastDrift && record.lastDrift.repairedUnixMillis === 0;
    if (open && record.lastDrift?.kind === kind) return;
    const detectedAt = this.now();
    record.drifts += 1;
    record.lastDrift = { kind, detail: detail.slice(0, MAX_DETAIL_CHARS), detectedUnixMillis: detectedAt, repairedUnixMillis: 0 };
    record.outcome = { status: DutyStatus.DUTY_STATUS_DRIFTED, reason: DutyReason.Drift, message: `${kind}: ${detail}`.slice(0, MAX_MESSAGE_CHARS) };
    this.driftTotal.inc({ duty: record.duty.name, kind });
    this.dutyUp.set({ duty: record.duty.name }, 0);
    this.opts.logger.warn({ duty: record.duty.name, kind, detail: record.lastDrift.detail }, 'drift: the node changed behind the agent');
    await this.opts.audit.record({ type: 'drift.detected', subject: record.duty.name, data: { kind, detail: record.lastDrift.detail } });
    // Reported before the repair starts: the operator learns of it even if the repair fails.
    this.reportSoon();
  }

  private resultOf(record: DutyRecord): DutyResult {
    const outcome = record.outcome ?? { status: DutyStatus.DUTY_STATUS_PROGRESSING, reason: DutyReason.Progressing, message: 'not run yet' };
    return {
      duty: record.duty.name,
      status: outcome.status,
      reason: outcome.reason,
      message: outcome.message,
      planGeneration: record.planGeneration,
      readBackDigest: outcome.readBackDigest ?? '',
      checkedUnixMillis: record.checkedAt,
      consecutiveFailures: record.loop.snapshot().consecutiveFailures,
      drifts: record.drifts,
      lastDrift: record.lastDrift,
    };
  }

  async handleCommand(command: Command): Promise<CommandResult> {
    for (const { duty } of this.records) {
      const result = await duty.handleCommand?.(command);
      if (result) return result;
    }
    return { id: command.id, error: `no duty handles ${command.body?.$case ?? 'an empty command'}`, body: undefined };
  }

  async buildReport(): Promise<Report> {
    const report: Report = {
      planGeneration: this.plan?.generation ?? 0,
      planDigest: this.plan?.digest ?? '',
      planError: this.planError,
      models: [],
      services: [],
      observedUnixMillis: this.now(),
      duties: [],
    };
    for (const record of this.records) await record.duty.contribute(report);
    report.duties = this.dutyResults();
    return report;
  }

  /**
   * Sends a report at the next turn of the event loop (changes made in one turn go in one report),
   * or as soon as the report loop is idle; duties call it when their state changes.
   */
  reportSoon(): void {
    if (this.reportQueued) return;
    this.reportQueued = true;
    setImmediate(() => {
      this.reportQueued = false;
      void this.reportLoop.wake();
    });
  }

  private async sendReport(): Promise<DutyRunResult> {
    if (!this.channel) return { ok: true };
    try {
      this.channel.sendReport(await this.buildReport());
    } catch (error) {
      this.opts.logger.error({ err: (error as Error).message }, 'building a report failed');
      return { ok: false };
    }
    return { ok: true };
  }
}
