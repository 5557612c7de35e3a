// The informers every controller reads from: fleet Nodes (filtered by the fleet selector on the
// server), the five secai.io kinds, and ConfigMaps and Secrets of the operator's own namespace.
// Secrets enter the cache as SHA-256 digests of their values: the operator never holds a token. The
// one exception is pull Secrets (type kubernetes.io/dockerconfigjson), whose registry credentials a
// node needs to pull a Model and so are kept, parsed (pull-secret.ts).
import { createHash } from 'node:crypto';
import type { V1ConfigMap, V1Node, V1ObjectMeta } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { resourcePath } from '../../../api/crd/paths.js';
import type { EgressPolicy, InferenceService, Model, SecAINode, VaultPolicy } from '../../../api/gen/crd-types.js';
import { Informer, type InformerOptions, type KubeObject } from '../runtime/informer.js';
import type { KubeClient } from '../runtime/kube-client.js';
import { DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, parseDockerConfigJson, type PullSecretAuths } from '../../../api/docker-config.js';

export type Node = V1Node & KubeObject & { metadata: V1ObjectMeta };
export type ConfigMap = V1ConfigMap & KubeObject & { metadata: V1ObjectMeta };

/** A Secret as cached: each key's value replaced by the SHA-256 (hex) of the value with surrounding whitespace trimmed. */
export interface SecretDigests extends KubeObject {
  type?: string;
  digests: Record<string, string>;
  /** Pull Secrets only: their registry credentials, or why they cannot be read. */
  pullSecret?: PullSecretAuths;
}

/** The largest Secret value digested; longer values are not tokens and are left out. */
const MAX_SECRET_VALUE_BYTES = 64 * 1024;

export function secretToDigests(secret: KubeObject & { type?: string; data?: Record<string, string> }): SecretDigests {
  const digests: Record<string, string> = {};
  for (const [key, value] of Object.entries(secret.data ?? {})) {
    const bytes = Buffer.from(value, 'base64');
    if (bytes.length > MAX_SECRET_VALUE_BYTES) continue;
    // Clients present the token in an Authorization header, which cannot carry surrounding
    // whitespace; a Secret made from a file often ends with a newline.
    digests[key] = createHash('sha256').update(bytes.toString('utf8').trim()).digest('hex');
  }
  const { name, namespace, uid, resourceVersion } = secret.metadata;
  const view: SecretDigests = { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace, uid, resourceVersion }, digests };
  if (secret.type !== undefined) view.type = secret.type;
  if (secret.type === DOCKER_CONFIG_JSON_TYPE) {
    const config = secret.data?.[DOCKER_CONFIG_JSON_KEY];
    view.pullSecret = config === undefined ? { ok: false, message: `the Secret has no ${DOCKER_CONFIG_JSON_KEY} key` } : parseDockerConfigJson(Buffer.from(config, 'base64'));
  }
  return view;
}

/**
 * Objects as cached: without metadata.managedFields, which no controller reads and which is often
 * larger than the rest of the object (a fleet of a thousand nodes holds thousands of them).
 */
export function withoutManagedFields<T extends KubeObject>(obj: T): T {
  if (!obj.metadata.managedFields) return obj;
  const { managedFields: _dropped, ...metadata } = obj.metadata;
  return { ...obj, metadata };
}

/** A fleet Node as cached: its metadata and spec (taints); its status (images, capacity, conditions) is never read. */
export function fleetNodeView(node: Node): Node {
  const { status: _dropped, ...rest } = withoutManagedFields(node);
  return rest;
}

export interface FleetCachesOptions {
  client: KubeClient;
  logger: Logger;
  /** The operator's namespace: the only one whose ConfigMaps and Secrets it reads. */
  namespace: string;
  /** Label selector of fleet Nodes. */
  fleetSelector: string;
  /** Passed to every informer (backoff, resync, watchdog). */
  informerOptions?: Partial<InformerOptions<KubeObject>>;
}

export class FleetCaches {
  readonly nodes: Informer<Node>;
  readonly secaiNodes: Informer<SecAINode>;
  readonly models: Informer<Model>;
  readonly egressPolicies: Informer<EgressPolicy>;
  readonly vaultPolicies: Informer<VaultPolicy>;
  readonly inferenceServices: Informer<InferenceService>;
  readonly configMaps: Informer<ConfigMap>;
  readonly secrets: Informer<SecretDigests>;
  readonly namespace: string;

  constructor(opts: FleetCachesOptions) {
    this.namespace = opts.namespace;
    const make = <T extends KubeObject>(path: string, extra: Partial<InformerOptions<T>> = {}) =>
      new Informer<T>({ client: opts.client, logger: opts.logger, path, transform: withoutManagedFields, ...(opts.informerOptions as Partial<InformerOptions<T>>), ...extra });
    const ns = encodeURIComponent(opts.namespace);
    this.nodes = make<Node>('/api/v1/nodes', { labelSelector: opts.fleetSelector, transform: fleetNodeView });
    this.secaiNodes = make<SecAINode>(resourcePath('secainodes'));
    this.models = make<Model>(resourcePath('models'));
    this.egressPolicies = make<EgressPolicy>(resourcePath('egresspolicies'));
    this.vaultPolicies = make<VaultPolicy>(resourcePath('vaultpolicies'));
    this.inferenceServices = make<InferenceService>(resourcePath('inferenceservices'));
    this.configMaps = make<ConfigMap>(`/api/v1/namespaces/${ns}/configmaps`);
    this.secrets = make<SecretDigests>(`/api/v1/namespaces/${ns}/secrets`, {
      transform: (s) => secretToDigests(s as unknown as KubeObject & { type?: string; data?: Record<string, string> }),
    });
  }

  private all(): Informer<KubeObject>[] {
    return [this.nodes, this.secaiNodes, this.models, this.egressPolicies, this.vaultPolicies, this.inferenceServices, this.configMaps, this.secrets] as unknown as Informer<KubeObject>[];
  }

  start(): void {
    for (const informer of this.all()) informer.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.all().map((i) => i.stop()));
  }

  synced(): boolean {
    return this.all().every((i) => i.hasSynced());
  }

  async waitForSync(timeoutMs: number): Promise<void> {
    await Promise.all(this.all().map((i) => i.waitForSync(timeoutMs)));
  }
}
