// The chart as a user installs it, on real kubelets: two nodes, each a network namespace with its
// own containerd, kubelet and mount namespace (/run and /var/lib/secai its own), joined by one veth;
// the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and kube-proxy
// on the first, which is not a fleet node; the second labelled secai.io/node=true. Then only helm
// and kubectl: `helm install` with the verified image's digest, and the controllers, the scheduler
// and the kubelets do the rest — the operator's two replicas on the first node, the agent's
// DaemonSet Pod on the fleet node only, which enforces its plan in the node's namespace and so
// untaints it.
//
// Addresses are the two namespaces' own (10.77.0.1 and .2, Pods 10.88.1.0/24 and 10.88.2.0/24);
// nothing is routed out of them. The fleet node runs no kube-proxy: its agent reaches the operator
// through the channel's node port on the first node, and its egress table then has no other base
// chains before its own (kube-proxy's would be foreign hooks, see agents/src/egress/foreign-hooks.ts).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContainerdNode } from '../../hack/cluster/containerd.js';
import { componentKubeconfig, startControllerManager, startKubeProxy, startScheduler } from '../../hack/cluster/controllers.js';
import { startKubelet, waitForRegistration } from '../../hack/cluster/kubelet.js';
import { startControlPlaneIn } from '../../hack/cluster/control-plane-in.js';
import { buildImages, imageDigest, importVerifiedImages, testImages } from '../../hack/cluster/test-images.js';
import { REPO_ROOT, toolPath } from '../../hack/control-plane/control-plane.js';
import { runEvery } from '../support/clean-up.js';
import { NetnsHarness, type NetnsProcess } from '../support/netns.js';
import { writeTinyModel } from '../support/tiny-model.js';
import { API_VERSION } from '../../api/crd/common.js';
import { INFERENCE_PORT } from '../../hack/lab/lab-layout.js';

const NS = 'secai-system';
const CHANNEL_NODE_PORT = 30943;
/** hack/control-plane's --service-cluster-ip-range. */
const SERVICE_CIDR = '10.96.0.0/16';
const NODES = {
  cp: { name: 'ck-cp', ip: '10.77.0.1', pods: '10.88.1.0/24' },
  fleet: { name: 'ck-fleet', ip: '10.77.0.2', pods: '10.88.2.0/24' },
} as const;
type NodeKey = keyof typeof NODES;

let work: string;
let harness: NetnsHarness;
const netns: Partial<Record<NodeKey, string>> = {};
const runtimes: Partial<Record<NodeKey, ContainerdNode>> = {};
const processes: NetnsProcess[] = [];
let controlPlane: NetnsProcess;
let cpDir: string;
let apiPort: number;
let helmHome: string;

const kubectl = (args: string[], timeoutMs = 60_000) => harness.runChecked(netns.cp!, toolPath('kubectl'), [`--kubeconfig=${join(cpDir, 'kubeconfig')}`, ...args], { timeoutMs });
const kubectlJson = async <T>(args: string[]): Promise<T> => JSON.parse(await kubectl([...args, '-o', 'json'])) as T;
const helm = (args: string[]) =>
  harness.runChecked(netns.cp!, toolPath('helm'), args, {
    timeoutMs: 300_000,
    env: { PATH: process.env.PATH, HOME: helmHome, HELM_CACHE_HOME: join(helmHome, 'cache'), HELM_CONFIG_HOME: join(helmHome, 'config'), HELM_DATA_HOME: join(helmHome, 'data'), KUBECONFIG: join(cpDir, 'kubeconfig') },
  });

