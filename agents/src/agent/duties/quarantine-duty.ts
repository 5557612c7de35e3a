// The model duty: every artifact the plan names goes through the node's own quarantine before it is
// trusted; revoked digests are contained wherever they are; artifacts the plan no longer names are
// removed. Quarantines run one at a time in the background (a model can take minutes); the report
// says where each artifact stands and, when rejected, the first failing stage and its reason.
import type { Logger } from 'pino';
import { ModelState, type ModelPlan, type ModelReport, type NodePlan, type Report } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { AuditSink } from '../../audit/audit-sink.js';
import type { TrustedModels } from '../../inference/inference-service-manager.js';
import { containModel, quarantineModel, type QuarantineDeps } from '../../quarantine/pipeline.js';
import { applyOverrides, policyDigest, type QuarantinePolicy } from '../../quarantine/policy.js';
import { Stage } from '../../quarantine/verdict.js';
import type { Duty } from '../node-agent.js';

/** A fetch that failed (the network, the source) is retried with backoff; content verdicts are not. */
const RETRY_INITIAL_MS = 15_000;
const RETRY_MAX_MS = 10 * 60_000;

interface Entry {
  plan: ModelPlan;
  /** What the plan asked for when this entry was made: a change means a fresh quarantine. */
  key: string;
  report: ModelReport;
  retryAt?: number;
  retries: number;
}

export interface QuarantineDutyOptions {
  deps: QuarantineDeps;
  nodePolicy: QuarantinePolicy;
  audit: AuditSink;
  logger: Logger;
  /** Called when the set of trusted digests changed (inference re-checks what it may serve). */
  trustChanged: () => void;
  /** Called when any artifact's state changed (the agent sends a report). */
  changed: () => void;
}

export class QuarantineDuty implements Duty, TrustedModels {
  readonly name = 'models';
  private readonly entries = new Map<string, Entry>();
  private readonly contained = new Map<string, ModelReport>();
  private trusted = new Set<string>();
  private queue: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private stopped = false;

  constructor(private readonly opts: QuarantineDutyOptions) {}

  /** For inference: the path of a digest this node's quarantine trusts, and is not contained. */
  pathOf(sha256: string): string | undefined {
    return this.trusted.has(sha256) ? this.opts.deps.store.artifactPath(sha256) : undefined;
  }

  private entryKey(model: ModelPlan): string {
    return JSON.stringify([model.sha256, model.url, model.revision, model.allowInsecureHttp, policyDigest(applyOverrides(this.opts.nodePolicy, model.quarantine)), model.signature]);
  }

  async apply(plan: NodePlan): Promise<void> {
    const store = this.opts.deps.store;
    if (!this.started) {
      await store.init();
      this.trusted = new Set(await store.trustedDigests());
      this.started = true;
    }
    const revoked = new Map(plan.revoked.map((r) => [r.sha256, r]));
    // Containment first: a revoked digest stops being servable before anything else happens.
    for (const r of plan.revoked) {
      if (!this.contained.has(r.sha256) || this.trusted.has(r.sha256)) {
        await containModel(r.sha256, `revoked: ${r.reason}`.slice(0, 256), { store, audit: this.opts.audit, clock: () => new Date() });
        this.trusted.delete(r.sha256);
        this.opts.trustChanged();
      }
      this.contained.set(r.sha256, { name: r.name, sha256: r.sha256, state: ModelState.MODEL_STATE_CONTAINED, stage: '', reason: 'Revoked', message: r.reason.slice(0, 1024) });
    }
    for (const sha of [...this.contained.keys()]) if (!revoked.has(sha)) this.contained.delete(sha);

    const wanted = new Set<string>();
    for (const model of plan.models) {
      if (revoked.has(model.sha256)) continue;
      wanted.add(model.name);
      const key = this.entryKey(model);
      const existing = this.entries.get(model.name);
      if (existing && existing.key === key) {
        existing.plan = model;
        // A fetch that failed may succeed under the new plan (its egress may allow the source now).
        if (existing.retryAt !== undefined) existing.retryAt = Date.now();
        continue;
      }
      const trustedNow = (await store.lookup(model.sha256))?.policyDigest === policyDigest(applyOverrides(this.opts.nodePolicy, model.quarantine));
      this.entries.set(model.name, {
        plan: model,
        key,
        retries: 0,
        report: {
          name: model.name,
          sha256: model.sha256,
          state: trustedNow ? ModelState.MODEL_STATE_TRUSTED : ModelState.MODEL_STATE_PENDING,
          stage: '',
          reason: trustedNow ? 'Passed' : 'Queued',
          message: trustedNow ? 'trusted by this node' : 'waiting for quarantine',
        },
      });
      if (trustedNow && !this.trusted.has(model.sha256)) {
        this.trusted.add(model.sha256);
        this.opts.trustChanged();
      }
    }
    await this.removeUnwanted(wanted, revoked);
    this.schedule();
  }

