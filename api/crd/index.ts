// The five kinds of the secai.io API, in the order they are documented and installed.
import { egressPolicyResource } from './egress-policy.js';
import { inferenceServiceResource } from './inference-service.js';
import { modelResource } from './model.js';
import type { ResourceDefinition } from './resource.js';
import { secaiNodeResource } from './secai-node.js';
import { vaultPolicyResource } from './vault-policy.js';

export const RESOURCES: readonly ResourceDefinition[] = [
  modelResource,
  egressPolicyResource,
  vaultPolicyResource,
  inferenceServiceResource,
  secaiNodeResource,
];
