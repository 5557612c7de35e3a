// A real kubelet registered with the real test control plane (hack/control-plane: etcd and
// kube-apiserver, RBAC), becoming a Ready Node. The control plane runs in the node's network
// namespace (as on a single control-plane node), so the kubelet dials the API server on that
// namespace's loopback and the node's address is one of the namespace's own: nothing crosses into
// the root namespace. The kubelet authenticates with a client certificate from the control plane's
// CA (CN system:node:<name>, O system:nodes), authorized by RBAC's system:node role.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ContainerdNode, HACK_BIN } from '../../hack/cluster/containerd.js';
import { startKubelet, waitForRegistration } from '../../hack/cluster/kubelet.js';
import { startControlPlaneIn } from '../../hack/cluster/control-plane-in.js';
import { importVerifiedImages, kubeletKubeconfig } from '../../hack/cluster/test-images.js';
import { REPO_ROOT, toolPath } from '../../hack/control-plane/control-plane.js';
import { runEvery } from '../support/clean-up.js';
import { NetnsHarness, type NetnsProcess } from '../support/netns.js';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = `ghcr.io/secai-fleet/secai-fleet:${VERSION}`;
const NODE = 'rg-node1';
const NODE_IP = '10.77.0.1';

let work: string;
let harness: NetnsHarness;
let netns: string;
let controlPlane: NetnsProcess;
let node: ContainerdNode;
let kubelet: NetnsProcess | undefined;
let cpDir: string;

const kubectl = async (args: string[]) => harness.runChecked(netns, toolPath('kubectl'), [`--kubeconfig=${join(cpDir, 'kubeconfig')}`, ...args], { timeoutMs: 30_000 });

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'secai-registered-'));
  harness = await NetnsHarness.create({ prefix: 'sfrg' });
  netns = await harness.addNamespace('node1');
  // The node's own address: on a bridge of its namespace with no ports (no route out of it).
  await harness.runChecked(netns, 'ip', ['link', 'add', 'node0', 'type', 'bridge']);
  await harness.runChecked(netns, 'ip', ['addr', 'add', `${NODE_IP}/32`, 'dev', 'node0']);
  await harness.runChecked(netns, 'ip', ['link', 'set', 'node0', 'up']);
  // The API server dials a kubelet by its Hostname address first (the node's name): the namespace's
  // own hosts file (`ip netns exec` mounts /etc/netns/<ns>/hosts over /etc/hosts) resolves it.
  mkdirSync(join('/etc/netns', netns), { recursive: true });
  writeFileSync(join('/etc/netns', netns, 'hosts'), `127.0.0.1 localhost\n${NODE_IP} ${NODE}\n`);
  cpDir = join(work, 'control-plane');
  controlPlane = startControlPlaneIn(harness, netns, cpDir);
  await controlPlane.waitForOutput(/^ready /m, 120_000);
  node = new ContainerdNode({ name: NODE, root: join(work, 'node1'), netns, harness, namespace: `secai-rg-${process.pid}` });
  await node.start();
  await importVerifiedImages(node, work);
}, 25 * 60_000);

afterAll(async () => {
  // Every step runs whatever an earlier one threw (a failed stop must not leave the namespace).
  const steps = [
    () => kubelet?.kill(),
    () => node?.stop(),
    () => controlPlane?.kill('SIGTERM'),
    () => harness?.destroy(),
    () => netns && rmSync(join('/etc/netns', netns), { recursive: true, force: true }),
    () => work && rmSync(work, { recursive: true, force: true }),
  ];
  await runEvery(steps);
}, 60_000);

