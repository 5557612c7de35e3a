// Where each InferenceService runs: the fleet nodes its placement selects, cordoned nodes left out,
// the first maxNodes by name. A fleet-wide decision, made once and handed to every node's plan.
import type { InferenceService } from '../../../api/gen/crd-types.js';
import { matchesSelector, type Labels } from './label-selector.js';

export interface FleetNodeView {
  name: string;
  labels: Labels;
  cordoned: boolean;
}

/** Service name → the nodes chosen for it, sorted by name. */
export function assignServices(services: readonly InferenceService[], nodes: readonly FleetNodeView[]): Map<string, string[]> {
  const candidates = nodes.filter((n) => !n.cordoned).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const assignments = new Map<string, string[]>();
  for (const service of services) {
    const selected = candidates.filter((n) => matchesSelector(service.spec.placement?.nodeSelector, n.labels)).map((n) => n.name);
    const maxNodes = service.spec.placement?.maxNodes;
    assignments.set(service.metadata.name ?? '', maxNodes !== undefined ? selected.slice(0, maxNodes) : selected);
  }
  return assignments;
}
