// The channel's serving certificate comes from a Secret in the operator's namespace. When the
// installation supplies none, the operator makes its own CA and certificate and stores them there;
// either way the CA bundle agents trust is published in a ConfigMap. No cert-manager needed.
import { X509Certificate } from 'node:crypto';
import { CONTENT_TYPE, type KubeClient } from '../runtime/kube-client.js';
import { createCertificateAuthority, issueServingCertificate } from './pki.js';

export interface ChannelTlsOptions {
  namespace: string;
  secretName: string;
  caConfigMapName: string;
  /** DNS names agents dial (the channel Service name). */
  dnsNames: string[];
  fieldManager: string;
  validDays?: number;
  now?: Date;
}

export interface ChannelTls {
  certPem: string;
  keyPem: string;
  caPem: string;
  /** Whether the operator made them (false when the installation supplied the Secret). */
  generated: boolean;
}

interface SecretView {
  metadata?: { annotations?: Record<string, string> };
  data?: Record<string, string>;
}

const GENERATED_ANNOTATION = 'secai.io/generated-by';
/** Renew a certificate the operator made when less than this much of its life is left. */
const RENEW_BEFORE_MS = 30 * 24 * 60 * 60 * 1000;

function decode(data: Record<string, string> | undefined, key: string): string | undefined {
  const value = data?.[key];
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

function needsRenewal(certPem: string, dnsNames: string[], now: Date): boolean {
  const cert = new X509Certificate(certPem);
  if (new Date(cert.validTo).getTime() - now.getTime() < RENEW_BEFORE_MS) return true;
  return dnsNames.some((name) => cert.checkHost(name) === undefined);
}

function makeTls(opts: ChannelTlsOptions): ChannelTls {
  const days = opts.validDays ?? 365;
  const ca = createCertificateAuthority(`secai-fleet-channel-ca-${opts.namespace}`, days * 2, opts.now);
  const serving = issueServingCertificate(ca, opts.dnsNames, days, opts.now);
  return { certPem: serving.certPem, keyPem: serving.keyPem, caPem: ca.certPem, generated: true };
}

function secretBody(opts: ChannelTlsOptions, tls: ChannelTls, resourceVersion?: string): Record<string, unknown> {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: {
      name: opts.secretName,
      namespace: opts.namespace,
      annotations: { [GENERATED_ANNOTATION]: opts.fieldManager },
      ...(resourceVersion ? { resourceVersion } : {}),
    },
    data: { 'tls.crt': b64(tls.certPem), 'tls.key': b64(tls.keyPem), 'ca.crt': b64(tls.caPem) },
  };
}

export async function ensureChannelTls(client: KubeClient, opts: ChannelTlsOptions): Promise<ChannelTls> {
  const now = opts.now ?? new Date();
  const secretPath = `/api/v1/namespaces/${opts.namespace}/secrets`;
  let tls: ChannelTls | undefined;
  for (let attempt = 0; attempt < 3 && !tls; attempt++) {
    const existing = await client.raw<SecretView & { metadata?: { resourceVersion?: string } }>({
      method: 'GET',
      path: `${secretPath}/${opts.secretName}`,
    });
    if (existing.status === 200) {
      const certPem = decode(existing.body.data, 'tls.crt');
      const keyPem = decode(existing.body.data, 'tls.key');
      const caPem = decode(existing.body.data, 'ca.crt');
      const ours = existing.body.metadata?.annotations?.[GENERATED_ANNOTATION] !== undefined;
      if (!certPem || !keyPem || !caPem) {
        throw new Error(`Secret ${opts.namespace}/${opts.secretName} needs tls.crt, tls.key and ca.crt`);
      }
      if (!ours || !needsRenewal(certPem, opts.dnsNames, now)) {
        tls = { certPem, keyPem, caPem, generated: ours };
        break;
      }
      const renewed = makeTls(opts);
      const put = await client.raw({
        method: 'PUT',
        path: `${secretPath}/${opts.secretName}`,
        body: secretBody(opts, renewed, existing.body.metadata?.resourceVersion),
      });
      if (put.status === 200) tls = renewed;
      // 409: another replica renewed it first; read theirs.
    } else if (existing.status === 404) {
      const made = makeTls(opts);
      const created = await client.raw({ method: 'POST', path: secretPath, body: secretBody(opts, made) });
      if (created.status === 201) tls = made;
      else if (created.status !== 409) throw new Error(`creating Secret ${opts.secretName}: HTTP ${created.status}`);
    } else {
      throw new Error(`reading Secret ${opts.namespace}/${opts.secretName}: HTTP ${existing.status}`);
    }
  }
  if (!tls) throw new Error(`could not settle the channel certificate in Secret ${opts.namespace}/${opts.secretName}`);
  await client.request({
    method: 'PATCH',
    path: `/api/v1/namespaces/${opts.namespace}/configmaps/${opts.caConfigMapName}`,
    query: { fieldManager: opts.fieldManager, force: true },
    contentType: CONTENT_TYPE.apply,
    body: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: opts.caConfigMapName, namespace: opts.namespace },
      data: { 'ca.crt': tls.caPem },
    },
  });
  return tls;
}
