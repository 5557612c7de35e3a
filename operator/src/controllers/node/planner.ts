// Computes a node's plan, numbers it and publishes it: pure computation over the caches, no API
// call, so that a fleet-wide change reaches every agent before any status is written.
//
// Publishing before persisting. The generation of a plan is persisted in SecAINode status after
// the plan went out, so a crash can lose the last generations published to a node; the agent may
// even have applied one of them. A restarted (or newly elected) operator must never hand that
// agent a lower generation (the agent refuses it) nor reuse one for other content. Generations are
// therefore numbered from the highest of: the plan this process published, the plan persisted in
// status, and the plan the agent says it enforces (its Hello, then its reports). The agent's word
// can only raise the number (and only its own node's); the channel holds back any plan below it
// until the node's reconcile has renumbered it (NodeReportIntake.subscribePlan).
import { resourcePath } from '../../../../api/crd/paths.js';
import type { SecAINode } from '../../../../api/gen/crd-types.js';
import { NodePlan } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import { MAX_MESSAGE_BYTES } from '../../../../api/proto/protocol.js';
import type { Node } from '../../fleet/caches.js';
import type { NodeControllerContext } from './context.js';
import type { AppliedPlan } from '../../fleet/intake.js';
import { computeNodePlan, type NodePlanResult } from '../../plan/node-plan.js';
import type { CurrentPlan } from './status.js';
import { planInputsFor } from './plan-inputs.js';

/** Agent-reported generations above this are ignored: the sequence must stay a safe integer. */
export const MAX_PLAN_GENERATION = 2 ** 52;

export interface PlanVersion {
  generation: number;
  digest: string;
}

/**
 * The generation of a plan with `digest`: the same as the plan this process published or persisted
 * with that digest, else one more than any of them; never below what the agent enforces, and equal
 * to it only for the very plan the agent enforces.
 */
export function assignGeneration(
  digest: string,
  known: { published?: PlanVersion | undefined; persisted?: PlanVersion | undefined; agent?: PlanVersion | undefined },
): number {
  const { published, persisted } = known;
  let generation =
    published?.digest === digest
      ? published.generation
      : persisted?.digest === digest
        ? persisted.generation
        : Math.max(published?.generation ?? 0, persisted?.generation ?? 0) + 1;
  const agent = known.agent && known.agent.generation <= MAX_PLAN_GENERATION ? known.agent : undefined;
  if (agent && agent.generation >= generation) {
    generation = agent.digest === digest ? agent.generation : agent.generation + 1;
  }
  return generation;
}

export interface PlannedNode {
  result: NodePlanResult;
  /** Whether the plan was new (another generation or digest) and went to the agent. */
  published: boolean;
  current: CurrentPlan;
  egressRevisions: Record<string, string | undefined>;
}

export class NodePlanner {
  constructor(private readonly ctx: NodeControllerContext) {}

  /** What the node's agent enforces by its own account: its latest report, else its Hello. */
  private agentPlan(name: string): AppliedPlan | undefined {
    const obs = this.ctx.intake.observations(name);
    if (!obs) return undefined;
    const report = obs.report;
    if (report && (!obs.session || report.receivedAt >= obs.session.connectedAt) && report.appliedDigest) {
      return { generation: report.appliedGeneration, digest: report.appliedDigest };
    }
    return obs.session?.applied;
  }

  /** Computes, numbers and (unless it is too large for the channel) publishes the node's plan. */
  planAndPublish(node: Node, secaiNode: SecAINode | undefined, now: number): PlannedNode {
    const { ctx } = this;
    const name = node.metadata.name ?? '';
    const { inputs, egressRevisions } = planInputsFor(ctx, node, secaiNode);
    const result = computeNodePlan(inputs);
    const published = ctx.plans.current(name)?.plan;
    const persisted = secaiNode ? ctx.applier.observedStatus<NonNullable<SecAINode['status']>>(resourcePath('secainodes', name), secaiNode)?.plan : undefined;
    const size = NodePlan.encode(result.plan).finish().length;
    if (size > MAX_MESSAGE_BYTES) {
      const kept = published ?? persisted;
      const tooLarge = `the plan is ${size} bytes, over the channel limit of ${MAX_MESSAGE_BYTES}`;
      return { result, published: false, egressRevisions, current: { generation: kept?.generation ?? 0, digest: kept?.digest ?? '', requireSecureBoot: false, tooLarge } };
    }
    const generation = assignGeneration(result.plan.digest, {
      published,
      persisted: persisted?.digest !== undefined && persisted.generation !== undefined ? { generation: persisted.generation, digest: persisted.digest } : undefined,
      agent: this.agentPlan(name),
    });
    result.plan.generation = generation;
    const isNew = ctx.plans.publish(name, result.plan, { ...result, egressRevisions }, now);
    return {
      result,
      published: isNew,
      egressRevisions,
      current: {
        generation,
        digest: result.plan.digest,
        ...(result.plan.vault ? { vaultPolicy: result.plan.vault.policy } : {}),
        requireSecureBoot: result.plan.vault?.requireSecureBoot ?? false,
      },
    };
  }
}
