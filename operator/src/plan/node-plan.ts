// The plan of one node: a pure function of the CRs, the node's labels, what the node reports it
// trusts, and the egress policy versions released to it. Everything is sorted and normalised, so the
// same inputs always give the same digest; the generation moves only when the digest does.
import type { InferenceService, Model, VaultPolicy } from '../../../api/gen/crd-types.js';
import type { NodePlan, ServicePlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { planDigest } from '../../../api/proto/protocol.js';
import { mergeEgress, type EgressPolicyVersion } from './egress.js';
import { matchesSelector, type Labels } from './label-selector.js';
import { isDeleting, modelPlanOf } from './models.js';
import type { ReferenceResolver } from './references.js';
import { selectVaultPolicy, vaultPlanOf } from './vault.js';

/** The CRD defaults of InferenceService resources and listen port. */
export const SERVICE_DEFAULTS = { gpuLayers: 0, contextSize: 2048, threads: 1, parallelRequests: 1, queueDepth: 16, port: 8000 } as const;

/** Why a service chosen for a node is not in its plan (InferenceService notReadyReasons). */
export const ServiceExclusion = {
  NodeCordoned: 'NodeCordoned',
  ModelNotFound: 'ModelNotFound',
  ModelRevoked: 'ModelRevoked',
  ModelDeleting: 'ModelDeleting',
  ModelUnresolved: 'ModelUnresolved',
  ModelNotTrusted: 'ModelNotTrusted',
  AuthTokenUnresolved: 'AuthTokenUnresolved',
  PortConflict: 'PortConflict',
} as const;

export interface PlanNodeInput {
  name: string;
  labels: Labels;
  cordoned: boolean;
  /** SHA-256 digests the node reports its own quarantine promoted. */
  trustedDigests: ReadonlySet<string>;
}

export interface NodePlanInputs {
  node: PlanNodeInput;
  /** Each EgressPolicy in the version released to this node. */
  egressPolicies: readonly EgressPolicyVersion[];
  vaultPolicies: readonly VaultPolicy[];
  models: readonly Model[];
  services: readonly InferenceService[];
  /** Service name → nodes its placement chose (see assignServices). */
  serviceAssignments: ReadonlyMap<string, readonly string[]>;
  resolver: ReferenceResolver;
}

export interface Exclusion {
  name: string;
  reason: string;
  message: string;
}

export interface NodePlanResult {
  /** The plan with generation 0 and its digest set. */
  plan: NodePlan;
  /** The VaultPolicies that select the node but lose to `plan.vault.policy`. */
  shadowedVaultPolicies: string[];
  /** Services chosen for this node but not in its plan, with why. */
  excludedServices: Exclusion[];
  /** Models this node should hold whose signature references or pull Secret do not resolve (left out: fail closed). */
  unresolvedModels: Exclusion[];
}

const byName = <T extends { metadata: { name?: string } }>(a: T, b: T) => {
  const an = a.metadata.name ?? '';
  const bn = b.metadata.name ?? '';
  return an < bn ? -1 : an > bn ? 1 : 0;
};

/** Whether the node must hold `model`: by its placement, or because a service chosen for the node uses it. */
function needsModel(model: Model, node: PlanNodeInput, servicesHere: readonly InferenceService[]): boolean {
  // Without spec.placement a model is held only where services need it; with it, where it selects.
  if (model.spec.placement && matchesSelector(model.spec.placement.nodeSelector, node.labels)) return true;
  return servicesHere.some((s) => s.spec.modelRef.name === model.metadata.name);
}

export function computeNodePlan(inputs: NodePlanInputs): NodePlanResult {
  const { node, resolver } = inputs;
  const models = [...inputs.models].sort(byName);
  const modelsByName = new Map(models.map((m) => [m.metadata.name ?? '', m]));
  const servicesHere = [...inputs.services]
    .sort(byName)
    .filter((s) => inputs.serviceAssignments.get(s.metadata.name ?? '')?.includes(node.name));

  const modelPlans: NodePlan['models'] = [];
  const unresolvedModels: Exclusion[] = [];
  const unresolvedNames = new Set<string>();
  for (const model of models) {
    if (model.spec.revoked || isDeleting(model) || !needsModel(model, node, servicesHere)) continue;
    const entry = modelPlanOf(model, resolver);
    if (entry.ok) modelPlans.push(entry.value);
    else {
      unresolvedModels.push({ name: model.metadata.name ?? '', reason: entry.reason, message: entry.message });
      unresolvedNames.add(model.metadata.name ?? '');
    }
  }

  const services: ServicePlan[] = [];
  const excludedServices: Exclusion[] = [];
  const portsInUse = new Map<number, string>();
  for (const service of servicesHere) {
    const name = service.metadata.name ?? '';
    const modelName = service.spec.modelRef.name;
    const model = modelsByName.get(modelName);
    const exclude = (reason: string, message: string) => excludedServices.push({ name, reason, message });
    if (node.cordoned) {
      exclude(ServiceExclusion.NodeCordoned, 'the node is cordoned: it serves no model');
      continue;
    }
    if (!model) {
      exclude(ServiceExclusion.ModelNotFound, `Model ${modelName} does not exist`);
      continue;
    }
    if (model.spec.revoked) {
      exclude(ServiceExclusion.ModelRevoked, `Model ${modelName} is revoked`);
      continue;
    }
    if (isDeleting(model)) {
      exclude(ServiceExclusion.ModelDeleting, `Model ${modelName} is being deleted`);
      continue;
    }
    if (unresolvedNames.has(modelName)) {
      exclude(ServiceExclusion.ModelUnresolved, `the signature material or pull Secret of Model ${modelName} cannot be resolved`);
      continue;
    }
    if (!node.trustedDigests.has(model.spec.sha256)) {
      exclude(ServiceExclusion.ModelNotTrusted, `the node does not trust Model ${modelName} yet`);
      continue;
    }
    const token = resolver.secretKeySha256(service.spec.listen.authTokenSecretRef);
    if (!token.ok) {
      exclude(ServiceExclusion.AuthTokenUnresolved, token.message);
      continue;
    }
    const port = service.spec.listen.port ?? SERVICE_DEFAULTS.port;
    const holder = portsInUse.get(port);
    if (holder !== undefined) {
      exclude(ServiceExclusion.PortConflict, `port ${port} is taken by InferenceService ${holder} on this node`);
      continue;
    }
    portsInUse.set(port, name);
    const r = service.spec.resources ?? {};
    services.push({
      name,
      model: modelName,
      modelSha256: model.spec.sha256,
      gpuLayers: r.gpuLayers ?? SERVICE_DEFAULTS.gpuLayers,
      contextSize: r.contextSize ?? SERVICE_DEFAULTS.contextSize,
      threads: r.threads ?? SERVICE_DEFAULTS.threads,
      parallelRequests: r.parallelRequests ?? SERVICE_DEFAULTS.parallelRequests,
      queueDepth: r.queueDepth ?? SERVICE_DEFAULTS.queueDepth,
      port,
      authTokenSha256: token.value,
    });
  }

  const vault = selectVaultPolicy(inputs.vaultPolicies, node.labels);
  const plan: NodePlan = {
    nodeName: node.name,
    generation: 0,
    digest: '',
    egress: mergeEgress(inputs.egressPolicies, node.labels),
    vault: vault.applied ? vaultPlanOf(vault.applied) : undefined,
    models: modelPlans,
    // Fleet-wide: a node contains a revoked artifact wherever it finds it, whatever its placement.
    revoked: models
      .filter((m) => m.spec.revoked && !isDeleting(m))
      .map((m) => ({ name: m.metadata.name ?? '', sha256: m.spec.sha256, reason: m.spec.revokedReason ?? '' })),
    services,
    cordoned: node.cordoned,
  };
  plan.digest = planDigest(plan);
  return { plan, shadowedVaultPolicies: vault.shadowed, excludedServices, unresolvedModels };
}

