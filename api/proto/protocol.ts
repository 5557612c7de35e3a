// Constants and canonical forms of the agent channel that both ends must agree on.
import { createHash } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';
import { NodePlan } from '../gen/proto/secai/fleet/v1/agent.js';

/** Bumped on any incompatible change of agent.proto semantics; agents with another version are refused. */
export const PROTOCOL_VERSION = 2;

/** Largest message either end accepts (a plan with a 100,000-entry allowlist fits in about 4 MiB). */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/** gRPC metadata key of the projected ServiceAccount token. */
export const AUTHORIZATION_METADATA = 'authorization';

/** The audience agent tokens are issued for and checked against. */
export const TOKEN_AUDIENCE = 'secai-fleet-agent';

/**
 * SHA-256 (hex) of the canonical JSON of a plan with generation 0 and an empty digest, and registry
 * credentials reduced to their revision: the digest is published in SecAINode status, and the rest
 * of a plan follows from CRs anyone with read access sees, so a digest over a password would let
 * them test guesses of it offline.
 */
export function planDigest(plan: NodePlan): string {
  const models = plan.models.map((m) => (m.oci?.credential ? { ...m, oci: { ...m.oci, credential: { username: '', password: '', identityToken: '', revision: m.oci.credential.revision } } } : m));
  const content = NodePlan.toJSON({ ...plan, models, generation: 0, digest: '' });
  return createHash('sha256').update(canonicalJson(content)).digest('hex');
}

