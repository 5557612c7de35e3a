// Resolves the ConfigMap and Secret references of CRs from the caches. Only the operator's own
// namespace is readable (least privilege): a reference elsewhere does not resolve, and what depends
// on it stays out of the plans (fail closed), with the reason in the CR's status.
import type { ConfigMapKeyRef, SecretKeyRef } from '../../../api/gen/crd-types.js';
import type { RegistryCredential } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { ReferenceResolver, Resolution } from '../plan/references.js';
import type { ConfigMap, SecretDigests } from './caches.js';
import { credentialFor, DOCKER_CONFIG_JSON_TYPE } from '../../../api/docker-config.js';
import type { Informer } from '../runtime/informer.js';

/** A trusted root or bundle is tens of KiB; a ConfigMap holds at most 1 MiB. */
export const MAX_REFERENCED_BYTES = 1024 * 1024;

export const ResolutionReason = {
  OutsideOperatorNamespace: 'OutsideOperatorNamespace',
  ConfigMapNotFound: 'ConfigMapNotFound',
  SecretNotFound: 'SecretNotFound',
  KeyNotFound: 'KeyNotFound',
  ValueTooLarge: 'ValueTooLarge',
  PullSecretNotFound: 'PullSecretNotFound',
  /** Not of type kubernetes.io/dockerconfigjson. */
  PullSecretWrongType: 'PullSecretWrongType',
  /** Its .dockerconfigjson cannot be read (missing, not JSON, an entry without a usable credential). */
  PullSecretInvalid: 'PullSecretInvalid',
  /** No auths entry for the Model's registry. */
  PullSecretNoEntry: 'PullSecretNoEntry',
} as const;

export class CacheReferenceResolver implements ReferenceResolver {
  constructor(
    private readonly namespace: string,
    private readonly configMaps: Informer<ConfigMap>,
    private readonly secrets: Informer<SecretDigests>,
  ) {}

  private outside(kind: string, ref: { namespace: string; name: string }): Resolution<never> {
    return {
      ok: false,
      reason: ResolutionReason.OutsideOperatorNamespace,
      message: `${kind} ${ref.namespace}/${ref.name} is outside the operator namespace ${this.namespace}, which is the only one it may read`,
    };
  }

  configMapKey(ref: ConfigMapKeyRef): Resolution<Buffer> {
    if (ref.namespace !== this.namespace) return this.outside('ConfigMap', ref);
    const cm = this.configMaps.get(`${ref.namespace}/${ref.name}`);
    if (!cm) return { ok: false, reason: ResolutionReason.ConfigMapNotFound, message: `ConfigMap ${ref.namespace}/${ref.name} not found` };
    const text = cm.data?.[ref.key];
    const binary = cm.binaryData?.[ref.key];
    const value = text !== undefined ? Buffer.from(text, 'utf8') : binary !== undefined ? Buffer.from(binary, 'base64') : undefined;
    if (!value) return { ok: false, reason: ResolutionReason.KeyNotFound, message: `ConfigMap ${ref.namespace}/${ref.name} has no key ${ref.key}` };
    if (value.length > MAX_REFERENCED_BYTES) {
      return { ok: false, reason: ResolutionReason.ValueTooLarge, message: `ConfigMap ${ref.namespace}/${ref.name} key ${ref.key} exceeds ${MAX_REFERENCED_BYTES} bytes` };
    }
    return { ok: true, value };
  }

  secretKeySha256(ref: SecretKeyRef): Resolution<string> {
    if (ref.namespace !== this.namespace) return this.outside('Secret', ref);
    const secret = this.secrets.get(`${ref.namespace}/${ref.name}`);
    if (!secret) return { ok: false, reason: ResolutionReason.SecretNotFound, message: `Secret ${ref.namespace}/${ref.name} not found` };
    const digest = secret.digests[ref.key];
    if (!digest) return { ok: false, reason: ResolutionReason.KeyNotFound, message: `Secret ${ref.namespace}/${ref.name} has no usable key ${ref.key}` };
    return { ok: true, value: digest };
  }

  // Messages name the Secret, its type and the registry: never a value.
  registryCredential(secretName: string, registry: string): Resolution<RegistryCredential> {
    const name = `Secret ${this.namespace}/${secretName}`;
    const secret = this.secrets.get(`${this.namespace}/${secretName}`);
    if (!secret) return { ok: false, reason: ResolutionReason.PullSecretNotFound, message: `the pull ${name} not found` };
    if (secret.type !== DOCKER_CONFIG_JSON_TYPE || !secret.pullSecret) {
      return { ok: false, reason: ResolutionReason.PullSecretWrongType, message: `the pull ${name} is of type ${(secret.type ?? 'Opaque').slice(0, 100)}, not ${DOCKER_CONFIG_JSON_TYPE}` };
    }
    if (!secret.pullSecret.ok) return { ok: false, reason: ResolutionReason.PullSecretInvalid, message: `the pull ${name}: ${secret.pullSecret.message}` };
    const auth = credentialFor(secret.pullSecret.auths, registry);
    if (!auth) return { ok: false, reason: ResolutionReason.PullSecretNoEntry, message: `the pull ${name} has no auths entry for ${registry}` };
    return { ok: true, value: { ...auth, revision: `${secret.metadata.uid ?? ''}/${secret.metadata.resourceVersion ?? ''}` } };
  }
}
