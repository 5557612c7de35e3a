// Least privilege, proven: the operator runs as a ServiceAccount bound only to
// operator/config/rbac.yaml, with a token from the TokenRequest API, against the real API server.
// Everything it does works (not one 403 in its log), and what it must not do is refused.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { REPO_ROOT, toolPath } from '../../hack/control-plane/control-plane.js';
import { KubeClient } from '../../operator/src/runtime/kube-client.js';
import { condition, FleetEnv, OPERATOR_NAMESPACE } from './support/fleet-env.js';
import { OperatorProcess } from './support/operator-process.js';
import { eventually } from './support/wait.js';

const run = promisify(execFile);
const PULL_PASSWORD = 'rbac-pull-password';
let env: FleetEnv;
let operator: OperatorProcess | undefined;
let asOperator: KubeClient;

beforeAll(async () => {
  env = await FleetEnv.start('rbac');
  await run(toolPath('kubectl'), ['--kubeconfig', env.kubeconfig, 'apply', '-f', join(REPO_ROOT, 'operator/config/rbac.yaml')]);
  const { status } = await env.admin.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/serviceaccounts/secai-fleet-operator/token`,
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
  });
  const admin = parse(readFileSync(env.kubeconfig, 'utf8')) as { clusters: { cluster: { server: string; 'certificate-authority-data': string } }[] };
  const cluster = admin.clusters[0]!.cluster;
  const kubeconfig = join(env.dir, 'operator-kubeconfig');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{name: lab, cluster: {server: "' + cluster.server + '", certificate-authority-data: ' + cluster['certificate-authority-data'] + '}}]',
      'users: [{name: operator, user: {token: ' + status.token + '}}]',
      'contexts: [{name: operator, context: {cluster: lab, user: operator}}]',
      'current-context: operator',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  asOperator = await KubeClient.fromKubeconfigFile(kubeconfig);
  operator = await OperatorProcess.start({
    kubeconfig,
    namespace: OPERATOR_NAMESPACE,
    identity: 'rbac-test',
    dir: env.dir,
    // A loopback TCP channel too, so the leader publishes the channel Service's endpoint (POD_IP is
    // a fictitious Pod address: written into the API, never dialled).
    args: ['--status-refresh-seconds', '60', '--channel-listen', '127.0.0.1:0', '--channel-endpoint-service', 'secai-operator'],
    env: { POD_IP: '10.244.7.7' },
  });
}, 90_000);

afterAll(async () => {
  await operator?.stop();
  asOperator?.close();
  await env?.stop();
}, 60_000);

const tainted = async (name: string) => ((await env.node(name)).spec?.taints ?? []).some((t) => t.key === 'secai.io/not-compliant');

it('does its whole job with only the granted verbs', async () => {
  await env.createNode('rbac-node', { 'secai.io/node': 'true', pool: 'a' });
  await env.createSecret('svc-token', { token: 'rbac-token' });
  await env.createConfigMap('sigs', { 'bundle.json': '{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}' });
  await env.apply('models', {
    kind: 'Model',
    metadata: { name: 'rbac-model' },
    spec: {
      source: { url: 'https://models.example/r.gguf' },
      format: 'gguf',
      sha256: '2'.repeat(64),
      placement: {},
      signature: { bundle: { configMapKeyRef: { namespace: OPERATOR_NAMESPACE, name: 'sigs', key: 'bundle.json' } }, publicKey: { pem: '-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----' } },
    },
  });
  // A pull Secret: the operator reads it with the same namespace-scoped list and watch.
  await env.createSecret('rbac-pull', { '.dockerconfigjson': JSON.stringify({ auths: { 'registry.example': { username: 'robot', password: PULL_PASSWORD } } }) }, OPERATOR_NAMESPACE, 'kubernetes.io/dockerconfigjson');
  await env.apply('models', {
    kind: 'Model',
    metadata: { name: 'rbac-oci' },
    spec: { source: { oci: { registry: 'registry.example', repository: 'models/r', digest: `sha256:${'4'.repeat(64)}`, pullSecretRef: { name: 'rbac-pull' } } }, format: 'gguf', sha256: '4'.repeat(64), placement: {} },
  });
  await env.apply('vaultpolicies', { kind: 'VaultPolicy', metadata: { name: 'rbac-vault' }, spec: { luks: {} } });
  await env.apply('inferenceservices', { kind: 'InferenceService', metadata: { name: 'rbac-svc' }, spec: { modelRef: { name: 'rbac-model' }, listen: { authTokenSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'svc-token', key: 'token' } } } });
  await env.apply('egresspolicies', { kind: 'EgressPolicy', metadata: { name: 'rbac-egress' }, spec: { allow: [{ ip: '192.0.2.1' }], rollout: { progressDeadlineSeconds: 5 } } });

  // Enrolment, taint, statuses, finalizer, rollout record, Events and the Lease.
  await eventually(() => env.get('secainodes', 'rbac-node'), 30_000, 'the SecAINode');
  await eventually(() => tainted('rbac-node'), 30_000, 'the taint');
  const model = await eventually(async () => {
    const m = await env.get('models', 'rbac-model');
    return m?.status?.phase && m.metadata.finalizers?.length ? m : undefined;
  }, 30_000, 'the Model status and finalizer');
  expect(condition(model, 'Resolved')?.status).toBe('True');
  const oci = await eventually(async () => {
    const m = await env.get('models', 'rbac-oci');
    return condition(m, 'Resolved') ? m : undefined;
  }, 30_000, 'the OCI Model resolved');
  expect(condition(oci, 'Resolved')).toMatchObject({ status: 'True', reason: 'Resolved' });
  await eventually(async () => condition(await env.get('vaultpolicies', 'rbac-vault'), 'Ready'), 30_000, 'the VaultPolicy status');
  const svc = await eventually(async () => condition(await env.get('inferenceservices', 'rbac-svc'), 'AuthTokenResolved'), 30_000, 'the service status');
  expect(svc.status).toBe('True');
  // No agent enforces anything here, so the canary misses its deadline: the rollout stops.
  await eventually(async () => ((await env.get('egresspolicies', 'rbac-egress'))?.status?.rollout as { state?: string })?.state === 'Stopped', 30_000, 'the rollout to stop');
  expect(await env.eventReasons('rbac-egress', ['RolloutStarted', 'CanaryFailed'])).toEqual(expect.arrayContaining(['RolloutStarted', 'CanaryFailed']));
  expect(await env.eventReasons('rbac-node', ['Enrolled'])).toContain('Enrolled');
  await env.admin.request({ method: 'GET', path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/configmaps/egress-rollout.rbac-egress` });
  const lease = await env.admin.request<{ spec: { holderIdentity: string } }>({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${OPERATOR_NAMESPACE}/leases/secai-fleet-operator` });
  expect(lease.spec.holderIdentity).toBe('rbac-test');

  // Deletions: the Model's finalizer comes off, the rollout record goes with its policy, and the
  // SecAINode and the taint go when the Node leaves the fleet.
  for (const name of ['rbac-model', 'rbac-oci']) {
    await env.remove('models', name);
    await eventually(async () => (await env.get('models', name)) === undefined, 30_000, `the Model ${name} deletion to complete`);
  }
  await env.remove('egresspolicies', 'rbac-egress');
  await eventually(async () => (await env.admin.raw({ method: 'GET', path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/configmaps/egress-rollout.rbac-egress` })).status === 404, 30_000, 'the record to go');
  await env.labelNode('rbac-node', { 'secai.io/node': null });
  await eventually(async () => (await env.get('secainodes', 'rbac-node')) === undefined, 30_000, 'the SecAINode to go');
  await eventually(async () => !(await tainted('rbac-node')), 30_000, 'the taint to go');

  const log = operator!.logs();
  expect(log).not.toMatch(/"status":403|Forbidden|forbidden/);
  expect(log).not.toContain(PULL_PASSWORD);
  expect(log).toContain('"msg":"became leader"');
  // The agent channel came up with the same least privilege (TLS Secret, CA ConfigMap, the
  // channel Service's EndpointSlice pointing at this leader).
  expect(log).toContain('"msg":"agent channel listening"');
  expect(log).toContain('"msg":"channel Service points at this leader"');
  const slice = await env.admin.request<{ endpoints: { addresses: string[] }[] }>({
    method: 'GET',
    path: `/apis/discovery.k8s.io/v1/namespaces/${OPERATOR_NAMESPACE}/endpointslices/secai-operator-leader`,
  });
  expect(slice.endpoints[0]?.addresses).toEqual(['10.244.7.7']);
}, 120_000);

