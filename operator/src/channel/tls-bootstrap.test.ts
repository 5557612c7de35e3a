// The channel certificate lives in a Secret on the real API server: made once, reused, renewed when
// it nears expiry, never overwritten when the installation supplies its own; the CA is published.
import { randomBytes, X509Certificate } from 'node:crypto';
import { sharedKubeconfig } from '../../../test/support/environment.js';
import { KubeClient } from '../runtime/kube-client.js';
import { createCertificateAuthority, issueServingCertificate } from './pki.js';
import { ensureChannelTls, type ChannelTlsOptions } from './tls-bootstrap.js';

const namespace = `tls-${randomBytes(3).toString('hex')}`;
let client: KubeClient;

const options = (over: Partial<ChannelTlsOptions> = {}): ChannelTlsOptions => ({
  namespace,
  secretName: 'secai-channel-tls',
  caConfigMapName: 'secai-agent-ca',
  dnsNames: [`secai-operator.${namespace}.svc`],
  fieldManager: 'secai-operator',
  ...over,
});

beforeAll(async () => {
  client = await KubeClient.fromKubeconfigFile(sharedKubeconfig());
  await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
});
afterAll(() => client.close());

async function publishedCa(): Promise<string | undefined> {
  const cm = await client.request<{ data?: Record<string, string> }>({
    method: 'GET',
    path: `/api/v1/namespaces/${namespace}/configmaps/secai-agent-ca`,
  });
  return cm.data?.['ca.crt'];
}

it('makes a CA and serving certificate once and reuses them, publishing the CA', async () => {
  const first = await ensureChannelTls(client, options());
  expect(first.generated).toBe(true);
  expect(new X509Certificate(first.certPem).checkHost(`secai-operator.${namespace}.svc`)).toBeDefined();
  const second = await ensureChannelTls(client, options());
  expect(second.certPem).toBe(first.certPem);
  expect(await publishedCa()).toBe(first.caPem);
});

it('renews its own certificate when a DNS name is missing or expiry is near', async () => {
  const before = await ensureChannelTls(client, options());
  const renamed = await ensureChannelTls(client, options({ dnsNames: [`secai-operator.${namespace}.svc`, 'secai-operator'] }));
  expect(renamed.certPem).not.toBe(before.certPem);
  const later = await ensureChannelTls(client, options({ dnsNames: ['secai-operator'], now: new Date(Date.now() + 350 * 86_400_000) }));
  expect(later.certPem).not.toBe(renamed.certPem);
  expect(await publishedCa()).toBe(later.caPem);
});

it('uses a supplied Secret as it is, even when it would have renewed its own', async () => {
  const ca = createCertificateAuthority('site-ca', 10);
  const serving = issueServingCertificate(ca, ['channel.example.internal'], 10);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  await client.request({
    method: 'POST',
    path: `/api/v1/namespaces/${namespace}/secrets`,
    body: {
      metadata: { name: 'site-tls' },
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': b64(serving.certPem), 'tls.key': b64(serving.keyPem), 'ca.crt': b64(ca.certPem) },
    },
  });
  const tls = await ensureChannelTls(client, options({ secretName: 'site-tls' }));
  expect(tls).toEqual({ certPem: serving.certPem, keyPem: serving.keyPem, caPem: ca.certPem, generated: false });
  expect(await publishedCa()).toBe(ca.certPem);
});
