// The node agent's core: it holds the plan the node enforces and hands each new plan to the duties
// (egress first, so enforcement is in place before anything else changes), persists what it
// applied, and reports. It applies the stored plan at start, before any channel exists.
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Command, CommandResult, Hello, NodePlan, Report } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { planDigest, PROTOCOL_VERSION } from '../../../api/proto/protocol.js';
import type { AuditSink } from '../audit/audit-sink.js';
import type { PlanStore } from './plan-store.js';

/** One responsibility of the agent on its node (egress, quarantine, inference, vault, audit). */
export interface Duty {
  readonly name: string;
  /** Brings the node in line with the plan. Throws when it cannot; long work continues in the background. */
  apply(plan: NodePlan): Promise<void>;
  /** Fills this duty's part of a report. */
  contribute(report: Report): Promise<void>;
  /** Answers a command meant for this duty, or returns undefined when the command is not its. */
  handleCommand?(command: Command): Promise<CommandResult | undefined>;
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
  /** In apply order: the egress duty must come first. */
  duties: Duty[];
  audit: AuditSink;
  auditPublicKey: Buffer;
  logger: Logger;
  registry: Registry;
  /** Milliseconds between periodic reports (counters change without plan changes). */
  reportIntervalMs?: number;
}

export class NodeAgent {
  private applied: NodePlan | undefined;
  private planError = '';
  private pending: NodePlan | undefined;
  private applying: Promise<void> | undefined;
  private channel: ReportChannel | undefined;
  private reportTimer: NodeJS.Timeout | undefined;
  private reportQueued = false;
  private readonly generationGauge: Gauge;
  private readonly applySeconds: Histogram;
  private readonly applyFailures: Counter;

  constructor(private readonly opts: NodeAgentOptions) {
    this.generationGauge = new Gauge({
      name: 'secai_agent_plan_generation',
      help: 'Generation of the plan the node enforces.',
      registers: [opts.registry],
    });
    this.applySeconds = new Histogram({
      name: 'secai_agent_plan_apply_seconds',
      help: 'Time to apply a plan across all duties.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [opts.registry],
    });
    this.applyFailures = new Counter({
      name: 'secai_agent_plan_apply_failures_total',
      help: 'Plans that could not be applied or were refused.',
      registers: [opts.registry],
    });
  }

  /** Re-applies the persisted plan; call before connecting to the operator. */
  async start(): Promise<void> {
    await this.opts.audit.record({ type: 'agent.started', data: { version: this.opts.version } });
    const stored = this.opts.store.load();
    if (stored) {
      this.opts.logger.info({ generation: stored.generation }, 're-applying the stored plan before connecting');
      await this.applyNow(stored, { persist: false });
    }
    this.reportTimer = setInterval(() => this.reportSoon(), this.opts.reportIntervalMs ?? 15_000);
  }

  async stop(): Promise<void> {
    clearInterval(this.reportTimer);
    await this.applying;
    for (const duty of [...this.opts.duties].reverse()) await duty.stop?.();
  }

  attach(channel: ReportChannel | undefined): void {
    this.channel = channel;
  }

  appliedPlan(): NodePlan | undefined {
    return this.applied;
  }

  hello(): Hello {
    return {
      nodeName: this.opts.nodeName,
      agentVersion: this.opts.version,
      protocolVersion: PROTOCOL_VERSION,
      capabilities: this.opts.capabilities,
      auditPublicKey: this.opts.auditPublicKey,
      appliedPlanGeneration: this.applied?.generation ?? 0,
      appliedPlanDigest: this.applied?.digest ?? '',
    };
  }

  /** Takes a plan from the operator; plans arriving while one applies collapse to the newest. */
  receivePlan(plan: NodePlan): Promise<void> {
    this.pending = plan;
    if (!this.applying) {
      this.applying = (async () => {
        while (this.pending) {
          const next = this.pending;
          this.pending = undefined;
          await this.applyNow(next, { persist: true });
        }
      })().finally(() => {
        this.applying = undefined;
      });
    }
    return this.applying;
  }

  private refusal(plan: NodePlan): string | undefined {
    if (plan.nodeName !== this.opts.nodeName) return `plan is for node ${plan.nodeName}, not ${this.opts.nodeName}`;
    if (planDigest(plan) !== plan.digest) return 'plan does not match its digest';
    if (this.applied && plan.generation < this.applied.generation) {
      return `plan generation ${plan.generation} is older than the applied ${this.applied.generation}`;
    }
    return undefined;
  }

  private async applyNow(plan: NodePlan, { persist }: { persist: boolean }): Promise<void> {
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
    if (this.applied?.digest === plan.digest && !persist) return;
    const stopTimer = this.applySeconds.startTimer();
    const failures: string[] = [];
    for (const duty of this.opts.duties) {
      try {
        await duty.apply(plan);
      } catch (err) {
        failures.push(`${duty.name}: ${(err as Error).message}`);
        log.error({ duty: duty.name, err: (err as Error).message }, 'duty failed to apply the plan');
      }
    }
    stopTimer();
    // The plan counts as applied even when a duty failed: every other duty enforces it, and the
    // failure is reported. Keeping the older plan would leave the node half on each.
    this.applied = plan;
    this.planError = failures.join('; ');
    this.generationGauge.set(plan.generation);
    if (failures.length > 0) this.applyFailures.inc();
    if (persist) this.opts.store.save(plan);
    await this.opts.audit.record({
      type: 'plan.applied',
      subject: String(plan.generation),
      data: { digest: plan.digest, failures: failures.length },
    });
    log.info({ digest: plan.digest, failures }, 'plan applied');
    this.reportSoon();
  }

  async handleCommand(command: Command): Promise<CommandResult> {
    for (const duty of this.opts.duties) {
      const result = await duty.handleCommand?.(command);
      if (result) return result;
    }
    return { id: command.id, error: `no duty handles ${command.body?.$case ?? 'an empty command'}`, body: undefined };
  }

  async buildReport(): Promise<Report> {
    const report: Report = {
      planGeneration: this.applied?.generation ?? 0,
      planDigest: this.applied?.digest ?? '',
      planError: this.planError,
      models: [],
      services: [],
      observedUnixMillis: Date.now(),
    };
    for (const duty of this.opts.duties) await duty.contribute(report);
    return report;
  }

  /** Sends a report at the next turn of the event loop; duties call it when their state changes. */
  reportSoon(): void {
    if (this.reportQueued) return;
    this.reportQueued = true;
    setImmediate(() => {
      this.reportQueued = false;
      if (!this.channel) return;
      this.buildReport()
        .then((report) => this.channel?.sendReport(report))
        .catch((err: Error) => this.opts.logger.error({ err: err.message }, 'building a report failed'));
    });
  }
}
