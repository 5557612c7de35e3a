// The leader's channel endpoint on the real API server: published, and taken over by a new leader.
import { randomBytes } from 'node:crypto';
import { sharedKubeconfig } from '../../../test/support/environment.js';
import { KubeClient } from '../runtime/kube-client.js';
import { channelEndpointSliceName, publishChannelEndpoint } from './channel-endpoint.js';

const namespace = `chep-${randomBytes(3).toString('hex')}`;
let client: KubeClient;

beforeAll(async () => {
  client = await KubeClient.fromKubeconfigFile(sharedKubeconfig());
  await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
});
afterAll(() => client.close());

interface Slice {
  metadata: { labels: Record<string, string> };
  addressType: string;
  endpoints: { addresses: string[] }[];
  ports: { port: number }[];
}

const read = () =>
  client.request<Slice>({
    method: 'GET',
    path: `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices/${channelEndpointSliceName('secai-operator')}`,
  });

it('points the selector-less channel Service at the leader, and follows a new leader', async () => {
  // Fictitious Pod addresses: written into the API, never dialled.
  const base = { namespace, service: 'secai-operator', port: 9443, fieldManager: 'secai-fleet-operator' };
  await publishChannelEndpoint(client, { ...base, address: '10.244.1.7' });
  expect(await read()).toMatchObject({
    metadata: { labels: { 'kubernetes.io/service-name': 'secai-operator' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.244.1.7'] }],
    ports: [{ port: 9443 }],
  });
  await publishChannelEndpoint(client, { ...base, address: '10.244.2.9' });
  expect((await read()).endpoints).toEqual([expect.objectContaining({ addresses: ['10.244.2.9'] })]);
});
