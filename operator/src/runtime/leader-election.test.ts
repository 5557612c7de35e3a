// Lease leader election on the real API server: one leader at a time; a released lease passes at
// once; a holder that stops renewing is replaced after the lease duration; a leader that cannot
// renew within the deadline gives up leadership.
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { Registry } from 'prom-client';
import { sharedKubeconfig } from '../../../test/support/environment.js';
import { eventually } from '../../../test/operator/support/wait.js';
import { KubeClient } from './kube-client.js';
import { LeaderElector } from './leader-election.js';
import { RuntimeMetrics } from './metrics.js';

let client: KubeClient;
const namespace = `le-${randomBytes(3).toString('hex')}`;
const logger = pino({ level: 'silent' });
// Short timings so that the test runs in seconds; the ratios are client-go's.
const timings = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 400 };

beforeAll(async () => {
  client = await KubeClient.fromKubeconfigFile(sharedKubeconfig());
  await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await client.raw({ method: 'DELETE', path: `/api/v1/namespaces/${namespace}` });
  client.close();
});

interface Lease {
  spec: { holderIdentity?: string; leaseTransitions?: number; leaseDurationSeconds?: number };
}

function candidate(name: string, identity: string, registry?: Registry) {
  const events: string[] = [];
  const elector = new LeaderElector({
    client,
    namespace,
    name,
    identity,
    logger,
    ...timings,
    ...(registry ? { metrics: new RuntimeMetrics(registry) } : {}),
  });
  elector.start({ onStartedLeading: () => void events.push('started'), onStoppedLeading: () => void events.push('stopped') });
  return { elector, events };
}

const lease = (name: string) => client.request<Lease>({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}` });

it('elects exactly one leader, and hands over at once on release', async () => {
  const registry = new Registry();
  const a = candidate('one', 'replica-a', registry);
  await eventually(() => a.elector.isLeader(), 5000, 'a to lead');
  const b = candidate('one', 'replica-b');
  await new Promise((r) => setTimeout(r, 1500));
  expect(b.elector.isLeader()).toBe(false);
  expect((await lease('one')).spec.holderIdentity).toBe('replica-a');
  expect(await registry.metrics()).toContain('leader_election_master_status{name="one"} 1');

  const released = Date.now();
  await a.elector.stop();
  expect(a.events).toEqual(['started']);
  expect(await registry.metrics()).toContain('leader_election_master_status{name="one"} 0');
  await eventually(() => b.elector.isLeader(), 5000, 'b to lead');
  // A released lease needs no expiry wait: a retry period or two.
  expect(Date.now() - released).toBeLessThan(timings.leaseDurationMs);
  const after = await lease('one');
  expect(after.spec.holderIdentity).toBe('replica-b');
  expect(after.spec.leaseTransitions).toBe(1);
  await b.elector.stop();
});

it('takes over from a holder that stopped renewing only after the lease duration', async () => {
  await client.request({
    method: 'POST',
    path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
    body: { metadata: { name: 'two' }, spec: { holderIdentity: 'crashed', leaseDurationSeconds: 3, renewTime: new Date().toISOString().replace('Z', '000Z') } },
  });
  const started = Date.now();
  const b = candidate('two', 'replica-b');
  await eventually(() => b.elector.isLeader(), 10_000, 'b to lead');
  const waited = Date.now() - started;
  expect(waited).toBeGreaterThanOrEqual(timings.leaseDurationMs);
  expect(waited).toBeLessThan(timings.leaseDurationMs + 2 * timings.retryPeriodMs + 1000);
  await b.elector.stop();
});

it('gives up leadership when another holder takes the lease and renewals fail past the deadline', async () => {
  const a = candidate('three', 'replica-a');
  await eventually(() => a.elector.isLeader(), 5000, 'a to lead');
  // Someone else holds the lease now (as after a partition); a cannot renew.
  const current = await client.request<Lease & { metadata: object }>({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/three` });
  const intruder = async () => {
    const latest = await client.request<Lease & { metadata: object }>({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/three` });
    await client.raw({
      method: 'PUT',
      path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/three`,
      body: { ...latest, spec: { ...current.spec, holderIdentity: 'intruder', leaseDurationSeconds: 60, renewTime: new Date().toISOString().replace('Z', '000Z') } },
    });
  };
  await eventually(async () => {
    await intruder();
    return (await lease('three')).spec.holderIdentity === 'intruder';
  }, 5000, 'the intruder to hold the lease');
  await eventually(() => a.events.includes('stopped'), timings.renewDeadlineMs + 3000, 'a to give up');
  expect(a.elector.isLeader()).toBe(false);
  expect(a.events).toEqual(['started', 'stopped']);
  await a.elector.stop();
});