async function eventually<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs: number, explain?: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const detail = explain ? await explain().catch((e: unknown) => String(e)) : '';
      throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}\n${detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

interface Pod {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { nodeName?: string; containers?: { image: string }[] };
  status: { phase?: string; containerStatuses?: { ready: boolean; restartCount: number }[] };
}
const podsOf = async (component: string) => (await kubectlJson<{ items: Pod[] }>(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/component=${component}`])).items;
const running = (pod: Pod) => pod.status.phase === 'Running' && (pod.status.containerStatuses ?? []).every((c) => c.ready);
const logsOf = (node: NodeKey) => async () => {
  const pods = await kubectl(['get', 'pods', '-A', '-o', 'wide']).catch((e: unknown) => String(e));
  const events = await kubectl(['get', 'events', '-A', '--sort-by=.lastTimestamp']).catch((e: unknown) => String(e));
  return `${pods}\n${events.split('\n').slice(-40).join('\n')}\nkubelet ${NODES[node].name}: ${kubelets[node]?.stderr().slice(-3000) ?? ''}`;
};
const kubelets: Partial<Record<NodeKey, NetnsProcess>> = {};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'secai-chart-kubelets-'));
  helmHome = join(work, 'helm');
  harness = await NetnsHarness.create({ prefix: 'sfck' });
  for (const key of Object.keys(NODES) as NodeKey[]) netns[key] = await harness.addNamespace(key);
  await harness.connect({ namespace: netns.cp!, device: 'eth0', addresses: [`${NODES.cp.ip}/24`] }, { namespace: netns.fleet!, device: 'eth0', addresses: [`${NODES.fleet.ip}/24`] });
  // The API server dials a kubelet by its Hostname address first (the node's name).
  for (const key of Object.keys(NODES) as NodeKey[]) {
    mkdirSync(join('/etc/netns', netns[key]!), { recursive: true });
    writeFileSync(join('/etc/netns', netns[key]!, 'hosts'), `127.0.0.1 localhost\n${NODES.cp.ip} ${NODES.cp.name}\n${NODES.fleet.ip} ${NODES.fleet.name}\n`);
  }
  cpDir = join(work, 'control-plane');
  controlPlane = startControlPlaneIn(harness, netns.cp!, cpDir, NODES.cp.ip);
  const ready = await controlPlane.waitForOutput(/^ready (.*)$/m, 120_000);
  apiPort = (JSON.parse(ready[1]!) as { apiPort: number }).apiPort;
  const pki = join(cpDir, 'pki');
  const server = `https://${NODES.cp.ip}:${apiPort}`;
  const inCp = (command: string, args: readonly string[]) => {
    const child = harness.spawn(netns.cp!, command, args);
    processes.push(child);
    return child;
  };
  processes.push(await startControllerManager(inCp, pki, server), await startScheduler(inCp, pki, server));
  processes.push(await startKubeProxy(inCp, pki, server, { node: NODES.cp.name, dir: work, clusterCidr: '10.88.0.0/16', nodePortAddresses: [`${NODES.cp.ip}/32`] }));
  // Nodes authenticate as system:node:<name> (RBAC's system:node role: no Node authorizer here);
  // the API server, towards kubelets, as kube-apiserver-kubelet-client.
  await kubectl(['create', 'clusterrolebinding', 'secai-lab-nodes', '--clusterrole=system:node', '--group=system:nodes']);
  await kubectl(['create', 'clusterrolebinding', 'secai-lab-kubelet-api', '--clusterrole=system:kubelet-api-admin', '--user=kube-apiserver-kubelet-client']);

  await Promise.all(
    (Object.keys(NODES) as NodeKey[]).map(async (key) => {
      const node = new ContainerdNode({ name: NODES[key].name, root: join(work, key), netns: netns[key]!, harness, namespace: `secai-ck-${key}-${process.pid}` });
      runtimes[key] = node;
      await node.start();
      await importVerifiedImages(node, work);
      // Pods reach Services (the control plane's kube-proxy rewrites them) and nothing else.
      await node.writeCniConfig(NODES[key].pods, [SERVICE_CIDR]);
      const kubeconfig = await componentKubeconfig(pki, server, `kubelet-${key}`, `system:node:${NODES[key].name}`, ['system:nodes']);
      const started = await startKubelet(node, (command, args) => harness.spawn(netns[key]!, command, args), {
        kubeconfig,
        nodeIp: NODES[key].ip,
        api: { address: NODES[key].ip, clientCaFile: join(pki, 'ca.crt') },
      });
      kubelets[key] = started.process;
      await waitForRegistration(NODES[key].name, started.process, 60_000);
    }),
  );
  for (const key of Object.keys(NODES) as NodeKey[]) {
    await eventually(`node ${NODES[key].name} Ready`, async () => (await kubectl(['get', 'node', NODES[key].name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])) === 'True', 90_000, logsOf(key));
  }
}, 30 * 60_000);

afterAll(async () => {
  const steps = [
    ...Object.values(kubelets).map((k) => () => k.kill()),
    ...processes.map((p) => () => p.kill()),
    ...Object.values(runtimes).map((n) => () => n.stop()),
    () => controlPlane?.kill('SIGTERM'),
    () => harness?.destroy(),
    ...Object.values(netns).map((n) => () => rmSync(join('/etc/netns', n), { recursive: true, force: true })),
    () => work && rmSync(work, { recursive: true, force: true }),
  ];
  await runEvery(steps);
}, 120_000);

it('kube-controller-manager and kube-scheduler do their part: ServiceAccounts, the root CA, a Deployment placed on a node', async () => {
  await eventually('the default ServiceAccount', () => kubectl(['get', 'serviceaccount', 'default', '-o', 'name']), 60_000);
  await eventually('kube-root-ca.crt', async () => (await kubectl(['get', 'configmap', 'kube-root-ca.crt', '-o', 'jsonpath={.data.ca\\.crt}'])).includes('BEGIN CERTIFICATE'), 60_000);
  const endpoints = await kubectl(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=kubernetes', '-o', 'jsonpath={.items[0].endpoints[0].addresses[0]}']);
  expect(endpoints).toBe(NODES.cp.ip);
}, 120_000);

it('helm install: the operator Deployment runs 2 replicas off the fleet node with one leader; the agent DaemonSet only on the labelled node', async () => {
  await kubectl(['label', 'node', NODES.fleet.name, 'secai.io/node=true']);
  const digest = imageDigest(await testImages(work));
  const values = join(work, 'values.json');
  writeFileSync(
    values,
    JSON.stringify({
      image: { digest, pullPolicy: 'Never' },
      monitoring: { enabled: false },
      operator: { channel: { nodePort: CHANNEL_NODE_PORT } },
      agent: {
        operatorAddress: `${NODES.cp.ip}:${CHANNEL_NODE_PORT}`,
        // The fleet node's kubelet and its agent's channel; the API server reaches the kubelet on 10250.
        alwaysAllow: [`${NODES.cp.ip}:${apiPort}`, `${NODES.cp.ip}:${CHANNEL_NODE_PORT}`],
        inboundPorts: [10250],
      },
    }),
  );
  const installed = await helm(['install', 'secai-fleet', join(REPO_ROOT, 'charts/secai-fleet'), '--namespace', NS, '--create-namespace', '--values', values]);
  expect(installed).toContain('STATUS: deployed');

  const operators = await eventually('two operator Pods running', async () => {
    const pods = await podsOf('operator');
    return pods.length === 2 && pods.every(running) ? pods : undefined;
  }, 300_000, logsOf('cp'));
  expect(operators.map((p) => p.spec.nodeName)).toEqual([NODES.cp.name, NODES.cp.name]);
  const holder = await eventually('a leader', async () => (await kubectl(['get', 'lease', '-n', NS, '-o', 'jsonpath={.items[*].spec.holderIdentity}'])) || undefined, 120_000);
  expect(operators.map((p) => p.metadata.name)).toContain(holder.trim());

  const agents = await eventually('the agent Pod running', async () => {
    const pods = await podsOf('agent');
    return pods.length === 1 && pods.every(running) ? pods : undefined;
  }, 300_000, logsOf('fleet'));
  expect(agents[0]!.spec.nodeName).toBe(NODES.fleet.name);
  const daemonSet = await kubectlJson<{ status: { desiredNumberScheduled: number } }>(['get', 'daemonset', 'secai-agent', '-n', NS]);
  expect(daemonSet.status.desiredNumberScheduled).toBe(1);
}, 15 * 60_000);

it('the agent enforces its plan in the fleet node’s namespace; the operator then lifts the node’s taint and shows it Compliant', async () => {
  await eventually('the inet secai table on the fleet node', async () => (await harness.run(netns.fleet!, 'nft', ['list', 'table', 'inet', 'secai'])).code === 0, 180_000, logsOf('fleet'));
  const compliant = await eventually('the fleet node Compliant', async () => {
    const status = await kubectl(['get', 'secainode', NODES.fleet.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Compliant")].status}']);
    return status === 'True' ? status : undefined;
  }, 180_000, async () => `${await kubectl(['get', 'secainode', NODES.fleet.name, '-o', 'yaml']).catch(String)}\n${await kubectl(['logs', '-n', NS, '-l', 'app.kubernetes.io/component=agent', '--tail=40']).catch(String)}`);
  expect(compliant).toBe('True');
  await eventually('the not-compliant taint lifted', async () => !(await kubectl(['get', 'node', NODES.fleet.name, '-o', 'jsonpath={.spec.taints}'])).includes('secai.io/not-compliant'), 60_000);
  // The operator's node stays out of the fleet: no SecAINode, no taint.
  expect((await kubectl(['get', 'secainodes', '-o', 'name'])).trim()).toBe(`secainode.secai.io/${NODES.fleet.name}`);
}, 6 * 60_000);

it('kubectl logs and exec reach the agent Pod through the kubelet API; inside it there are no API credentials, only the Pod-bound channel token', async () => {
  const [agent] = await podsOf('agent');
  const logs = await kubectl(['logs', '-n', NS, agent!.metadata.name, '--tail=200']);
  expect(logs).toMatch(/"msg":"/);
  const exec = (command: string) => kubectl(['exec', '-n', NS, agent!.metadata.name, '--', 'sh', '-c', command]);
  expect(await exec('ls /var/run/secrets/kubernetes.io 2>&1 || echo absent')).toMatch(/absent/);
  const token = (await exec('cat /var/run/secrets/secai.io/token')).trim();
  // The API server says whose it is: the agent's ServiceAccount, bound to this Pod on this node.
  const review = join(work, 'review.json');
  writeFileSync(review, JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['secai-fleet-agent'] } }));
  const reviewed = JSON.parse(await kubectl(['create', '-f', review, '-o', 'json'])) as { status: { authenticated: boolean; user: { username: string; extra: Record<string, string[]> } } };
  expect(reviewed.status.authenticated).toBe(true);
  expect(reviewed.status.user.username).toBe(`system:serviceaccount:${NS}:secai-agent`);
  expect(reviewed.status.user.extra['authentication.kubernetes.io/pod-name']).toEqual([agent!.metadata.name]);
  expect(reviewed.status.user.extra['authentication.kubernetes.io/node-name']).toEqual([NODES.fleet.name]);
}, 120_000);

/** Samples a condition in a namespace every 100 ms until killed; one line per sample. */
const sample = (namespace: string, probe: string) => harness.spawn(namespace, 'bash', ['-c', `while true; do ${probe}; sleep 0.1; done`]);
const TABLE_PROBE = 'if nft list table inet secai >/dev/null 2>&1; then echo present; else echo ABSENT; fi';
it('a Model from the node’s import inbox is quarantined in the agent Pod’s sandbox, Trusted in status, and served on the node', async () => {
  // The chart mounts the node's /var/lib/secai/import (here the fleet node's own) read-only.
  const inbox = join(runtimes.fleet!.root, 'secai', 'import');
  mkdirSync(inbox, { recursive: true });
  const { sha256, sizeBytes } = writeTinyModel(join(inbox, 'secai-tiny.gguf'));
  const token = randomBytes(24).toString('hex');
  const manifest = join(work, 'model.json');
  writeFileSync(
    manifest,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'tiny-chat-token', namespace: NS }, stringData: { token } },
        { apiVersion: API_VERSION, kind: 'Model', metadata: { name: 'secai-tiny' }, spec: { source: { url: 'file:///var/lib/secai/import/secai-tiny.gguf' }, format: 'gguf', sha256, sizeBytes } },
        {
          apiVersion: API_VERSION,
          kind: 'InferenceService',
          metadata: { name: 'tiny-chat' },
          spec: {
            modelRef: { name: 'secai-tiny' },
            engine: 'llamacpp',
            resources: { gpuLayers: 0, contextSize: 256, threads: 1, parallelRequests: 1, queueDepth: 8 },
            listen: { port: INFERENCE_PORT, authTokenSecretRef: { namespace: NS, name: 'tiny-chat-token', key: 'token' } },
          },
        },
      ],
    }),
  );
  await kubectl(['apply', '-f', manifest]);
  const explain = async () => `${await kubectl(['get', 'model', 'secai-tiny', '-o', 'yaml']).catch(String)}\n${await kubectl(['logs', '-n', NS, '-l', 'app.kubernetes.io/component=agent', '--tail=40']).catch(String)}`;
  await eventually('the model Trusted on the fleet node', async () => (await kubectl(['get', 'model', 'secai-tiny', '-o', 'jsonpath={.status.phase} {.status.nodes.trusted}'])) === 'Trusted 1', 300_000, explain);
  const answer = await eventually('an answer from the served model', async () => {
    const result = await harness.run(netns.fleet!, 'curl', ['-s', '--max-time', '30', `http://127.0.0.1:${INFERENCE_PORT}/v1/chat/completions`, '-H', `authorization: Bearer ${token}`, '-H', 'content-type: application/json', '-d', JSON.stringify({ model: 'secai-tiny', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8 })]);
    const body = result.code === 0 ? (JSON.parse(result.stdout || '{}') as { choices?: { message?: { content?: string } }[] }) : {};
    return body.choices?.[0]?.message?.content !== undefined ? body : undefined;
  }, 180_000, explain);
  expect(answer.choices).toHaveLength(1);
  // Without the token the node refuses.
  const refused = await harness.run(netns.fleet!, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${INFERENCE_PORT}/v1/models`]);
  expect(refused.stdout).toBe('401');
}, 10 * 60_000);

it('deleting the agent Pod: the node keeps its table while the DaemonSet’s new Pod starts and re-applies', async () => {
  const [agent] = await podsOf('agent');
  const sampler = sample(netns.fleet!, TABLE_PROBE);
  let replacement: Pod | undefined;
  try {
    await kubectl(['delete', 'pod', '-n', NS, agent!.metadata.name, '--wait=true'], 120_000);
    replacement = await eventually('a new agent Pod running', async () => {
      const pods = await podsOf('agent');
      return pods.length === 1 && pods[0]!.metadata.name !== agent!.metadata.name && pods.every(running) ? pods[0] : undefined;
    }, 300_000, logsOf('fleet'));
    // Its stored plan (the node's /var/lib/secai/agent) applied and read back by the new agent.
    await eventually('the new agent applying its plan', async () => (await kubectl(['logs', '-n', NS, replacement!.metadata.name])).includes('"msg":"plan applied"'), 120_000);
  } finally {
    await sampler.kill();
  }
  const samples = sampler.stdout().split('\n').filter(Boolean);
  expect(samples.length).toBeGreaterThan(5);
  expect(samples.filter((s) => s !== 'present')).toEqual([]);
  expect(await kubectl(['get', 'secainode', NODES.fleet.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Compliant")].status}'])).toBe('True');
}, 8 * 60_000);

const holderLines = (sampler: NetnsProcess) =>
  sampler
    .stdout()
    .split('\n')
    .filter((line) => /^\d+\.\d+ /.test(line))
    .map((line) => ({ at: Number(line.slice(0, line.indexOf(' '))), holder: line.slice(line.indexOf(' ') + 1).trim() }));
const leaseHolder = async () => (await kubectl(['get', 'lease', 'secai-fleet-operator', '-n', NS, '-o', 'jsonpath={.spec.holderIdentity}'])).trim();

it('deleting the leader Pod: the standby takes over and the agent reconnects to it', async () => {
  const leader = await leaseHolder();
  await kubectl(['delete', 'pod', '-n', NS, leader, '--wait=false']);
  const next = await eventually('another leader', async () => {
    const holder = await leaseHolder();
    return holder && holder !== leader ? holder : undefined;
  }, 120_000, logsOf('cp'));
  await eventually('the agent connected to the new leader', async () => (await kubectl(['logs', '-n', NS, next])).includes('"msg":"agent connected"'), 120_000, async () => kubectl(['logs', '-n', NS, next, '--tail=30']));
}, 5 * 60_000);

it('helm upgrade to a new image digest rolls the operator and the agent; the table never leaves the fleet node and a leader holds throughout', async () => {
  // The same sources with other file times: another digest, as a new release would have.
  const next = join(work, 'images-next');
  await buildImages(next, 1_767_225_600);
  const digest = imageDigest(next);
  expect(digest).not.toBe(imageDigest(await testImages(work)));
  await Promise.all(Object.values(runtimes).map((node) => importVerifiedImages(node, work, next)));
  const table = sample(netns.fleet!, TABLE_PROBE);
  const holders = sample(netns.cp!, `echo "$(date +%s.%N) $(${toolPath('kubectl')} --kubeconfig=${join(cpDir, 'kubeconfig')} get lease secai-fleet-operator -n ${NS} -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || echo ERROR)"`);
  try {
    const upgraded = await helm(['upgrade', 'secai-fleet', join(REPO_ROOT, 'charts/secai-fleet'), '--namespace', NS, '--reuse-values', '--set', `image.digest=${digest}`]);
    expect(upgraded).toContain('STATUS: deployed');
    const onNext = (pod: Pod) => running(pod) && (pod.spec.containers ?? []).every((c) => c.image.endsWith(`@${digest}`));
    await eventually('both operators on the new image', async () => {
      const pods = await podsOf('operator');
      return pods.length === 2 && pods.every(onNext);
    }, 300_000, logsOf('cp'));
    const agent = await eventually('the agent on the new image', async () => {
      const pods = await podsOf('agent');
      return pods.length === 1 && pods.every(onNext) ? pods[0] : undefined;
    }, 300_000, logsOf('fleet'));
    await eventually('the new agent applying its plan', async () => (await kubectl(['logs', '-n', NS, agent.metadata.name])).includes('"msg":"plan applied"'), 120_000);
    await eventually('the new leader holding the lease', async () => (await podsOf('operator')).some((p) => p.metadata.name === holderLines(holders).at(-1)?.holder), 120_000);
  } finally {
    await table.kill();
    await holders.kill();
  }
  const tableSamples = table.stdout().split('\n').filter(Boolean);
  expect(tableSamples.length).toBeGreaterThan(20);
  expect(tableSamples.filter((line) => line !== 'present')).toEqual([]);
  // A leader that stops releases the Lease, and a standby takes it at its next retry (every 2 s,
  // as client-go's defaults): the longest time without a holder is bounded by that, and agents
  // keep enforcing through it (above).
  const samples = holderLines(holders);
  expect(samples.length).toBeGreaterThan(5);
  expect(samples.filter((s) => s.holder === 'ERROR')).toEqual([]);
  let longestGap = 0;
  let gapStart: number | undefined;
  for (const { at, holder } of samples) {
    if (!holder) gapStart ??= at;
    else if (gapStart !== undefined) {
      longestGap = Math.max(longestGap, at - gapStart);
      gapStart = undefined;
    }
  }
  console.log(`helm upgrade: longest time without a lease holder ${longestGap.toFixed(2)} s over ${samples.length} samples; the table present in all ${tableSamples.length}`);
  expect(longestGap).toBeLessThan(5);
  expect(await kubectl(['get', 'secainode', NODES.fleet.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Compliant")].status}'])).toBe('True');
}, 15 * 60_000);

it('helm uninstall leaves the CRDs, the SecAINode and the node’s last plan in force', async () => {
  await helm(['uninstall', 'secai-fleet', '--namespace', NS, '--wait']);
  await eventually('the agent Pod gone', async () => (await podsOf('agent')).length === 0, 120_000);
  expect((await kubectl(['get', 'crd', 'secainodes.secai.io', '-o', 'name'])).trim()).toBe('customresourcedefinition.apiextensions.k8s.io/secainodes.secai.io');
  expect((await kubectl(['get', 'secainodes', '-o', 'name'])).trim()).toBe(`secainode.secai.io/${NODES.fleet.name}`);
  expect((await harness.run(netns.fleet!, 'nft', ['list', 'table', 'inet', 'secai'])).code).toBe(0);
}, 5 * 60_000);
