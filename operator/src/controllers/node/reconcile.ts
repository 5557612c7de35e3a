// Reconciles one fleet Node: its SecAINode exists, its plan is computed and published, its status
// says what the node reported, and the not-compliant taint is on the Node exactly while the node is
// not compliant. Level-triggered: whatever woke it, it reads the caches and converges.
import { API_VERSION } from '../../../../api/crd/common.js';
import { resourcePath } from '../../../../api/crd/paths.js';
import type { SecAINode, SecAINodeStatus } from '../../../../api/gen/crd-types.js';
import type { NodeControllerContext } from './context.js';
import { AUDIT_REBASELINE_ANNOTATION } from '../../fleet/names.js';
import type { Node } from '../../fleet/caches.js';
import { semanticallyEqual } from '../../runtime/apply.js';
import { conditionTransition, findCondition } from '../../runtime/conditions.js';
import type { ReconcileContext, ReconcileResult } from '../../runtime/controller.js';
import { CONTENT_TYPE, KubeApiError } from '../../runtime/kube-client.js';
import { reconcileRemovedNode } from './delete.js';
import type { NodePlanner } from './planner.js';
import { driftReasonOf, type DutyName } from '../../../../api/proto/duty-results.js';
import { complianceOf, computeNodeStatus, isDriftReason, Reason, unpublishedDrift, withoutVolatileFields, type CurrentPlan } from './status.js';
import { hasNotCompliantTaint, taintPatch, taintsFor } from './taint.js';

export class NodeReconciler {
  /** When each node's status was last written, for the refresh interval of volatile fields. */
  private readonly lastWrite = new Map<string, number>();
  /** The plan generation whose propagation time was last observed, per node. */
  private readonly propagated = new Map<string, number>();

  constructor(
    private readonly ctx: NodeControllerContext,
    private readonly planner: NodePlanner,
  ) {}

