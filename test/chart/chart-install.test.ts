// `helm install`, `helm upgrade` and `helm uninstall` of the chart against a real API server of its
// own (etcd + kube-apiserver from hack/; no kubelet, no controller-manager: Deployments make no
// Pods). The operator then runs as a local process under the chart's own ServiceAccount (a
// TokenRequest token) and RBAC, with the arguments of the installed Deployment, and reconciles the
// samples; an agent Pod made from the installed DaemonSet proves its node with the token the chart
// projects. The upgrade adds a CRD field and changes values; the CRs stay, and stay after uninstall.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { PROTOCOL_VERSION } from '../../api/proto/protocol.js';
import { resourcePath } from '../../api/crd/paths.js';
import { AgentChannelClient } from '../../agents/src/channel/client.js';
import { parseAgentConfig } from '../../agents/src/cmd/agent-config.js';
import { REPO_ROOT, startControlPlane, stopControlPlane, toolPath, type ControlPlaneState } from '../../hack/control-plane/control-plane.js';
import { OPERATOR_BUNDLE } from '../../operator/build.js';
import { KubeClient } from '../../operator/src/runtime/kube-client.js';
import { OperatorProcess } from '../operator/support/operator-process.js';
import { eventually } from '../operator/support/wait.js';
import { renderCrdTemplate } from './chart-crd-templates.js';
import { CHART, Helm } from './helm.js';

const run = promisify(execFile);
const NS = 'secai-system';
const RELEASE = 'secai-fleet';
const NODE = 'fleet-node-1';

interface Obj {
  metadata: { name: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string>; finalizers?: string[] };
  spec?: Record<string, unknown>;
  status?: { phase?: string; observedGeneration?: number; conditions?: { type: string; status: string }[]; agent?: { connected?: boolean } };
}
interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: {
    containers: { name: string; command?: string[]; args: string[]; securityContext?: Record<string, unknown> }[];
    volumes: { name: string; projected?: { sources: { serviceAccountToken?: { audience: string; expirationSeconds: number } }[] } }[];
  } & Record<string, unknown>;
}

let dir: string;
let state: ControlPlaneState;
let admin: KubeClient;
let helm: Helm;
let operator: OperatorProcess | undefined;

const onCluster = (args: string[]) => helm.run([...args, '--kubeconfig', state.kubeconfig]);
const get = async <T = Obj>(path: string): Promise<T | undefined> => {
  const res = await admin.raw<T>({ method: 'GET', path });
  return res.status === 200 ? res.body : undefined;
};
/** Lists CRs; retried, because the API server answers 429 while it re-initialises a changed CRD's storage. */
const list = async (plural: string) =>
  (await eventually(() => admin.request<{ items: Obj[] }>({ method: 'GET', path: resourcePath(plural) }), 30_000, `a list of ${plural}`)).items;
const template = async (kind: 'deployments' | 'daemonsets', name: string) =>
  (await admin.request<{ spec: { template: PodTemplate } }>({ method: 'GET', path: `/apis/apps/v1/namespaces/${NS}/${kind}/${name}` })).spec.template;
const crdPath = (name: string) => `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`;
const CRDS = ['egresspolicies', 'inferenceservices', 'models', 'secainodes', 'vaultpolicies'].map((p) => `${p}.secai.io`);
const SAMPLE_KINDS = ['models', 'egresspolicies', 'vaultpolicies', 'inferenceservices'];

/** Name → uid of every sample-kind CR: the same uid after an upgrade means the object was kept, not remade. */
async function crIdentities(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const plural of SAMPLE_KINDS) for (const item of await list(plural)) out[`${plural}/${item.metadata.name}`] = item.metadata.uid!;
  return out;
}

/** Creates, as the DaemonSet controller would, the Pod of a DaemonSet's template on a node. */
async function podFromTemplate(podTemplate: PodTemplate, name: string, node: string): Promise<{ name: string; uid: string }> {
  const pod = await admin.request<Obj>({
    method: 'POST',
    path: `/api/v1/namespaces/${NS}/pods`,
    body: { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: podTemplate.metadata.labels }, spec: { ...podTemplate.spec, nodeName: node } },
  });
  return { name, uid: pod.metadata.uid! };
}