it.each([
  ['reading a Secret in another namespace', 'GET', '/api/v1/namespaces/kube-system/secrets/anything'],
  ['listing Secrets in another namespace', 'GET', '/api/v1/namespaces/default/secrets'],
  ['listing Secrets cluster-wide', 'GET', '/api/v1/secrets'],
  ['replacing another Secret in its own namespace', 'PUT', `/api/v1/namespaces/${OPERATOR_NAMESPACE}/secrets/agent-token`],
  ['deleting a Node', 'DELETE', '/api/v1/nodes/rbac-node'],
  ['changing a Model spec', 'PUT', '/apis/secai.io/v1alpha1/models/x'],
  ['reading Pods', 'GET', '/api/v1/pods'],
] as const)('is refused %s with 403', async (_, method, path) => {
  const res = await asOperator.raw<{ reason?: string }>({ method, path, ...(method === 'PUT' ? { body: { metadata: { name: 'x' } } } : {}) });
  expect(res.status).toBe(403);
  expect(res.body.reason).toBe('Forbidden');
});

it('releases its lease and exits cleanly on SIGTERM', async () => {
  operator!.kill('SIGTERM');
  const { code } = await operator!.exited;
  expect(code).toBe(0);
  const lease = await env.admin.request<{ spec: { holderIdentity?: string } }>({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${OPERATOR_NAMESPACE}/leases/secai-fleet-operator` });
  expect(lease.spec.holderIdentity ?? '').toBe('');
  operator = undefined;
}, 60_000);
