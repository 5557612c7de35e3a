// Where the agent channel hands over what agents say. Reports are kept, bounded, as the latest
// state per node and the node is marked for reconciliation: however often a node reports, the
// controller writes its SecAINode status at most once per change (the work queue merges the marks,
// and an unchanged status is not written).
import type { Hello, NodePlan, Report } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { systemClock, type Clock } from '../runtime/clock.js';
import type { PlanPublisher } from './plan-publisher.js';
import { appliedPlanOf, boundedAuditKey, sanitizeHello, sanitizeReport, type AgentIdentity, type ReportedState } from './report-status.js';

/** A plan an agent says it enforces. */
export interface AppliedPlan {
  generation: number;
  digest: string;
}

export interface NodeObservations {
  /**
   * Set while the agent holds a channel; `applied` is what its Hello said it enforces, `auditKey`
   * the node's audit public key from the Hello.
   */
  session?: { identity: AgentIdentity; connectedAt: number; applied?: AppliedPlan; auditKey: Buffer };
  /** When this process last saw the agent connect, report or disconnect (ms). */
  lastSeenAt?: number;
  /** Set once this process has seen the agent disconnect (and not reconnect since). */
  disconnectedAt?: number;
  report?: ReportedState;
}

export interface NodeReportIntakeOptions {
  publisher: PlanPublisher;
  isEnrolled: (node: string) => boolean;
  clock?: Clock;
}

export class NodeReportIntake {
  private readonly observed = new Map<string, NodeObservations>();
  private readonly listeners = new Set<(node: string) => void>();
  private readonly clock: Clock;
  /** Reports accepted since start (for tests and logs). */
  reports = 0;

  constructor(private readonly opts: NodeReportIntakeOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  /** Hears of every change a node's agent causes (the node controller enqueues the node). */
  onChange(listener: (node: string) => void): void {
    this.listeners.add(listener);
  }

  private changed(node: string): void {
    for (const listener of this.listeners) listener(node);
  }

  private entry(node: string): NodeObservations {
    let e = this.observed.get(node);
    if (!e) this.observed.set(node, (e = {}));
    return e;
  }

  /** Whether the node belongs to the fleet (has a SecAINode); the channel refuses the others. */
  isEnrolled(node: string): boolean {
    return this.opts.isEnrolled(node);
  }

  agentConnected(node: string, hello: Hello): void {
    if (!this.isEnrolled(node)) return;
    const now = this.clock.now();
    const e = this.entry(node);
    const applied = appliedPlanOf(hello);
    e.session = { identity: sanitizeHello(hello), connectedAt: now, auditKey: boundedAuditKey(hello), ...(applied ? { applied } : {}) };
    e.lastSeenAt = now;
    delete e.disconnectedAt;
    this.changed(node);
  }

  agentDisconnected(node: string): void {
    const e = this.observed.get(node);
    if (!e?.session) return;
    const now = this.clock.now();
    delete e.session;
    e.disconnectedAt = now;
    e.lastSeenAt = now;
    this.changed(node);
  }

  report(node: string, report: Report): void {
    if (!this.isEnrolled(node)) return;
    const now = this.clock.now();
    const e = this.entry(node);
    e.report = sanitizeReport(report, now);
    e.lastSeenAt = now;
    this.reports++;
    this.changed(node);
  }

  /**
   * Hands the agent its plans, except one numbered below what its Hello said it enforces (or
   * numbered the same with other content): after a restart the operator may not yet know the
   * generations its predecessor published, and the agent would refuse the plan. The node's
   * reconcile, woken by the connection, renumbers it.
   */
  subscribePlan(node: string, onPlan: (plan: NodePlan) => void): () => void {
    return this.opts.publisher.subscribe(node, (plan) => {
      const applied = this.observed.get(node)?.session?.applied;
      if (applied && (plan.generation < applied.generation || (plan.generation === applied.generation && plan.digest !== applied.digest))) return;
      onPlan(plan);
    });
  }

  observations(node: string): NodeObservations | undefined {
    return this.observed.get(node);
  }

  /** Drops what is known of a node that left the fleet. */
  forget(node: string): void {
    this.observed.delete(node);
  }
}
