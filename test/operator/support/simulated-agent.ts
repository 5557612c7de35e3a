// A stand-in for a node agent on the in-process intake the gRPC channel will call: it receives the
// node's plans and reports them applied (or failed), automatically or when the test says so.
import { createHash } from 'node:crypto';
import {
  DutyStatus,
  EgressMode,
  ModelState,
  SecureBootState,
  ServiceState,
  type Hello,
  type NodePlan,
  type Report,
} from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DUTY_NAMES, DutyReason } from '../../../api/proto/duty-results.js';
import { PROTOCOL_VERSION } from '../../../api/proto/protocol.js';
import type { NodeReportIntake } from '../../../operator/src/fleet/intake.js';

export type ReportShaper = (report: Report, plan: NodePlan) => Report;

export class SimulatedAgent {
  /** Every plan received, in order. */
  readonly plans: NodePlan[] = [];
  private unsubscribe?: () => void;
  /** When true, a new plan is reported applied as soon as it arrives. */
  autoApply: boolean;
  /** Alters each report (to fail, to reject a model, …). */
  shape: ReportShaper = (r) => r;
  /** Model digests whose quarantine "fails" on this node. */
  readonly rejects = new Set<string>();

  constructor(
    readonly node: string,
    private readonly intake: NodeReportIntake,
    opts: { autoApply?: boolean } = {},
  ) {
    this.autoApply = opts.autoApply ?? true;
  }

  hello(): Hello {
    return {
      nodeName: this.node,
      agentVersion: '0.1.0-test',
      protocolVersion: PROTOCOL_VERSION,
      capabilities: ['nftables', 'tpm2'],
      auditPublicKey: Buffer.alloc(32, 7),
      appliedPlanGeneration: 0,
      appliedPlanDigest: '',
    };
  }

  connect(): this {
    this.intake.agentConnected(this.node, this.hello());
    this.unsubscribe = this.intake.subscribePlan(this.node, (plan) => {
      this.plans.push(plan);
      if (this.autoApply) this.apply();
    });
    return this;
  }

  disconnect(): void {
    this.unsubscribe?.();
    this.intake.agentDisconnected(this.node);
  }

  get latest(): NodePlan | undefined {
    return this.plans.at(-1);
  }

  /** The report of a node that enforces `plan` (by default the latest) without error. */
  reportFor(plan = this.latest): Report {
    if (!plan) throw new Error(`${this.node} has no plan yet`);
    const rules = createHash('sha256').update(JSON.stringify(plan.egress ?? {})).digest('hex');
    return {
      planGeneration: plan.generation,
      planDigest: plan.digest,
      planError: '',
      egress: {
        mode: plan.egress?.mode ?? EgressMode.EGRESS_MODE_ENFORCE,
        rulesetDigest: rules,
        droppedPackets: 0,
        auditedPackets: 0,
        allowEntries: plan.egress?.allow.length ?? 0,
      },
      vault: plan.vault ? { encrypted: true, sealed: true, locked: false, compliant: true, policy: plan.vault.policy, reasons: [], lockEpoch: 0 } : undefined,
      attestation: { secureBoot: SecureBootState.SECURE_BOOT_STATE_ENABLED, tpmPresent: true, pcrBank: 'sha256', pcrDigest: 'c'.repeat(64), mismatchedPcrs: [], checkedUnixMillis: Date.now() },
      models: [
        ...plan.models.map((m) => ({
          name: m.name,
          sha256: m.sha256,
          state: this.rejects.has(m.sha256) ? ModelState.MODEL_STATE_REJECTED : ModelState.MODEL_STATE_TRUSTED,
          stage: this.rejects.has(m.sha256) ? 'static' : '',
          reason: this.rejects.has(m.sha256) ? 'PickleOpcodes' : '',
          message: '',
        })),
        ...plan.revoked.map((r) => ({ name: r.name, sha256: r.sha256, state: ModelState.MODEL_STATE_CONTAINED, stage: '', reason: 'Revoked', message: '' })),
      ],
      services: plan.services.map((s) => ({ name: s.name, model: s.model, state: ServiceState.SERVICE_STATE_SERVING, reason: '', message: '', gpuLayers: s.gpuLayers })),
      auditHead: undefined,
      observedUnixMillis: Date.now(),
      duties: DUTY_NAMES.map((duty) => ({
        duty,
        status: DutyStatus.DUTY_STATUS_OK,
        reason: DutyReason.Converged,
        message: '',
        planGeneration: plan.generation,
        readBackDigest: duty === 'egress' ? rules : '',
        checkedUnixMillis: Date.now(),
        consecutiveFailures: 0,
        drifts: 0,
        lastDrift: undefined,
      })),
    };
  }

  /** Reports the latest plan applied (shaped by `shape`). */
  apply(): void {
    const plan = this.latest;
    if (!plan) return;
    this.intake.report(this.node, this.shape(this.reportFor(plan), plan));
  }

  send(report: Report): void {
    this.intake.report(this.node, report);
  }
}
