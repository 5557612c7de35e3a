// Which of the plan's services this node serves, and why not the others: a pure function of the
// plan's services, the digests the node trusts, the revoked digests and the cordon. A node serves
// only a Trusted, non-revoked model, and nothing while cordoned.
import { ServiceState, type ServicePlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';

export const ServiceReason = {
  Serving: 'Serving',
  /** Serving, but a sandbox layer the design asks for (seccomp, Landlock) is missing on this node. */
  SandboxDegraded: 'SandboxDegraded',
  WorkerStarting: 'WorkerStarting',
  NodeCordoned: 'NodeCordoned',
  ModelRevoked: 'ModelRevoked',
  ModelNotTrusted: 'ModelNotTrusted',
  InvalidServicePlan: 'InvalidServicePlan',
  PortConflict: 'PortConflict',
  ListenFailed: 'ListenFailed',
  // Worker failures, as WorkerFailureReason names them.
  ModelDigestMismatch: 'ModelDigestMismatch',
  GPUUnavailable: 'GPUUnavailable',
  ModelLoadFailed: 'ModelLoadFailed',
  WorkerCrashed: 'WorkerCrashed',
  WorkerStartTimeout: 'WorkerStartTimeout',
  SandboxNotApplied: 'SandboxNotApplied',
  WorkerProtocolViolation: 'WorkerProtocolViolation',
} as const;
export type ServiceReason = (typeof ServiceReason)[keyof typeof ServiceReason];

export interface DesiredInference {
  services: readonly ServicePlan[];
  /** SHA-256 digests revoked fleet-wide. */
  revoked: ReadonlySet<string>;
  cordoned: boolean;
}

/** A service's settings with the plan's zeros replaced by defaults and every value bounded. */
export interface ServiceSettings {
  contextSize: number;
  /** One thread by default: on small nodes a second thread spins against the agent (ggml barriers). */
  threads: number;
  parallelRequests: number;
  queueDepth: number;
  gpuLayers: number;
}

export type ServiceDecision =
  | { plan: ServicePlan; serve: true; settings: ServiceSettings }
  | { plan: ServicePlan; serve: false; state: ServiceState; reason: ServiceReason; message: string };

const HEX64 = /^[0-9a-f]{64}$/;
const NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

export const SETTINGS_BOUNDS = {
  contextSize: { min: 128, max: 131_072, fallback: 2048 },
  threads: { min: 1, max: 256, fallback: 1 },
  parallelRequests: { min: 1, max: 64, fallback: 1 },
  queueDepth: { min: 0, max: 1024 },
  gpuLayers: { min: -1, max: 10_000 },
} as const;

/** Why the plan entry cannot be served as written, or undefined when it is well formed. */
export function servicePlanProblem(plan: ServicePlan): string | undefined {
  if (!NAME.test(plan.name)) return 'the service name is not a DNS subdomain name';
  if (!plan.model || plan.model.length > 253) return 'the model name is empty or too long';
  if (!HEX64.test(plan.modelSha256)) return 'model_sha256 is not 64 lowercase hex characters';
  if (!HEX64.test(plan.authTokenSha256)) return 'auth_token_sha256 is not 64 lowercase hex characters';
  if (!Number.isInteger(plan.port) || plan.port < 0 || plan.port > 65_535) return `port ${plan.port} is out of range`;
  const b = SETTINGS_BOUNDS;
  const within = (value: number, min: number, max: number) => value === 0 || (value >= min && value <= max);
  if (!within(plan.contextSize, b.contextSize.min, b.contextSize.max)) return `context_size ${plan.contextSize} is outside ${b.contextSize.min}..${b.contextSize.max}`;
  if (!within(plan.threads, b.threads.min, b.threads.max)) return `threads ${plan.threads} is outside ${b.threads.min}..${b.threads.max}`;
  if (!within(plan.parallelRequests, b.parallelRequests.min, b.parallelRequests.max)) {
    return `parallel_requests ${plan.parallelRequests} is outside ${b.parallelRequests.min}..${b.parallelRequests.max}`;
  }
  if (plan.queueDepth > b.queueDepth.max) return `queue_depth ${plan.queueDepth} is above ${b.queueDepth.max}`;
  if (plan.gpuLayers < b.gpuLayers.min || plan.gpuLayers > b.gpuLayers.max) return `gpu_layers ${plan.gpuLayers} is outside -1..${b.gpuLayers.max}`;
  return undefined;
}

export function serviceSettings(plan: ServicePlan): ServiceSettings {
  const b = SETTINGS_BOUNDS;
  return {
    contextSize: plan.contextSize || b.contextSize.fallback,
    threads: plan.threads || b.threads.fallback,
    parallelRequests: plan.parallelRequests || b.parallelRequests.fallback,
    queueDepth: plan.queueDepth,
    gpuLayers: plan.gpuLayers,
  };
}

export function decideServices(desired: DesiredInference, isTrusted: (sha256: string) => boolean): ServiceDecision[] {
  const names = new Set<string>();
  const ports = new Map<number, string>();
  return desired.services.map((plan): ServiceDecision => {
    const refuse = (state: ServiceState, reason: ServiceReason, message: string): ServiceDecision => ({ plan, serve: false, state, reason, message });
    const problem = servicePlanProblem(plan);
    if (problem) return refuse(ServiceState.SERVICE_STATE_FAILED, ServiceReason.InvalidServicePlan, problem);
    if (names.has(plan.name)) return refuse(ServiceState.SERVICE_STATE_FAILED, ServiceReason.InvalidServicePlan, `the plan names service ${plan.name} twice`);
    names.add(plan.name);
    if (desired.cordoned) return refuse(ServiceState.SERVICE_STATE_STOPPED, ServiceReason.NodeCordoned, 'the node is cordoned: it serves nothing');
    if (desired.revoked.has(plan.modelSha256)) {
      return refuse(ServiceState.SERVICE_STATE_STOPPED, ServiceReason.ModelRevoked, `model ${plan.model} (sha256 ${plan.modelSha256}) is revoked`);
    }
    if (!isTrusted(plan.modelSha256)) {
      return refuse(ServiceState.SERVICE_STATE_PENDING, ServiceReason.ModelNotTrusted, `model ${plan.model} is not in this node's trusted store (quarantine has not passed it)`);
    }
    if (plan.port !== 0) {
      const holder = ports.get(plan.port);
      if (holder) return refuse(ServiceState.SERVICE_STATE_FAILED, ServiceReason.PortConflict, `port ${plan.port} is already used by service ${holder}`);
      ports.set(plan.port, plan.name);
    }
    return { plan, serve: true, settings: serviceSettings(plan) };
  });
}
