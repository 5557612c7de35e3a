// Objects a plan refers to by name (signature bundles and keys in ConfigMaps, service tokens and
// registry pull Secrets in Secrets), looked up by the operator from its caches. The plan gets bytes
// and digests, never a token; a registry credential is the one secret it carries, to the node that
// pulls with it.
import type { ConfigMapKeyRef, SecretKeyRef } from '../../../api/gen/crd-types.js';
import type { RegistryCredential } from '../../../api/gen/proto/secai/fleet/v1/agent.js';

export type Resolution<T> = { ok: true; value: T } | { ok: false; reason: string; message: string };

export interface ReferenceResolver {
  configMapKey(ref: ConfigMapKeyRef): Resolution<Buffer>;
  /** SHA-256 (hex) of the token in the Secret key. */
  secretKeySha256(ref: SecretKeyRef): Resolution<string>;
  /** The credential for `registry` in the pull Secret `name` of the operator's namespace. */
  registryCredential(secretName: string, registry: string): Resolution<RegistryCredential>;
}