it('registers with the API server as a Ready Node with its own address', async () => {
  const pki = join(cpDir, 'pki');
  const certs = join(work, 'node-pki');
  execFileSync('mkdir', ['-p', certs]);
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: certs, stdio: ['ignore', 'ignore', 'pipe'] });
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'node.key', '-out', 'node.csr', '-subj', `/O=system:nodes/CN=system:node:${NODE}`]);
  writeFileSync(join(certs, 'node.ext'), 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n');
  openssl(['x509', '-req', '-in', 'node.csr', '-CA', join(pki, 'ca.crt'), '-CAkey', join(pki, 'ca.key'), '-CAcreateserial', '-days', '1', '-out', 'node.crt', '-extfile', 'node.ext']);
  // RBAC has no Node authorizer here: the bootstrap role system:node, bound to the nodes' group.
  await kubectl(['create', 'clusterrolebinding', 'secai-lab-nodes', '--clusterrole=system:node', '--group=system:nodes']);
  const server = readFileSync(join(cpDir, 'kubeconfig'), 'utf8').match(/server: (\S+)/)![1]!;
  const kubeconfig = join(node.root, 'kubelet.kubeconfig');
  writeFileSync(
    kubeconfig,
    kubeletKubeconfig({ server, 'certificate-authority': join(pki, 'ca.crt') }, { name: NODE, user: { 'client-certificate': join(certs, 'node.crt'), 'client-key': join(certs, 'node.key') } }),
  );
  // CRI reports its network ready only with a CNI configuration; the node is NotReady without one.
  await node.writeCniConfig('10.88.0.0/24');
  const started = await startKubelet(node, (command, args) => harness.spawn(netns, command, args), {
    kubeconfig,
    nodeIp: NODE_IP,
    api: { address: NODE_IP, anonymousWithWebhookAuthorization: true },
  });
  kubelet = started.process;
  await waitForRegistration(NODE, kubelet, 60_000);

  const deadline = Date.now() + 60_000;
  let ready = '';
  while (Date.now() < deadline) {
    ready = await kubectl(['get', 'node', NODE, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
    if (ready === 'True') break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  if (ready !== 'True') throw new Error(`node ${NODE} not Ready: ${await kubectl(['get', 'node', NODE, '-o', 'yaml'])}\nkubelet said: ${kubelet.stderr().slice(-3000)}`);
  const nodeJson = JSON.parse(await kubectl(['get', 'node', NODE, '-o', 'json'])) as {
    status: { addresses: { type: string; address: string }[]; nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string } };
  };
  expect(nodeJson.status.addresses).toContainEqual({ type: 'InternalIP', address: NODE_IP });
  expect(nodeJson.status.nodeInfo.kubeletVersion).toBe(execFileSync(join(HACK_BIN, 'kubelet'), ['--version'], { encoding: 'utf8' }).trim().split(' ')[1]);
  expect(nodeJson.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\/2\./);
}, 180_000);

it('runs a Pod created through the API from the verified image, and `kubectl logs` reads it through the kubelet API', async () => {
  // No kube-controller-manager here: the namespace's default ServiceAccount is made by hand.
  await kubectl(['create', 'serviceaccount', 'default']);
  // The API server reaches the kubelet anonymously (no kubelet client certificate); the kubelet asks
  // it, and RBAC allows anonymous requests only reads of this node's proxy/log subresources.
  const rbac = join(work, 'kubelet-api-rbac.yaml');
  writeFileSync(
    rbac,
    [
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'secai-lab-kubelet-api' }, rules: [{ apiGroups: [''], resources: ['nodes/proxy', 'nodes/log'], resourceNames: [NODE], verbs: ['get'] }] },
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'secai-lab-kubelet-api' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'secai-lab-kubelet-api' }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'system:anonymous' }] },
    ]
      .map((o) => stringify(o))
      .join('---\n'),
  );
  await kubectl(['apply', '-f', rbac]);
  const pod = join(work, 'pod.yaml');
  writeFileSync(
    pod,
    stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'hello', namespace: 'default' },
      spec: {
        nodeName: NODE,
        hostNetwork: true,
        automountServiceAccountToken: false,
        containers: [{ name: 'hello', image: IMAGE, imagePullPolicy: 'Never', command: ['node', '-e', "console.log('hello from', process.version, 'uid', process.getuid()); setInterval(() => {}, 1e9)"] }],
      },
    }),
  );
  await kubectl(['apply', '-f', pod]);
  const deadline = Date.now() + 120_000;
  let phase = '';
  while (Date.now() < deadline) {
    phase = await kubectl(['get', 'pod', 'hello', '-o', 'jsonpath={.status.phase}']);
    if (phase === 'Running') break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  if (phase !== 'Running') throw new Error(`Pod not Running (${phase}): ${await kubectl(['get', 'pod', 'hello', '-o', 'yaml'])}\nkubelet said: ${kubelet!.stderr().slice(-3000)}`);
  let logs = '';
  const logDeadline = Date.now() + 30_000;
  while (Date.now() < logDeadline && !logs.includes('hello from')) {
    logs = await kubectl(['logs', 'hello']);
    if (!logs.includes('hello from')) await new Promise((resolve) => setTimeout(resolve, 500));
  }
  expect(logs).toMatch(/^hello from v24\.\d+\.\d+ uid 65532\n$/);
  // Nothing else of the kubelet API is granted: its metrics (nodes/metrics) and exec (create on
  // nodes/proxy) are refused by the API server's RBAC.
  const status = async (args: string[]) => (await harness.run(netns, 'curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', ...args])).stdout;
  expect(await status([`https://${NODE_IP}:10250/metrics`])).toBe('403');
  expect(await status(['-X', 'POST', `https://${NODE_IP}:10250/exec/default/hello/hello?command=true&output=1`])).toBe('403');
}, 180_000);