  async reconcile(name: string, rc: ReconcileContext): Promise<ReconcileResult | void> {
    const { ctx } = this;
    const node = ctx.caches.nodes.get(name);
    if (!node) {
      await reconcileRemovedNode(ctx, name, rc);
      this.lastWrite.delete(name);
      this.propagated.delete(name);
      ctx.auditVerdicts?.forget(name);
      ctx.attestation?.forget(name);
      ctx.applier.forget(resourcePath('secainodes', name));
      return;
    }
    const secaiNode = ctx.caches.secaiNodes.get(name) ?? (await this.enroll(node, rc));
    const path = resourcePath('secainodes', name);
    const now = ctx.clock.now();

    // The plan goes out first; the status that records its generation follows.
    const { current } = this.planner.planAndPublish(node, secaiNode, now);
    const observed = ctx.applier.observedStatus<SecAINodeStatus>(path, secaiNode);

    const uid = secaiNode.metadata.uid ?? '';
    const rebaseline = secaiNode.metadata.annotations?.[AUDIT_REBASELINE_ANNOTATION];
    if (rebaseline !== undefined) ctx.auditVerdicts?.rebaseline(name, uid);
    const observations = ctx.intake.observations(name);
    const graceEnds = ctx.settings.startedAt + ctx.settings.agentReconnectGraceMs;
    const desired = computeNodeStatus({
      existing: observed,
      objectGeneration: secaiNode.metadata.generation ?? 0,
      plan: current,
      observations,
      reconnectGraceOver: now >= graceEnds,
      audit: ctx.auditVerdicts?.verdict(name, uid),
      attestation: ctx.attestation?.verdict(name, uid),
      now,
    });

    let requeueAfterMs: number | undefined;
    if (!semanticallyEqual(desired, observed)) {
      const substantive = !semanticallyEqual(withoutVolatileFields(desired), withoutVolatileFields(observed));
      const sinceWrite = now - (this.lastWrite.get(name) ?? 0);
      if (substantive || sinceWrite >= ctx.settings.statusRefreshMs) {
        await ctx.applier.applyStatus({ path, apiVersion: API_VERSION, kind: 'SecAINode', name }, desired, secaiNode);
        this.lastWrite.set(name, now);
      } else {
        requeueAfterMs = ctx.settings.statusRefreshMs - sinceWrite;
      }
    }
    if (rebaseline !== undefined) await this.completeRebaseline(secaiNode, rebaseline, observed, rc);
    // The taint follows compliance as it stands, not the record of a drift already repaired: a
    // repair of milliseconds is an Event and a Compliant transition, not a reschedule of the node.
    const compliant = complianceOf(desired, current, desired.duties).status === 'True';
    await this.ensureTaint(node, compliant, rc);
    await this.announceTransitions(secaiNode, observed, desired);
    this.observePropagation(name, desired, current);

    if (now < graceEnds && observed?.agent?.connected && !observations?.session) {
      requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, graceEnds - now);
    }
    return requeueAfterMs !== undefined ? { requeueAfterMs } : undefined;
  }

  /** Creates the SecAINode of a newly matching Node, owned by it (so that GC removes it in clusters that run GC). */
  private async enroll(node: Node, rc: ReconcileContext): Promise<SecAINode> {
    const name = node.metadata.name ?? '';
    const body = {
      apiVersion: API_VERSION,
      kind: 'SecAINode',
      metadata: {
        name,
        ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: node.metadata.uid }],
      },
      spec: {},
    };
    const created = await this.ctx.client.raw<SecAINode>({ method: 'POST', path: resourcePath('secainodes'), body });
    if (created.status === 201) {
      rc.log.info('node joined the fleet; SecAINode created');
      await this.ctx.events.record(created.body, 'Normal', 'Enrolled', 'Enroll', `Node ${name} matches the fleet selector`);
      return created.body;
    }
    if (created.status === 409) return this.ctx.client.request<SecAINode>({ method: 'GET', path: resourcePath('secainodes', name) });
    throw new KubeApiError(created.status, created.body as never, 'POST', resourcePath('secainodes'));
  }

  /**
   * The cache decides whether the taint needs to change; the patch is computed from a fresh read,
   * since the cache lags behind our own previous patch (a stale resourceVersion fails the test op).
   */
  private async ensureTaint(node: Node, compliant: boolean, rc: ReconcileContext): Promise<void> {
    if (!taintsFor(node.spec?.taints, compliant)) return;
    const path = `/api/v1/nodes/${encodeURIComponent(node.metadata.name ?? '')}`;
    const fresh = await this.ctx.client.request<Node>({ method: 'GET', path });
    const taints = taintsFor(fresh.spec?.taints, compliant);
    if (!taints) return;
    await this.ctx.client.request({
      method: 'PATCH',
      path,
      body: taintPatch(fresh.metadata.resourceVersion ?? '', taints),
      contentType: CONTENT_TYPE.jsonPatch,
    });
    rc.log.info({ tainted: hasNotCompliantTaint(taints) }, compliant ? 'not-compliant taint removed' : 'not-compliant taint added');
  }

  /**
   * The verifier has forgotten the node's audit baseline and the status no longer carries it; the
   * annotation goes (guarded by its value: a newer request made meanwhile is not lost).
   */
  private async completeRebaseline(secaiNode: SecAINode, value: string, before: SecAINodeStatus | undefined, rc: ReconcileContext): Promise<void> {
    const name = secaiNode.metadata.name ?? '';
    const key = AUDIT_REBASELINE_ANNOTATION.replaceAll('~', '~0').replaceAll('/', '~1');
    const res = await this.ctx.client.raw({
      method: 'PATCH',
      path: resourcePath('secainodes', name),
      body: [
        { op: 'test', path: `/metadata/annotations/${key}`, value },
        { op: 'remove', path: `/metadata/annotations/${key}` },
      ],
      contentType: CONTENT_TYPE.jsonPatch,
    });
    // 422: the annotation changed or went meanwhile; the next reconcile sees the object as it is now.
    if (res.status === 422) return;
    if (res.status < 200 || res.status >= 300) throw new KubeApiError(res.status, res.body as never, 'PATCH', resourcePath('secainodes', name));
    const previous = findCondition(before?.conditions, 'AuditVerified');
    const was = previous ? `AuditVerified was ${previous.status} (${previous.reason})` : 'nothing was verified before';
    rc.log.info({ audit: 'audit.rebaselined' }, 'audit baseline forgotten at an administrator\'s request');
    await this.ctx.events.record(secaiNode, 'Normal', 'AuditRebaselined', 'Rebaseline', `audit baseline forgotten at an administrator's request; the node's next signed head is trusted as on first contact (${was})`);
  }

  private async announceTransitions(obj: SecAINode, before: SecAINodeStatus | undefined, after: SecAINodeStatus): Promise<void> {
    // Drift: a Warning when the node reports one this status did not show, a Normal when its repair
    // is read back. They say what the Compliant transitions around them would.
    for (const duty of after.duties ?? []) {
      const drift = duty.lastDrift;
      if (!drift) continue;
      const reason = driftReasonOf(duty.duty as DutyName);
      const wasRepaired = before?.duties?.find((d) => d.duty === duty.duty)?.lastDrift?.repairedAt;
      if (unpublishedDrift(duty, before?.duties)) {
        await this.ctx.events.record(obj, 'Warning', reason, 'DetectDrift', `${duty.duty}: ${drift.kind} at ${drift.detectedAt}: ${drift.detail ?? 'no detail'}`);
      }
      if (drift.repairedAt && (unpublishedDrift(duty, before?.duties) || !wasRepaired)) {
        await this.ctx.events.record(obj, 'Normal', `${reason}Repaired`, 'RepairDrift', `${duty.duty}: ${drift.kind} found at ${drift.detectedAt}, repaired and read back in force at ${drift.repairedAt}`);
      }
    }
    const compliant = conditionTransition(before?.conditions, after.conditions, 'Compliant');
    // Waiting for a first report or for a new plan to be applied is routine, not news; so is a
    // drift and its repair, which have Events of their own. Leaving or entering any other state is.
    const previous = findCondition(before?.conditions, 'Compliant');
    const news =
      compliant?.status === 'True'
        ? previous?.reason !== Reason.PlanNotApplied && !isDriftReason(previous?.reason)
        : compliant !== undefined && compliant.reason !== Reason.NeverReported && compliant.reason !== Reason.PlanNotApplied && !isDriftReason(compliant.reason);
    if (compliant && news) {
      await this.ctx.events.record(
        obj,
        compliant.status === 'True' ? 'Normal' : 'Warning',
        compliant.status === 'True' ? 'Compliant' : 'NotCompliant',
        'EvaluateCompliance',
        compliant.message,
      );
    }
    // Boot state: a node that stops matching its expected values, and one that matches again.
    // A node without a TPM is a configuration, not news: no Warning for each one (1,000 simulated agents).
    const attested = conditionTransition(before?.conditions, after.conditions, 'Attested');
    if ((attested?.status === 'False' && attested.reason !== Reason.TpmAbsent) || (attested?.status === 'True' && findCondition(before?.conditions, 'Attested')?.status === 'False')) {
      await this.ctx.events.record(
        obj,
        attested.status === 'True' ? 'Normal' : 'Warning',
        attested.status === 'True' ? 'Attested' : 'AttestationFailed',
        'EvaluateAttestation',
        `${attested.reason}: ${attested.message}`,
      );
    }
    const audit = conditionTransition(before?.conditions, after.conditions, 'AuditVerified');
    if (audit?.status === 'False') {
      await this.ctx.events.record(obj, 'Warning', 'AuditVerificationFailed', 'VerifyAuditLog', `${audit.reason}: ${audit.message}`);
    }
    const ready = conditionTransition(before?.conditions, after.conditions, 'Ready');
    if (ready && (ready.reason === Reason.AgentDisconnected || findCondition(before?.conditions, 'Ready')?.reason === Reason.AgentDisconnected)) {
      await this.ctx.events.record(
        obj,
        ready.reason === Reason.AgentDisconnected ? 'Warning' : 'Normal',
        ready.reason === Reason.AgentDisconnected ? 'AgentDisconnected' : 'AgentConnected',
        'TrackAgent',
        ready.message,
      );
    }
  }

  private observePropagation(name: string, status: SecAINodeStatus, current: CurrentPlan): void {
    const published = this.ctx.plans.current(name);
    const p = status.plan;
    if (!published || published.plan.generation !== current.generation) return;
    if (p?.appliedGeneration !== current.generation || p.appliedDigest !== current.digest || p.error) return;
    if (this.propagated.get(name) === current.generation) return;
    this.propagated.set(name, current.generation);
    this.ctx.fleetMetrics?.planPropagation.observe((this.ctx.clock.now() - published.changedAt) / 1000);
  }
}
