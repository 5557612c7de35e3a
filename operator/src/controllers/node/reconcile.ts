// Reconciles one fleet Node: its SecAINode exists, its plan is computed and published, its status
// says what the node reported, and the not-compliant taint is on the Node exactly while the node is
// not compliant. Level-triggered: whatever woke it, it reads the caches and converges.
import { API_VERSION } from '../../../../api/crd/common.js';
import { resourcePath } from '../../../../api/crd/paths.js';
import type { SecAINode, SecAINodeStatus } from '../../../../api/gen/crd-types.js';
import { NodePlan } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { MAX_MESSAGE_BYTES } from '../../../../api/proto/protocol.js';
import type { FleetContext } from '../../fleet/context.js';
import type { Node } from '../../fleet/caches.js';
import { computeNodePlan } from '../../plan/node-plan.js';
import { semanticallyEqual } from '../../runtime/apply.js';
import { conditionTransition, findCondition } from '../../runtime/conditions.js';
import type { ReconcileContext, ReconcileResult } from '../../runtime/controller.js';
import { CONTENT_TYPE, KubeApiError } from '../../runtime/kube-client.js';
import { reconcileRemovedNode } from './delete.js';
import { planInputsFor } from './plan-inputs.js';
import { computeNodeStatus, Reason, withoutVolatileFields, type CurrentPlan } from './status.js';
import { hasNotCompliantTaint, taintPatch, taintsFor } from './taint.js';

export class NodeReconciler {
  /** When each node's status was last written, for the refresh interval of volatile fields. */
  private readonly lastWrite = new Map<string, number>();
  /** The plan generation whose propagation time was last observed, per node. */
  private readonly propagated = new Map<string, number>();

  constructor(private readonly ctx: FleetContext) {}

  async reconcile(name: string, rc: ReconcileContext): Promise<ReconcileResult | void> {
    const { ctx } = this;
    const node = ctx.caches.nodes.get(name);
    if (!node) {
      await reconcileRemovedNode(ctx, name, rc);
      this.lastWrite.delete(name);
      this.propagated.delete(name);
      ctx.applier.forget(resourcePath('secainodes', name));
      return;
    }
    const secaiNode = ctx.caches.secaiNodes.get(name) ?? (await this.enroll(node, rc));
    const path = resourcePath('secainodes', name);
    const now = ctx.clock.now();

    const { inputs, egressRevisions } = planInputsFor(ctx, node, secaiNode);
    const result = computeNodePlan(inputs);
    const published = ctx.plans.current(name)?.plan;
    const observed = ctx.applier.observedStatus<SecAINodeStatus>(path, secaiNode);
    const persisted = observed?.plan;
    const size = NodePlan.encode(result.plan).finish().length;
    const tooLarge = size > MAX_MESSAGE_BYTES ? `the plan is ${size} bytes, over the channel limit of ${MAX_MESSAGE_BYTES}` : undefined;
    let current: CurrentPlan;
    if (tooLarge) {
      const kept = published ?? persisted;
      current = { generation: kept?.generation ?? 0, digest: kept?.digest ?? '', requireSecureBoot: false, tooLarge };
    } else {
      const digest = result.plan.digest;
      const generation =
        published?.digest === digest
          ? published.generation
          : persisted?.digest === digest
            ? persisted.generation
            : Math.max(published?.generation ?? 0, persisted?.generation ?? 0) + 1;
      result.plan.generation = generation;
      current = {
        generation,
        digest,
        ...(result.plan.vault ? { vaultPolicy: result.plan.vault.policy } : {}),
        requireSecureBoot: result.plan.vault?.requireSecureBoot ?? false,
      };
    }

    const observations = ctx.intake.observations(name);
    const graceEnds = ctx.settings.startedAt + ctx.settings.agentReconnectGraceMs;
    const desired = computeNodeStatus({
      existing: observed,
      objectGeneration: secaiNode.metadata.generation ?? 0,
      plan: current,
      observations,
      reconnectGraceOver: now >= graceEnds,
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
    // Published only once its generation is persisted, so that a restarted operator continues it.
    if (!tooLarge) {
      ctx.plans.publish(name, result.plan, { ...result, egressRevisions }, now);
    }

    const compliant = findCondition(desired.conditions, 'Compliant')?.status === 'True';
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

  private async announceTransitions(obj: SecAINode, before: SecAINodeStatus | undefined, after: SecAINodeStatus): Promise<void> {
    const compliant = conditionTransition(before?.conditions, after.conditions, 'Compliant');
    // Waiting for a first report or for a new plan to be applied is routine, not news; leaving or
    // entering any other state is.
    const previous = findCondition(before?.conditions, 'Compliant');
    const news =
      compliant?.status === 'True'
        ? previous?.reason !== Reason.PlanNotApplied
        : compliant !== undefined && compliant.reason !== Reason.NeverReported && compliant.reason !== Reason.PlanNotApplied;
    if (compliant && news) {
      await this.ctx.events.record(
        obj,
        compliant.status === 'True' ? 'Normal' : 'Warning',
        compliant.status === 'True' ? 'Compliant' : 'NotCompliant',
        'EvaluateCompliance',
        compliant.message,
      );
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
