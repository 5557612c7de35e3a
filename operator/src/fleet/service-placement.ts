// Which nodes each InferenceService runs on, for the whole fleet at once (maxNodes picks by node
// name across the fleet), recomputed only after a Node, a SecAINode's cordon or a service changed.
import type { SecAINode } from '../../../api/gen/crd-types.js';
import { isDeleting } from '../plan/models.js';
import { assignServices } from '../plan/services.js';
import type { FleetCaches, Node } from './caches.js';

export class ServicePlacement {
  private cached?: Map<string, string[]>;

  constructor(private readonly caches: FleetCaches) {
    const invalidate = () => (this.cached = undefined);
    // Placement reads Node labels only: taint and status updates leave it as it is.
    const labelsOf = (n: Node) => JSON.stringify(n.metadata.labels ?? {});
    caches.nodes.addHandler({ onAdd: invalidate, onUpdate: (a, b) => void (labelsOf(a) !== labelsOf(b) && invalidate()), onDelete: invalidate });
    caches.inferenceServices.addHandler({ onAdd: invalidate, onUpdate: invalidate, onDelete: invalidate });
    const cordonOf = (n: SecAINode) => n.spec?.cordoned ?? false;
    caches.secaiNodes.addHandler({
      onAdd: invalidate,
      onUpdate: (a, b) => void (cordonOf(a) !== cordonOf(b) && invalidate()),
      onDelete: invalidate,
    });
  }

  /** Service name → the fleet nodes chosen for it. */
  assignments(): Map<string, string[]> {
    if (!this.cached) {
      const nodes = this.caches.nodes.list().map((n) => ({
        name: n.metadata.name ?? '',
        labels: n.metadata.labels ?? {},
        cordoned: this.caches.secaiNodes.get(n.metadata.name ?? '')?.spec?.cordoned ?? false,
      }));
      this.cached = assignServices(this.caches.inferenceServices.list().filter((s) => !isDeleting(s)), nodes);
    }
    return this.cached;
  }
}