/** A token as the kubelet projects it for the Pod: the template's audience and lifetime, bound to the Pod. */
async function projectedToken(podTemplate: PodTemplate, pod: { name: string; uid: string }): Promise<string> {
  const projection = podTemplate.spec.volumes.flatMap((v) => v.projected?.sources ?? []).find((s) => s.serviceAccountToken)!.serviceAccountToken!;
  const { status } = await admin.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${NS}/serviceaccounts/${String(podTemplate.spec.serviceAccountName)}/token`,
    body: {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { audiences: [projection.audience], expirationSeconds: projection.expirationSeconds, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', ...pod } },
    },
  });
  return status.token;
}

/** Connects a real agent channel client as `node` and resolves once it is welcomed with a plan. */
async function connectAgent(node: string, token: string, serverName: string): Promise<void> {
  const caPem = await eventually(async () => (await get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${NS}/configmaps/secai-agent-ca`))?.data?.['ca.crt'], 30_000, 'the CA ConfigMap');
  const caFile = join(dir, `ca-${node}.crt`);
  const tokenFile = join(dir, `token-${node}`);
  writeFileSync(caFile, caPem);
  writeFileSync(tokenFile, token, { mode: 0o600 });
  let plans = 0;
  const client = new AgentChannelClient({
    address: `unix://${join(dir, `channel-${operator!.identity}.sock`)}`,
    caFile,
    serverName,
    tokenFile,
    hello: () => ({ nodeName: node, agentVersion: 'chart-test', protocolVersion: PROTOCOL_VERSION, capabilities: [], auditPublicKey: Buffer.alloc(32), appliedPlanGeneration: 0, appliedPlanDigest: '' }),
    onPlan: async () => {
      plans += 1;
    },
    onCommand: async (command) => ({ id: command.id, error: 'unsupported', body: undefined }),
    logger: pino({ level: 'silent' }),
  });
  client.start();
  try {
    await eventually(() => {
      const refusal = client.refusal();
      if (refusal) throw new Error(`refused: ${refusal.message}`);
      return client.state === 'connected' && plans > 0;
    }, 30_000, `the channel to welcome ${node}`);
    await eventually(async () => (await get(resourcePath('secainodes', node)))?.status?.agent?.connected, 30_000, `${node} shown connected`);
  } finally {
    client.stop();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'secai-chart-install-'));
  helm = Helm.create();
  state = await startControlPlane({ dir: join(dir, 'cp') });
  admin = await KubeClient.fromKubeconfigFile(state.kubeconfig);
}, 120_000);

afterAll(async () => {
  await operator?.stop();
  admin?.close();
  await stopControlPlane(join(dir, 'cp'));
  helm?.dispose();
  rmSync(dir, { recursive: true, force: true });
}, 90_000);

it('installs the CRDs, the operator, the agent, RBAC, Services and policies on the real API server', async () => {
  const result = await onCluster(['install', RELEASE, CHART, '--namespace', NS, '--create-namespace', '--timeout', '2m']);
  expect(result.stderr).toBe('');
  expect(result.stdout).toContain('STATUS: deployed');
  expect(result.stdout).toContain('WARNING: agent.alwaysAllow is empty');
  for (const name of CRDS) {
    const crd = await eventually(async () => {
      const c = await get(crdPath(name));
      return c?.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True') ? c : undefined;
    }, 30_000, `${name} established`);
    expect(crd.metadata.annotations).toMatchObject({ 'helm.sh/resource-policy': 'keep', 'meta.helm.sh/release-name': RELEASE });
  }
  for (const path of [
    `/apis/apps/v1/namespaces/${NS}/deployments/secai-fleet-operator`,
    `/apis/apps/v1/namespaces/${NS}/daemonsets/secai-agent`,
    `/api/v1/namespaces/${NS}/serviceaccounts/secai-fleet-operator`,
    `/api/v1/namespaces/${NS}/serviceaccounts/secai-agent`,
    `/api/v1/namespaces/${NS}/services/secai-operator`,
    `/api/v1/namespaces/${NS}/services/secai-fleet-operator-metrics`,
    `/api/v1/namespaces/${NS}/configmaps/secai-fleet-dashboard`,
    `/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies/secai-fleet-operator`,
    `/apis/policy/v1/namespaces/${NS}/poddisruptionbudgets/secai-fleet-operator`,
    '/apis/rbac.authorization.k8s.io/v1/clusterroles/secai-fleet-operator',
    '/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/secai-fleet-operator-events',
  ]) {
    expect(await get(path)).toBeDefined();
  }
}, 120_000);

