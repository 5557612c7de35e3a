// The current plan of every fleet node, for the agent channel to push and for the controllers that
// roll up fleet state. A plan is published as soon as it is computed, before its generation and
// digest are persisted in SecAINode status (the planner says how a restarted operator still
// continues the same sequence).
import type { NodePlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { Exclusion } from '../plan/node-plan.js';

export interface PlanDetails {
  shadowedVaultPolicies: string[];
  excludedServices: Exclusion[];
  unresolvedModels: Exclusion[];
  /** EgressPolicy name → the revision of it this plan was computed with (absent: not rolled out to the node yet). */
  egressRevisions: Record<string, string | undefined>;
}

export interface PublishedPlan extends PlanDetails {
  plan: NodePlan;
  /** EgressPolicy name → its revision in this plan, and the first plan generation that had it and when (ms). */
  egressSince: Map<string, { revision: string | undefined; generation: number; at: number }>;
  /** When this generation was first computed (ms), for the propagation-time metric. */
  changedAt: number;
}

export type PlanListener = (node: string, plan: NodePlan) => void;

export class PlanPublisher {
  private readonly plans = new Map<string, PublishedPlan>();
  private readonly subscribers = new Map<string, Set<PlanListener>>();
  private readonly listeners = new Set<(node: string) => void>();

  /** Stores the plan; subscribers hear of it when its generation or digest is new. Returns whether it was. */
  publish(node: string, plan: NodePlan, details: PlanDetails, now: number): boolean {
    const previous = this.plans.get(node);
    const changed = !previous || previous.plan.generation !== plan.generation || previous.plan.digest !== plan.digest;
    const egressSince = new Map<string, { revision: string | undefined; generation: number; at: number }>();
    for (const [policy, revision] of Object.entries(details.egressRevisions)) {
      const before = previous?.egressSince.get(policy);
      egressSince.set(policy, before && before.revision === revision ? before : { revision, generation: plan.generation, at: now });
    }
    this.plans.set(node, { ...details, plan, egressSince, changedAt: changed ? now : (previous?.changedAt ?? now) });
    if (changed) {
      for (const cb of this.subscribers.get(node) ?? []) {
        try {
          cb(node, plan);
        } catch {
          // A subscriber's failure is its own; the plan stays published.
        }
      }
    }
    for (const listener of this.listeners) listener(node);
    return changed;
  }

  current(node: string): PublishedPlan | undefined {
    return this.plans.get(node);
  }

  nodes(): string[] {
    return [...this.plans.keys()];
  }

  /** Whether every one of `nodes` has a plan computed by this process. */
  primed(nodes: Iterable<string>): boolean {
    for (const n of nodes) if (!this.plans.has(n)) return false;
    return true;
  }

  remove(node: string): void {
    if (!this.plans.delete(node)) return;
    for (const listener of this.listeners) listener(node);
  }

  /** Calls `onPlan` with the node's current plan, if any, and with every new one; returns an unsubscribe. */
  subscribe(node: string, onPlan: (plan: NodePlan) => void): () => void {
    const listener: PlanListener = (_, plan) => onPlan(plan);
    let set = this.subscribers.get(node);
    if (!set) this.subscribers.set(node, (set = new Set()));
    set.add(listener);
    const current = this.plans.get(node);
    if (current) onPlan(current.plan);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.subscribers.delete(node);
    };
  }

  /** Hears of every publish and removal (controllers enqueue their roll-ups). */
  onPublish(listener: (node: string) => void): void {
    this.listeners.add(listener);
  }
}
