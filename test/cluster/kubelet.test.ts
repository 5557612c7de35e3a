// A real kubelet (hack/tools/kube-node, cgroup v1 with failCgroupV1: false) on a node of
// hack/cluster/containerd.ts, standalone: it runs a static Pod from the project's secai-fleet image,
// with the project's pause image as the Pod sandbox, both imported only after their signatures
// verify. The Pod's log is the kubelet's. A Pod with a network of its own gets it from the CNI
// plugins (bridge, host-local, portmap, loopback) inside the node's namespace; stopping the node
// leaves no process, cgroup or directory.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ContainerdNode } from '../../hack/cluster/containerd.js';
import { importVerifiedImages } from '../../hack/cluster/test-images.js';
import { startKubelet } from '../../hack/cluster/kubelet.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { NetnsHarness, type NetnsProcess } from '../support/netns.js';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = `ghcr.io/secai-fleet/secai-fleet:${VERSION}`;

let work: string;
let harness: NetnsHarness;
let node: ContainerdNode;
let kubelet: NetnsProcess | undefined;
let netns: string;
let cgroupRoot: string;
let podLogs: string;
let staticPods: string;

const hostTables = () => execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
const hostLinks = () => execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).replace(/^\d+: /gm, '').split('\n').map((l) => l.split(':')[0]).sort();
const hostBefore = { tables: hostTables() };

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'secai-kubelet-'));
  harness = await NetnsHarness.create({ prefix: 'sfkl' });
  netns = await harness.addNamespace('node1');
  node = new ContainerdNode({ name: 'kl-node1', root: join(work, 'node1'), netns, harness, namespace: `secai-kl-${process.pid}` });
  await node.start();
  await importVerifiedImages(node, work);
}, 25 * 60_000);

afterAll(async () => {
  await kubelet?.kill();
  await node?.stop();
  await harness?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

it('runs a static Pod from the verified image, in a sandbox from the verified pause image', async () => {
  const started = await startKubelet(node, (command, args) => harness.spawn(netns, command, args));
  kubelet = started.process;
  writeFileSync(
    join(started.paths.staticPods, 'hello.yaml'),
    stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'hello', namespace: 'default' },
      spec: {
        hostNetwork: true,
        containers: [
          {
            name: 'hello',
            image: IMAGE,
            imagePullPolicy: 'Never',
            command: ['node', '-e', "console.log('hello from', process.version, 'uid', process.getuid()); setInterval(() => {}, 1e9)"],
          },
        ],
      },
    }),
  );
  const deadline = Date.now() + 120_000;
  let log = '';
  while (Date.now() < deadline) {
    const pods = existsSync(started.paths.podLogs) ? readdirSync(started.paths.podLogs) : [];
    const dir = pods.find((d) => d.startsWith('default_hello-kl-node1_'));
    const file = dir ? join(started.paths.podLogs, dir, 'hello', '0.log') : '';
    if (file && existsSync(file)) log = readFileSync(file, 'utf8');
    if (log.includes('hello from')) break;
    if (kubelet.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  if (!log.includes('hello from')) throw new Error(`no Pod log; kubelet said: ${kubelet.stderr().slice(-4000)}`);
  expect(log).toMatch(/ stdout F hello from v24\.\d+\.\d+ uid 65532\n/);

  // The sandbox is the project's pause image; the container is in the kubelet's cgroup root.
  const containers = await node.ctr(['containers', 'ls'], 60_000, 'k8s.io');
  expect(containers.stdout).toContain('registry.k8s.io/pause:3.10.2');
  expect(containers.stdout).toContain(IMAGE);
  expect(existsSync(`/sys/fs/cgroup/pids/${started.cgroupRoot}/kubepods`)).toBe(true);

  cgroupRoot = started.cgroupRoot;
  podLogs = started.paths.podLogs;
  staticPods = started.paths.staticPods;
}, 180_000);

it('gives a Pod of its own network an address from the CNI plugins, reachable from the node and on its hostPort', async () => {
  // bridge + host-local + portmap (nftables), loopback for the Pod's lo; no default route anywhere.
  await node.writeCniConfig('10.88.0.0/24');
  writeFileSync(
    join(staticPods, 'web.yaml'),
    stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web', namespace: 'default' },
      spec: {
        containers: [
          {
            name: 'web',
            image: IMAGE,
            imagePullPolicy: 'Never',
            ports: [{ containerPort: 8080, hostPort: 18080 }],
            command: [
              'node',
              '-e',
              "const a = require('os').networkInterfaces().eth0.find((i) => i.family === 'IPv4').address; require('http').createServer((q, r) => r.end('pod ' + a)).listen(8080, () => console.log('listening on ' + a));",
            ],
          },
        ],
      },
    }),
  );
  const deadline = Date.now() + 120_000;
  let address = '';
  while (Date.now() < deadline && !address) {
    const dir = readdirSync(podLogs).find((d) => d.startsWith('default_web-kl-node1_'));
    const file = dir ? join(podLogs, dir, 'web', '0.log') : '';
    address = (file && existsSync(file) ? readFileSync(file, 'utf8') : '').match(/listening on (10\.88\.0\.\d+)/)?.[1] ?? '';
    if (!address) await new Promise((resolve) => setTimeout(resolve, 500));
  }
  if (!address) throw new Error(`the Pod did not start; kubelet said: ${kubelet!.stderr().slice(-4000)}`);
  const fetchFromNode = async (url: string) => {
    const result = await node.inNode(process.execPath, ['-e', `fetch(${JSON.stringify(url)}).then((r) => r.text()).then(console.log, (e) => { console.error(String(e.cause ?? e)); process.exit(1); })`]);
    return result.stdout.trim() || result.stderr.trim();
  };
  expect(await fetchFromNode(`http://${address}:8080/`)).toBe(`pod ${address}`);
  // portmap: the node's own address on the bridge, hostPort 18080, reaches the Pod.
  expect(await fetchFromNode('http://10.88.0.1:18080/')).toBe(`pod ${address}`);
  // No default route in the node; the bridge, the veths and portmap's table are the node's, not the host's.
  expect((await node.inNode('ip', ['route', 'show', 'default'])).stdout.trim()).toBe('');
  expect((await node.inNode('nft', ['list', 'tables'])).stdout).toContain('cni_hostport');
  expect(hostTables()).toBe(hostBefore.tables);
  expect(hostLinks()).not.toContain('cni0');
}, 180_000);

it('stops the node with its Pods running and leaves nothing', async () => {
  await kubelet?.kill();
  const root = node.root;
  await node.stop();
  expect(existsSync(`/sys/fs/cgroup/pids/${cgroupRoot}`)).toBe(false);
  expect(existsSync(root)).toBe(false);
}, 60_000);