  /** Artifacts no plan model names any more leave the trusted store (the operator waits for it). */
  private async removeUnwanted(wanted: Set<string>, revoked: Map<string, unknown>): Promise<void> {
    for (const [name, entry] of this.entries) {
      if (wanted.has(name)) continue;
      this.entries.delete(name);
      const sha = entry.plan.sha256;
      const stillUsed = [...this.entries.values()].some((e) => e.plan.sha256 === sha);
      if (stillUsed || revoked.has(sha)) continue;
      const { removed } = await this.opts.deps.store.remove(sha);
      if (this.trusted.delete(sha)) this.opts.trustChanged();
      if (removed) await this.opts.audit.record({ type: 'model.removed', subject: sha, data: { name } });
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const now = Date.now();
    const due = [...this.entries.values()].filter(
      (e) => e.report.state === ModelState.MODEL_STATE_PENDING || (e.retryAt !== undefined && e.retryAt <= now),
    );
    for (const entry of due) {
      entry.retryAt = undefined;
      entry.report = { ...entry.report, state: ModelState.MODEL_STATE_SCANNING, reason: 'Quarantining', message: 'fetching and scanning' };
      this.queue = this.queue.then(() => this.quarantine(entry));
    }
    if (due.length > 0) this.opts.changed();
    const next = Math.min(...[...this.entries.values()].map((e) => e.retryAt ?? Infinity));
    if (Number.isFinite(next)) this.timer = setTimeout(() => this.schedule(), Math.max(0, next - now));
  }

  private async quarantine(entry: Entry): Promise<void> {
    if (this.stopped || this.entries.get(entry.plan.name) !== entry) return;
    const result = await quarantineModel(entry.plan, this.opts.nodePolicy, this.opts.deps);
    if (this.entries.get(entry.plan.name) !== entry) return;
    const { verdict } = result;
    if (verdict.trusted) {
      entry.report = { name: entry.plan.name, sha256: entry.plan.sha256, state: ModelState.MODEL_STATE_TRUSTED, stage: '', reason: 'Passed', message: 'trusted by this node' };
      this.trusted.add(entry.plan.sha256);
      this.opts.trustChanged();
    } else {
      entry.report = {
        name: entry.plan.name,
        sha256: entry.plan.sha256,
        state: ModelState.MODEL_STATE_REJECTED,
        stage: verdict.stage ?? '',
        reason: verdict.reason ?? '',
        message: (verdict.message ?? '').slice(0, 1024),
      };
      if (verdict.stage === Stage.Fetch) {
        const delay = Math.min(RETRY_MAX_MS, RETRY_INITIAL_MS * 2 ** entry.retries);
        entry.retries += 1;
        entry.retryAt = Date.now() + delay;
        this.schedule();
      }
    }
    this.opts.changed();
  }

  async contribute(report: Report): Promise<void> {
    report.models = [...[...this.entries.values()].map((e) => ({ ...e.report })), ...[...this.contained.values()].map((r) => ({ ...r }))];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
