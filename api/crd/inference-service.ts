import { conditions, count, DNS_SUBDOMAIN, labelSelector, objectKeyRef, observedGeneration } from './common.js';
import { conditionColumn, type ResourceDefinition } from './resource.js';
import { array, enumeration, integer, object, optional, required, string } from './schema.js';

export const INFERENCE_ENGINES = ['llamacpp'] as const;

export const inferenceServiceSpec = object('InferenceServiceSpec', 'Serve a Trusted model on selected nodes.', {
  modelRef: required(
    object('ModelReference', 'The Model to serve. A node serves it only once its own quarantine trusts it.', {
      name: required(string('The Model name.', { maxLength: 253, minLength: 1, pattern: DNS_SUBDOMAIN })),
    }),
  ),
  placement: optional(
    object('ServicePlacement', 'Where to serve.', {
      nodeSelector: optional(labelSelector('LabelSelector', 'Fleet nodes to serve on; empty selects every fleet node.')),
      maxNodes: optional(
        integer('Serve on at most this many of the selected nodes (alphabetical by node name).', { minimum: 1, maximum: 10000 }),
      ),
    }),
  ),
  engine: optional(enumeration('The inference engine.', INFERENCE_ENGINES, { default: 'llamacpp' })),
  resources: optional(
    object('InferenceResources', 'How the engine runs the model.', {
      gpuLayers: optional(
        integer('Layers to offload to a GPU: 0 for CPU only, -1 for all. A node without a GPU reports it rather than running on CPU.', {
          minimum: -1,
          maximum: 1024,
          default: 0,
          format: 'int32',
        }),
      ),
      contextSize: optional(integer('The context window in tokens.', { minimum: 128, maximum: 131072, default: 2048, format: 'int32' })),
      threads: optional(integer('CPU threads per worker.', { minimum: 1, maximum: 256, default: 1, format: 'int32' })),
      parallelRequests: optional(
        integer('Requests served at once; more wait in the queue.', { minimum: 1, maximum: 64, default: 1, format: 'int32' }),
      ),
      queueDepth: optional(
        integer('Requests that may wait; beyond this the node answers 429.', { minimum: 0, maximum: 1024, default: 16, format: 'int32' }),
      ),
    }),
  ),
  listen: required(
    object('InferenceListen', 'The OpenAI-compatible HTTP endpoint on each node.', {
      port: optional(integer('The TCP port.', { minimum: 1024, maximum: 65535, default: 8000, format: 'int32' })),
      authTokenSecretRef: required(
        objectKeyRef('SecretKeyRef', 'A Secret key holding the bearer token clients must present.', 'Secret'),
      ),
    }),
  ),
});

export const inferenceServiceStatus = object('InferenceServiceStatus', 'Where the model is served, and why not elsewhere.', {
  observedGeneration: optional(observedGeneration()),
  nodes: optional(
    object('ServiceNodeCounts', 'How many nodes serve it.', {
      selected: required(count('Nodes chosen by the placement.')),
      ready: required(count('Nodes serving it now.')),
      notReady: required(count('Selected nodes not serving it.')),
    }),
  ),
  notReadyReasons: optional(
    array(
      'Why selected nodes do not serve it, with how many nodes give each reason (per-node detail is on SecAINode).',
      object('ReasonCount', 'A reason and how many nodes report it.', {
        reason: required(string('The stable reason code.', { maxLength: 128 })),
        nodes: required(count('Nodes that report it.')),
      }),
      { maxItems: 32, listType: 'map', listMapKeys: ['reason'] },
    ),
  ),
  conditions: optional(conditions()),
});

export const inferenceServiceResource: ResourceDefinition = {
  kind: 'InferenceService',
  plural: 'inferenceservices',
  singular: 'inferenceservice',
  shortNames: ['secisvc'],
  description: 'An OpenAI-compatible inference endpoint for a Trusted model on selected SecAI nodes.',
  spec: inferenceServiceSpec,
  status: inferenceServiceStatus,
  printerColumns: [
    { name: 'Model', type: 'string', jsonPath: '.spec.modelRef.name', description: 'The Model served.' },
    { name: 'Selected', type: 'integer', jsonPath: '.status.nodes.selected', description: 'Nodes chosen.' },
    { name: 'Serving', type: 'integer', jsonPath: '.status.nodes.ready', description: 'Nodes serving it.' },
    conditionColumn('Ready'),
    { name: 'Port', type: 'integer', jsonPath: '.spec.listen.port', description: 'The node port.', priority: 1 },
  ],
};
