// High availability, proven with two real operator processes on one control plane: only the leader
// reconciles; when it is killed (SIGKILL, no lease release), the standby takes over within 20 s and
// finds nothing to change: not one fleet object is written.
import { resourcePath } from '../../api/crd/paths.js';
import { FleetEnv, OPERATOR_NAMESPACE, type KubeObjectLike } from './support/fleet-env.js';
import { OperatorProcess } from './support/operator-process.js';
import { delay, eventually } from './support/wait.js';

let env: FleetEnv;
const operators: OperatorProcess[] = [];

beforeAll(async () => {
  env = await FleetEnv.start('ha');
}, 90_000);

afterAll(async () => {
  await Promise.all(operators.map((o) => o.stop()));
  await env?.stop();
}, 90_000);

const holder = async () =>
  (await env.admin.request<{ spec: { holderIdentity?: string } }>({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${OPERATOR_NAMESPACE}/leases/secai-fleet-operator` })).spec.holderIdentity;

/** name → resourceVersion of every object the operator writes. */
async function fleetState(): Promise<Record<string, string>> {
  const state: Record<string, string> = {};
  const add = (kind: string, items: KubeObjectLike[]) => {
    for (const o of items) state[`${kind}/${o.metadata.name}`] = o.metadata.resourceVersion ?? '';
  };
  for (const plural of ['secainodes', 'models', 'egresspolicies', 'vaultpolicies', 'inferenceservices']) add(plural, await env.list(plural));
  add('nodes', (await env.admin.request<{ items: KubeObjectLike[] }>({ method: 'GET', path: '/api/v1/nodes' })).items);
  add('configmaps', (await env.admin.request<{ items: KubeObjectLike[] }>({ method: 'GET', path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/configmaps` })).items);
  return state;
}

it('fails over to the standby within 20 s, which finds the fleet exactly as the leader left it', async () => {
  const start = (identity: string) => OperatorProcess.start({ kubeconfig: env.kubeconfig, namespace: OPERATOR_NAMESPACE, identity, dir: env.dir });
  const a = await start('ha-a');
  operators.push(a);
  await eventually(async () => (await holder()) === 'ha-a', 30_000, 'a to lead');
  const b = await start('ha-b');
  operators.push(b);
  await eventually(() => b.metrics(), 30_000, 'b to serve metrics');

  for (const n of ['ha-1', 'ha-2', 'ha-3']) await env.createNode(n, { 'secai.io/node': 'true', pool: n === 'ha-3' ? 'edge' : 'core' });
  await env.createSecret('ha-token', { token: 't' });
  await env.apply('models', { kind: 'Model', metadata: { name: 'ha-model' }, spec: { source: { url: 'https://models.example/h.gguf' }, format: 'gguf', sha256: '3'.repeat(64), placement: { nodeSelector: { matchLabels: { pool: 'core' } } } } });
  await env.apply('vaultpolicies', { kind: 'VaultPolicy', metadata: { name: 'ha-vault' }, spec: { luks: {} } });
  await env.apply('egresspolicies', { kind: 'EgressPolicy', metadata: { name: 'ha-egress' }, spec: { allow: [{ ip: '192.0.2.9' }], rollout: { canary: 0, maxUnavailable: '100%', progressDeadlineSeconds: 3600 } } });
  await env.apply('inferenceservices', { kind: 'InferenceService', metadata: { name: 'ha-svc' }, spec: { modelRef: { name: 'ha-model' }, listen: { authTokenSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'ha-token', key: 'token' } } } });

  // Converged under a: every object carries a status.
  await eventually(async () => {
    const nodes = await env.list('secainodes');
    const rollups = await Promise.all(['models', 'egresspolicies', 'vaultpolicies', 'inferenceservices'].map((p) => env.list(p)));
    return nodes.length === 3 && nodes.every((n) => n.status?.plan) && rollups.flat().every((o) => o.status?.conditions);
  }, 30_000, 'convergence');
  await delay(3000);
  expect(await a.reconciles()).toBeGreaterThan(0);
  expect(await b.reconciles()).toBe(0);
  expect(await a.metrics()).toContain('leader_election_master_status{name="secai-fleet-operator"} 1');
  expect(await b.metrics()).toContain('leader_election_master_status{name="secai-fleet-operator"} 0');
  const before = await fleetState();
  const generations = (await env.list('secainodes')).map((n) => [n.metadata.name, (n.status as { plan: { generation: number } }).plan.generation]);

  a.kill('SIGKILL');
  const killed = Date.now();
  await eventually(async () => (await holder()) === 'ha-b' && (await b.reconciles()) > 0, 25_000, 'b to take over');
  const takeover = Date.now() - killed;
  process.stderr.write(`failover: standby reconciling ${takeover} ms after the leader was killed\n`);
  expect(takeover).toBeLessThan(20_000);

  // b reconciles everything once; none of it changes anything.
  await eventually(async () => {
    const first = await b.reconciles();
    await delay(1500);
    return first === (await b.reconciles());
  }, 20_000, 'b to settle');
  expect(await fleetState()).toEqual(before);
  expect((await env.list('secainodes')).map((n) => [n.metadata.name, (n.status as { plan: { generation: number } }).plan.generation])).toEqual(generations);
  expect(b.logs()).not.toMatch(/"level":(50|60)/);

  // And b is in charge now.
  await env.createNode('ha-4');
  await eventually(() => env.get('secainodes', 'ha-4'), 15_000, 'b to enrol a new node');
  expect((await env.admin.raw({ method: 'GET', path: resourcePath('secainodes', 'ha-4') })).status).toBe(200);
}, 150_000);
