// The fleet's own gauges, computed from the caches when scraped. No label carries a node or object
// name: per-node series would grow with the fleet (per-node detail is on each agent's /metrics).
// Exceptions, the failure gauges: secai_audit_log_failed, secai_node_not_compliant and
// secai_model_rejected have a series for each node (and model) that fails, and for no other, so that
// "whose audit log failed", "which nodes are not compliant" and "which models are rejected where" are
// each one PromQL query. Each failure needs a person, so these series are bounded by incidents, not
// by the size of the fleet.
import { Gauge, Histogram, type Registry } from 'prom-client';
import type { EgressPolicy, Model, SecAINode, VaultPolicy } from '../../../api/gen/crd-types.js';
import { conditionStatus, findCondition } from '../runtime/conditions.js';

export interface FleetMetricSources {
  secaiNodes(): SecAINode[];
  models(): Model[];
  egressPolicies(): EgressPolicy[];
  vaultPolicies(): VaultPolicy[];
}

const NODE_CONDITIONS = ['Ready', 'Compliant', 'Attested', 'AuditVerified'] as const;
const STATUSES = ['True', 'False', 'Unknown'] as const;
const MODEL_PHASES = ['Pending', 'Distributing', 'Trusted', 'Rejected', 'Revoked'] as const;
const ROLLOUT_STATES = ['Progressing', 'Complete', 'Stopped'] as const;

export class FleetMetrics {
  /** Seconds from a node's plan changing to the node reporting it applied. */
  readonly planPropagation: Histogram;

  constructor(registry: Registry, sources: FleetMetricSources) {
    const registers = [registry];
    new Gauge({
      name: 'secai_nodes',
      help: 'Fleet nodes by condition type and status.',
      labelNames: ['condition', 'status'] as const,
      registers,
      collect() {
        const nodes = sources.secaiNodes();
        for (const condition of NODE_CONDITIONS) {
          for (const status of STATUSES) {
            this.set({ condition, status }, nodes.filter((n) => conditionStatus(n.status?.conditions, condition) === status).length);
          }
        }
      },
    });
    new Gauge({
      name: 'secai_models',
      help: 'Models by fleet-wide phase.',
      labelNames: ['phase'] as const,
      registers,
      collect() {
        const models = sources.models();
        for (const phase of MODEL_PHASES) this.set({ phase }, models.filter((m) => (m.status?.phase ?? 'Pending') === phase).length);
      },
    });
    new Gauge({
      name: 'secai_policies',
      help: 'EgressPolicies and VaultPolicies by kind and Ready status.',
      labelNames: ['kind', 'ready'] as const,
      registers,
      collect() {
        const kinds = [
          ['EgressPolicy', sources.egressPolicies()],
          ['VaultPolicy', sources.vaultPolicies()],
        ] as const;
        for (const [kind, policies] of kinds) {
          for (const ready of STATUSES) {
            this.set({ kind, ready }, policies.filter((p) => conditionStatus(p.status?.conditions, 'Ready') === ready).length);
          }
        }
      },
    });
    new Gauge({
      name: 'secai_egress_rollouts',
      help: 'EgressPolicy rollouts by state.',
      labelNames: ['state'] as const,
      registers,
      collect() {
        const policies = sources.egressPolicies();
        for (const state of ROLLOUT_STATES) this.set({ state }, policies.filter((p) => p.status?.rollout?.state === state).length);
      },
    });
    new Gauge({
      name: 'secai_audit_log_failed',
      help: 'Set to 1 for each node whose audit log failed verification (AuditVerified=False), with the failure reason; absent for every other node.',
      labelNames: ['node', 'reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const n of sources.secaiNodes()) {
          const audit = findCondition(n.status?.conditions, 'AuditVerified');
          if (audit?.status === 'False') this.set({ node: n.metadata.name ?? '', reason: audit.reason }, 1);
        }
      },
    });
    new Gauge({
      name: 'secai_node_not_compliant',
      help: 'Set to 1 for each fleet node whose Compliant condition is False, with its reason; absent for every other node.',
      labelNames: ['node', 'reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const n of sources.secaiNodes()) {
          const compliant = findCondition(n.status?.conditions, 'Compliant');
          if (compliant?.status === 'False') this.set({ node: n.metadata.name ?? '', reason: compliant.reason }, 1);
        }
      },
    });
    new Gauge({
      name: 'secai_model_rejected',
      help: "Set to 1 for each model a node's quarantine rejected, with the first failing stage and its reason; absent otherwise.",
      labelNames: ['model', 'node', 'stage', 'reason'] as const,
      registers,
      collect() {
        this.reset();
        for (const n of sources.secaiNodes()) {
          for (const m of n.status?.models ?? []) {
            if (m.state === 'Rejected') this.set({ model: m.name, node: n.metadata.name ?? '', stage: m.stage ?? '', reason: m.reason ?? '' }, 1);
          }
        }
      },
    });
    this.planPropagation = new Histogram({
      name: 'secai_plan_propagation_seconds',
      help: 'Time from a node plan changing to the node reporting it applied.',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
  }
}
