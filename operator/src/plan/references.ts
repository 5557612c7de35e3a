// Objects a plan refers to by name (signature bundles and keys in ConfigMaps, service tokens in
// Secrets), looked up by the operator from its caches. The plan gets bytes and digests, never a
// token.
import type { ConfigMapKeyRef, SecretKeyRef } from '../../../api/gen/crd-types.js';

export type Resolution<T> = { ok: true; value: T } | { ok: false; reason: string; message: string };

export interface ReferenceResolver {
  configMapKey(ref: ConfigMapKeyRef): Resolution<Buffer>;
  /** SHA-256 (hex) of the token in the Secret key. */
  secretKeySha256(ref: SecretKeyRef): Resolution<string>;
}
