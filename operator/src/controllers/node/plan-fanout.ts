// A fleet-wide change (a policy or its rollout record, a model, a service, a referenced ConfigMap or
// Secret, a cordon) changes many plans at once. Queued one node at a time behind the status writes
// of the others, the last node of a large fleet would get its plan seconds late; so every fleet
// node's plan is recomputed and published in one pass of pure computation (in slices, so that the
// channel flushes while the pass goes on), and each node is then queued for its status write.
// Requests coalesce: any number of changes during a pass cause one more pass.
import type { FleetContext } from '../../fleet/context.js';
import type { NodePlanner } from './planner.js';

/** Nodes planned between two turns of the event loop. */
const SLICE = 100;

export interface PlanFanOutOptions {
  ctx: FleetContext;
  planner: NodePlanner;
  /** Queues a node for its reconcile (status, taint). */
  enqueue: (node: string) => void;
  /** Whether the node controller runs: a standby computes no plans. */
  active: () => boolean;
}

export class PlanFanOut {
  private scheduled = false;
  private running = false;
  private again = false;
  /** Passes completed (for tests and logs). */
  passes = 0;

  constructor(private readonly opts: PlanFanOutOptions) {}

  /** Replans every fleet node soon; before the controller runs, only queues them. */
  request(): void {
    if (!this.opts.active()) {
      for (const name of this.opts.ctx.caches.nodes.keys()) this.opts.enqueue(name);
      return;
    }
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => void this.run());
  }

  private async run(): Promise<void> {
    this.scheduled = false;
    this.running = true;
    const { ctx, planner, enqueue } = this.opts;
    try {
      do {
        this.again = false;
        const names = ctx.caches.nodes.keys();
        for (const [i, name] of names.entries()) {
          const node = ctx.caches.nodes.get(name);
          const secaiNode = ctx.caches.secaiNodes.get(name);
          // A node not enrolled yet is planned by its reconcile, which enrols it.
          if (node && secaiNode) planner.planAndPublish(node, secaiNode, ctx.clock.now());
          enqueue(name);
          if ((i + 1) % SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
        }
        this.passes++;
      } while (this.again && this.opts.active());
    } catch (err) {
      // The reconciles queued above recompute every plan anyway; nothing is lost but time.
      ctx.logger.error({ err }, 'fleet-wide replanning failed');
      for (const name of ctx.caches.nodes.keys()) enqueue(name);
    } finally {
      this.running = false;
    }
  }
}
