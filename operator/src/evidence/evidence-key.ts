// The operator's evidence signing key (Ed25519): made once and kept in a Secret of the operator's
// namespace (so every replica signs with the same key), its public half published in a ConfigMap
// of the same name for auditors to pin. It is never rotated by the operator: bundles signed before
// must still verify with the key people wrote down.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CONTENT_TYPE, type KubeClient } from '../runtime/kube-client.js';

export const EVIDENCE_KEY_NAME = 'secai-evidence-key';

export interface EvidenceKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export async function ensureEvidenceKey(client: KubeClient, namespace: string, fieldManager: string): Promise<EvidenceKey> {
  const path = `/api/v1/namespaces/${namespace}/secrets`;
  let key: EvidenceKey | undefined;
  for (let attempt = 0; attempt < 3 && !key; attempt++) {
    const existing = await client.raw<{ data?: Record<string, string> }>({ method: 'GET', path: `${path}/${EVIDENCE_KEY_NAME}` });
    if (existing.status === 200) {
      const pem = existing.body.data?.['private.pem'];
      if (!pem) throw new Error(`Secret ${namespace}/${EVIDENCE_KEY_NAME} has no private.pem`);
      const privateKey = createPrivateKey(Buffer.from(pem, 'base64').toString('utf8'));
      if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`Secret ${namespace}/${EVIDENCE_KEY_NAME} does not hold an Ed25519 key`);
      key = { privateKey, publicKey: createPublicKey(privateKey) };
    } else if (existing.status === 404) {
      const made = generateKeyPairSync('ed25519');
      const pem = made.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      const created = await client.raw({
        method: 'POST',
        path,
        body: { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: EVIDENCE_KEY_NAME, namespace }, data: { 'private.pem': Buffer.from(pem).toString('base64') } },
      });
      if (created.status === 201) key = made;
      // 409: another replica made it first; read theirs.
      else if (created.status !== 409) throw new Error(`creating Secret ${EVIDENCE_KEY_NAME}: HTTP ${created.status}`);
    } else {
      throw new Error(`reading Secret ${namespace}/${EVIDENCE_KEY_NAME}: HTTP ${existing.status}`);
    }
  }
  if (!key) throw new Error(`could not settle the evidence key in Secret ${namespace}/${EVIDENCE_KEY_NAME}`);
  await client.request({
    method: 'PATCH',
    path: `/api/v1/namespaces/${namespace}/configmaps/${EVIDENCE_KEY_NAME}`,
    query: { fieldManager, force: true },
    contentType: CONTENT_TYPE.apply,
    body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: EVIDENCE_KEY_NAME, namespace }, data: { 'public.pem': key.publicKey.export({ type: 'spki', format: 'pem' }).toString() } },
  });
  return key;
}