it('gives the operator a Pod that passes Pod Security "restricted"; the agent needs "privileged", and why', async () => {
  const restricted = 'psa-restricted';
  await admin.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: restricted, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } } });
  for (const sa of ['secai-fleet-operator', 'secai-agent']) {
    await admin.request({ method: 'POST', path: `/api/v1/namespaces/${restricted}/serviceaccounts`, body: { metadata: { name: sa } } });
  }
  const tryPod = (namespace: string, podTemplate: PodTemplate) =>
    admin.raw<{ message?: string }>({
      method: 'POST',
      path: `/api/v1/namespaces/${namespace}/pods`,
      query: { dryRun: 'All' },
      body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'probe' }, spec: { ...podTemplate.spec, nodeName: NODE } },
    });
  const operatorPod = await tryPod(restricted, await template('deployments', 'secai-fleet-operator'));
  expect([operatorPod.status, operatorPod.body.message]).toEqual([201, undefined]);

  const agentTemplate = await template('daemonsets', 'secai-agent');
  const agentPod = await tryPod(restricted, agentTemplate);
  expect(agentPod.status).toBe(403);
  expect(agentPod.body.message).toMatch(/violates PodSecurity "restricted:latest".*host namespaces.*privileged/);

  // bubblewrap mounts a fresh /proc, which the kernel refuses while container runtimes mask parts of
  // /proc; only procMount: Unmasked lifts the mask short of privileged, and the API server refuses
  // it for a Pod in the host network (it needs hostUsers: false, which hostNetwork excludes).
  const unmasked = structuredClone(agentTemplate);
  unmasked.spec.containers[0]!.securityContext = { runAsUser: 0, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] }, procMount: 'Unmasked' };
  const unmaskedPod = await tryPod(NS, unmasked);
  expect(unmaskedPod.status).toBe(422);
  expect(unmaskedPod.body.message).toContain('`hostUsers` must be false to use `Unmasked`');
  unmasked.spec.hostUsers = false;
  const inUserNamespace = await tryPod(NS, unmasked);
  expect(inUserNamespace.status).toBe(422);
  expect(inUserNamespace.body.message).toMatch(/hostNetwork.*hostUsers|hostUsers.*hostNetwork/);
}, 60_000);

