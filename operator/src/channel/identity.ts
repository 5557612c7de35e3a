// Which node an agent is. The agent presents a projected ServiceAccount token bound to its Pod and
// issued for our audience; the API server's TokenReview vouches for it, and the Pod it is bound to
// names the Node. Nothing the agent says about itself is trusted beyond that.
import { RefusalReason } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { KubeClient } from '../runtime/kube-client.js';

export interface AgentIdentityPolicy {
  /** The audience agent tokens must be issued for. */
  audience: string;
  /** The ServiceAccount agents run as. */
  serviceAccount: { namespace: string; name: string };
}

export interface AgentIdentity {
  node: string;
  pod: { namespace: string; name: string; uid: string };
}

export type IdentityVerdict =
  | { ok: true; identity: AgentIdentity }
  | { ok: false; reason: RefusalReason; message: string };

interface TokenReviewStatus {
  authenticated?: boolean;
  error?: string;
  audiences?: string[];
  user?: { username?: string; extra?: Record<string, string[]> };
}

interface PodView {
  metadata?: { uid?: string; deletionTimestamp?: string };
  spec?: { nodeName?: string; serviceAccountName?: string };
}

/** Bearer tokens are JWTs of at most a few KiB; anything longer is not worth a TokenReview. */
const MAX_TOKEN_LENGTH = 16 * 1024;

const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';

function refuse(reason: RefusalReason, message: string): IdentityVerdict {
  return { ok: false, reason, message };
}

function single(extra: Record<string, string[]> | undefined, key: string): string | undefined {
  const values = extra?.[key];
  return values && values.length === 1 ? values[0] : undefined;
}

export async function verifyAgentToken(
  client: KubeClient,
  token: string | undefined,
  claimedNode: string,
  policy: AgentIdentityPolicy,
): Promise<IdentityVerdict> {
  if (!token) return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, 'no bearer token');
  if (token.length > MAX_TOKEN_LENGTH) return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, 'token too long');
  const review = await client.request<{ status?: TokenReviewStatus }>({
    method: 'POST',
    path: '/apis/authentication.k8s.io/v1/tokenreviews',
    body: {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, audiences: [policy.audience] },
    },
  });
  const status = review.status ?? {};
  if (!status.authenticated) {
    return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, `token rejected: ${status.error ?? 'not authenticated'}`);
  }
  if (!status.audiences?.includes(policy.audience)) {
    return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, `token not issued for audience ${policy.audience}`);
  }
  const { namespace, name } = policy.serviceAccount;
  const expectedUser = `system:serviceaccount:${namespace}:${name}`;
  if (status.user?.username !== expectedUser) {
    return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, `token belongs to ${status.user?.username ?? 'nobody'}, not ${expectedUser}`);
  }
  const podName = single(status.user.extra, EXTRA_POD_NAME);
  const podUid = single(status.user.extra, EXTRA_POD_UID);
  if (!podName || !podUid) {
    return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, 'token is not bound to a Pod');
  }
  const pod = await client.raw<PodView>({
    method: 'GET',
    path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(podName)}`,
  });
  if (pod.status === 404) return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, `Pod ${namespace}/${podName} no longer exists`);
  if (pod.status !== 200) throw new Error(`reading Pod ${namespace}/${podName}: HTTP ${pod.status}`);
  if (pod.body.metadata?.uid !== podUid) {
    return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, `Pod ${namespace}/${podName} was replaced since the token was issued`);
  }
  if (pod.body.metadata?.deletionTimestamp) {
    return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, `Pod ${namespace}/${podName} is being deleted`);
  }
  const node = pod.body.spec?.nodeName;
  if (!node) return refuse(RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, `Pod ${namespace}/${podName} is not bound to a node`);
  const tokenNode = single(status.user.extra, EXTRA_NODE_NAME);
  if (tokenNode !== undefined && tokenNode !== node) {
    return refuse(RefusalReason.REFUSAL_REASON_IDENTITY_MISMATCH, `token bound to node ${tokenNode}, Pod runs on ${node}`);
  }
  if (claimedNode !== node) {
    return refuse(RefusalReason.REFUSAL_REASON_IDENTITY_MISMATCH, `agent claims node ${claimedNode} but its Pod runs on ${node}`);
  }
  return { ok: true, identity: { node, pod: { namespace, name: podName, uid: podUid } } };
}
