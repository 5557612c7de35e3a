// Only the leader serves the agent channel, so the channel Service must lead to the leader alone.
// The Service has no selector; the leader publishes its own Pod address in an EndpointSlice of that
// Service when it starts serving, and a new leader overwrites it. Agents never land on a standby.
import { isIPv6 } from 'node:net';
import { CONTENT_TYPE, type KubeClient } from '../runtime/kube-client.js';

export interface ChannelEndpoint {
  namespace: string;
  /** The selector-less Service agents dial. */
  service: string;
  /** This replica's Pod IP (downward API). */
  address: string;
  port: number;
  fieldManager: string;
}

export function channelEndpointSliceName(service: string): string {
  return `${service}-leader`;
}

export async function publishChannelEndpoint(client: KubeClient, endpoint: ChannelEndpoint): Promise<void> {
  const name = channelEndpointSliceName(endpoint.service);
  await client.request({
    method: 'PATCH',
    path: `/apis/discovery.k8s.io/v1/namespaces/${endpoint.namespace}/endpointslices/${name}`,
    query: { fieldManager: endpoint.fieldManager, force: true },
    contentType: CONTENT_TYPE.apply,
    body: {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name,
        namespace: endpoint.namespace,
        labels: { 'kubernetes.io/service-name': endpoint.service, 'endpointslice.kubernetes.io/managed-by': endpoint.fieldManager },
      },
      addressType: isIPv6(endpoint.address) ? 'IPv6' : 'IPv4',
      endpoints: [{ addresses: [endpoint.address], conditions: { ready: true, serving: true, terminating: false } }],
      ports: [{ name: 'channel', port: endpoint.port, protocol: 'TCP' }],
    },
  });
}