it('runs the operator with the chart ServiceAccount token, RBAC and Deployment arguments; it reconciles the samples', async () => {
  const { status } = await admin.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${NS}/serviceaccounts/secai-fleet-operator/token`,
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
  });
  const adminConfig = parse(readFileSync(state.kubeconfig, 'utf8')) as { clusters: { cluster: Record<string, string> }[] };
  const kubeconfig = join(dir, 'operator-kubeconfig');
  writeFileSync(
    kubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'lab', cluster: adminConfig.clusters[0]!.cluster }],
      users: [{ name: 'operator', user: { token: status.token } }],
      contexts: [{ name: 'operator', context: { cluster: 'lab', user: 'operator' } }],
      'current-context': 'operator',
    }),
    { mode: 0o600 },
  );
  // The Deployment's own arguments; only the listening addresses move to loopback and a socket.
  const [container] = (await template('deployments', 'secai-fleet-operator')).spec.containers;
  const chartArgs = container!.args;
  // The Deployment's node flags too: the same bundle runs here.
  const [node, ...nodeFlags] = container!.command ?? [];
  expect([node, nodeFlags.pop()]).toEqual(['node', OPERATOR_BUNDLE]);
  // Here the operator is a local process: its channel is a UNIX socket and it has no Pod IP to publish.
  const args = chartArgs.filter((a) => !a.startsWith('--metrics-bind-address=') && !a.startsWith('--channel-listen=') && !a.startsWith('--channel-endpoint-service='));
  expect(args.length).toBe(chartArgs.length - 3);
  operator = await OperatorProcess.start({ kubeconfig, namespace: NS, identity: 'secai-fleet-operator-0', dir, args, nodeFlags });

  await run(toolPath('kubectl'), ['--kubeconfig', state.kubeconfig, 'apply', '-f', join(REPO_ROOT, 'crds/samples')]);
  await admin.request({ method: 'POST', path: '/api/v1/nodes', body: { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE, labels: { 'secai.io/node': 'true', 'secai.io/pool': 'inference' } } } });

  await eventually(() => get(resourcePath('secainodes', NODE)), 60_000, 'the SecAINode of the fleet Node');
  await eventually(async () => {
    const node = await get<{ spec?: { taints?: { key: string }[] } }>(`/api/v1/nodes/${NODE}`);
    return node?.spec?.taints?.some((t) => t.key === 'secai.io/not-compliant');
  }, 30_000, 'the not-compliant taint');
  for (const plural of SAMPLE_KINDS) {
    const items = await list(plural);
    expect(items.length).toBeGreaterThan(0);
    for (const item of items) {
      await eventually(async () => (await get(resourcePath(plural, item.metadata.name)))?.status?.observedGeneration, 30_000, `a status on ${plural}/${item.metadata.name}`);
    }
  }
  for (const model of await list('models')) expect(model.status?.phase).toEqual(expect.any(String));

  const log = operator.logs();
  expect(log).toContain('"msg":"became leader"');
  expect(log).toContain('"msg":"agent channel listening"');
  expect(log).not.toMatch(/"status":403|Forbidden|forbidden/);
}, 120_000);

it('lets an agent Pod made from the installed DaemonSet prove its node with the token the chart projects', async () => {
  const agentTemplate = await template('daemonsets', 'secai-agent');
  const config = parseAgentConfig(agentTemplate.spec.containers[0]!.args, { NODE_NAME: NODE });
  const pod = await podFromTemplate(agentTemplate, `secai-agent-${NODE}`, NODE);
  await connectAgent(NODE, await projectedToken(agentTemplate, pod), config.operatorServerName);
  expect(operator!.logs()).toMatch(/"node":"fleet-node-1","agentVersion":"chart-test"[^\n]*"msg":"agent connected"/);
}, 90_000);

it('upgrades: a new CRD field and changed values take effect, and every CR is kept', async () => {
  const before = await crIdentities();
  expect(Object.keys(before).length).toBeGreaterThanOrEqual(SAMPLE_KINDS.length);

  // The next chart version: Model gains an optional spec.owner.
  const next = join(dir, 'chart-next');
  cpSync(CHART, next, { recursive: true });
  writeFileSync(join(next, 'Chart.yaml'), readFileSync(join(CHART, 'Chart.yaml'), 'utf8').replace(/^version: .*$/m, 'version: 0.2.0'));
  const crd = parse(readFileSync(join(REPO_ROOT, 'crds/models.secai.io.yaml'), 'utf8')) as {
    spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: { properties: Record<string, unknown> } } } } }[] };
  };
  crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec.properties.owner = { type: 'string', maxLength: 63, description: 'Who answers for this model.' };
  writeFileSync(join(next, 'templates/crds/models.secai.io.yaml'), renderCrdTemplate('models.secai.io.yaml', stringify(crd)));

  const values = join(dir, 'upgrade-values.yaml');
  writeFileSync(values, stringify({ operator: { logLevel: 'debug' }, agent: { mode: 'host' } }));
  const result = await onCluster(['upgrade', RELEASE, next, '--namespace', NS, '--values', values, '--timeout', '2m']);
  expect(result.stderr).toBe('');
  expect(result.stdout).toContain('REVISION: 2');

  // The field is served: a Model that sets it keeps it (an unknown field would be pruned).
  const sample = (await list('models'))[0]!;
  await eventually(async () => {
    const applied = await admin.raw<Obj>({
      method: 'PATCH',
      path: resourcePath('models', 'owned-model'),
      query: { fieldManager: 'chart-test', force: true },
      body: { apiVersion: 'secai.io/v1alpha1', kind: 'Model', metadata: { name: 'owned-model' }, spec: { ...sample.spec, owner: 'ml-platform' } },
      contentType: 'application/apply-patch+yaml',
    });
    return applied.status === 200 || applied.status === 201 ? applied.body.spec?.owner === 'ml-platform' : undefined;
  }, 30_000, 'a Model with spec.owner');

  // The values: the operator logs at debug, and the agent runs on the host behind a token relay.
  const operatorArgs = (await template('deployments', 'secai-fleet-operator')).spec.containers[0]!.args;
  expect(operatorArgs).toContain('--log-level=debug');
  expect(await get(`/apis/apps/v1/namespaces/${NS}/daemonsets/secai-agent`)).toBeUndefined();
  const relay = await template('daemonsets', 'secai-agent-token-relay');
  expect(relay.spec.containers.map((c) => c.name)).toEqual(['token-relay']);

  // Every CR is the same object as before.
  expect(await crIdentities()).toEqual({ ...before, 'models/owned-model': expect.any(String) });

  // The relay Pod's token proves its node too: what the host agent will present.
  const pod = await podFromTemplate(relay, `secai-agent-token-relay-${NODE}`, NODE);
  await admin.request({ method: 'DELETE', path: `/api/v1/namespaces/${NS}/pods/secai-agent-${NODE}`, query: { gracePeriodSeconds: '0' } });
  await connectAgent(NODE, await projectedToken(relay, pod), 'secai-operator.secai-system.svc');
  expect(operator!.logs()).not.toMatch(/"status":403|Forbidden|forbidden/);
}, 120_000);

it('uninstalls without taking the CRDs or any CR with it', async () => {
  // The operator's RBAC goes with the release; stop it first.
  await operator!.stop();
  operator = undefined;
  const before = await crIdentities();
  const result = await onCluster(['uninstall', RELEASE, '--namespace', NS, '--timeout', '2m']);
  expect(result.stdout).toContain(`release "${RELEASE}" uninstalled`);
  expect(await get(`/apis/apps/v1/namespaces/${NS}/deployments/secai-fleet-operator`)).toBeUndefined();
  expect(await get('/apis/rbac.authorization.k8s.io/v1/clusterroles/secai-fleet-operator')).toBeUndefined();
  for (const name of CRDS) expect(await get(crdPath(name))).toBeDefined();
  expect(await crIdentities()).toEqual(before);
}, 60_000);

it('adopts CRDs that kubectl installed, with the commands of the chart README, and installs again', async () => {
  const kubectl = (...args: string[]) => run(toolPath('kubectl'), ['--kubeconfig', state.kubeconfig, ...args]);
  // As `kubectl apply -f crds/` leaves them: no Helm ownership.
  for (const name of CRDS) {
    await kubectl('annotate', 'crd', name, 'meta.helm.sh/release-name-', 'meta.helm.sh/release-namespace-');
    await kubectl('label', 'crd', name, 'app.kubernetes.io/managed-by-');
  }
  const refused = await onCluster(['install', RELEASE, CHART, '--namespace', NS, '--timeout', '2m']);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain('invalid ownership metadata');

  for (const name of CRDS) {
    await kubectl('annotate', 'crd', name, `meta.helm.sh/release-name=${RELEASE}`, `meta.helm.sh/release-namespace=${NS}`);
    await kubectl('label', 'crd', name, 'app.kubernetes.io/managed-by=Helm');
  }
  const before = await crIdentities();
  const installed = await onCluster(['install', RELEASE, CHART, '--namespace', NS, '--timeout', '2m']);
  expect(installed.stderr).toBe('');
  expect(installed.stdout).toContain('STATUS: deployed');
  expect(await crIdentities()).toEqual(before);
}, 60_000);
