// Events reach the API server as events.k8s.io/v1 objects about the right object, with bounded fields.
import { randomBytes, randomUUID } from 'node:crypto';
import pino from 'pino';
import { sharedKubeconfig } from '../../../test/support/environment.js';
import { KubeEventRecorder } from './events.js';
import { KubeClient } from './kube-client.js';

let client: KubeClient;
const logger = pino({ level: 'silent' });

beforeAll(async () => {
  client = await KubeClient.fromKubeconfigFile(sharedKubeconfig());
});

afterAll(() => client.close());

interface EventList {
  items: {
    metadata: { namespace: string };
    reason: string;
    action: string;
    type: string;
    note: string;
    regarding: { kind: string; name: string; uid: string };
    reportingController: string;
  }[];
}

const recorder = () =>
  new KubeEventRecorder({ client, reportingController: 'secai.io/fleet-operator', reportingInstance: 'replica-1', logger });

it('records an event about a cluster-scoped object in the default namespace, with a bounded note', async () => {
  const name = `m-${randomBytes(4).toString('hex')}`;
  const regarding = { apiVersion: 'secai.io/v1alpha1', kind: 'Model', metadata: { name, uid: randomUUID() } };
  await recorder().record(regarding, 'Warning', 'Rejected', 'Quarantine', `rejected by node-a: ${'x'.repeat(2000)}`);
  const list = await client.request<EventList>({
    method: 'GET',
    path: '/apis/events.k8s.io/v1/namespaces/default/events',
    query: { fieldSelector: `regarding.name=${name}` },
  });
  expect(list.items).toHaveLength(1);
  const [event] = list.items;
  expect(event).toMatchObject({
    reason: 'Rejected',
    action: 'Quarantine',
    type: 'Warning',
    reportingController: 'secai.io/fleet-operator',
    regarding: { kind: 'Model', name, uid: regarding.metadata.uid },
  });
  expect(Buffer.byteLength(event!.note)).toBeLessThanOrEqual(1024);
  await client.raw({ method: 'DELETE', path: `/apis/events.k8s.io/v1/namespaces/default/events/${(event as unknown as { metadata: { name: string } }).metadata.name}` });
});

it('never throws when the API server refuses the event', async () => {
  const regarding = { kind: 'ConfigMap', metadata: { name: 'x', namespace: 'no-such-namespace-here' } };
  await expect(recorder().record(regarding, 'Normal', 'R', 'A', 'n')).resolves.toBeUndefined();
});
