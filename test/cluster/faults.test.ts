// A node that cannot come up says so once, naming the node and the cause, and leaves nothing
// running: containerd (hack/cluster/containerd.ts) whose root is unusable, and a real kubelet
// (hack/cluster/kubelet.ts) whose kubeconfig names a closed loopback port of the node's namespace.
// Real processes in network namespaces this test makes; no images are needed.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContainerdNode } from '../../hack/cluster/containerd.js';
import { startKubelet, waitForRegistration } from '../../hack/cluster/kubelet.js';
import { kubeletKubeconfig } from '../../hack/cluster/test-images.js';
import { NetnsHarness } from '../support/netns.js';

let work: string;
let harness: NetnsHarness;

const pidsIn = (netns: string) => execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' }).trim();

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'secai-faults-'));
  harness = await NetnsHarness.create({ prefix: 'sfft' });
}, 60_000);

afterAll(async () => {
  await harness?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

it('a node whose runtime cannot start: one error naming the node and the cause, nothing left', async () => {
  const netns = await harness.addNamespace('broken');
  const root = join(work, 'broken');
  // containerd's root directory (<root>/lib/containerd) is a file: containerd cannot create it.
  mkdirSync(join(root, 'lib'), { recursive: true });
  writeFileSync(join(root, 'lib', 'containerd'), 'not a directory\n');
  const node = new ContainerdNode({ name: 'ft-broken', root, netns, harness, namespace: `secai-ft-${process.pid}` });
  const started = Date.now();
  const error = await node.start(30_000).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  expect(error).toBeInstanceOf(Error);
  expect(Date.now() - started).toBeLessThan(30_000);
  const message = error!.message;
  expect(message.split('\n')).toHaveLength(1);
  expect(message).toMatch(/^node ft-broken: the container runtime cannot start: containerd exited \(code \d+\) while starting: /);
  expect(message).toContain(join(root, 'lib', 'containerd'));
  expect(message).toMatch(/not a directory/);
  // Nothing of the node is left: no process in its namespace, no cgroup, no root.
  expect(pidsIn(netns)).toBe('');
  expect(existsSync(`/sys/fs/cgroup/pids/${node.namespace}`)).toBe(false);
  expect(existsSync(root)).toBe(false);
}, 60_000);

it('a kubelet that cannot reach the API server: detected within the bound, reported with the node and the dial error, kubelet stopped', async () => {
  const netns = await harness.addNamespace('lonely');
  const node = new ContainerdNode({ name: 'ft-lonely', root: join(work, 'lonely'), netns, harness, namespace: `secai-ft2-${process.pid}` });
  await node.start();
  try {
    // A loopback port of the node's own namespace on which nothing listens (the namespace is new).
    const port = 16443;
    const listening = await node.inNode('ss', ['-Htln']);
    expect(listening.stdout).not.toContain(`:${port} `);
    const kubeconfig = join(node.root, 'kubelet.kubeconfig');
    writeFileSync(
      kubeconfig,
      kubeletKubeconfig({ server: `https://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true }, { name: 'node', user: { token: 'unused-nothing-answers' } }),
    );
    const kubelet = await startKubelet(node, (command, args) => harness.spawn(netns, command, args), { kubeconfig });
    const started = Date.now();
    const error = await waitForRegistration(node.name, kubelet.process, 20_000).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    const took = Date.now() - started;
    expect(error).toBeInstanceOf(Error);
    // Bounded: the wait's limit plus the kill, not the kubelet's own endless retries.
    expect(took).toBeGreaterThanOrEqual(20_000);
    expect(took).toBeLessThan(30_000);
    const message = error!.message;
    expect(message.split('\n')).toHaveLength(1);
    expect(message).toMatch(/^node ft-lonely: the kubelet cannot reach the API server \(not registered within 20000 ms\): /);
    expect(message).toContain(`127.0.0.1:${port}`);
    expect(message).toContain('connection refused');
    // The kubelet is gone; only containerd is left in the node's namespace.
    expect(kubelet.process.child.exitCode !== null || kubelet.process.child.signalCode !== null).toBe(true);
    expect(pidsIn(netns).split('\n')).toEqual([String(node.pid)]);
  } finally {
    await node.stop();
  }
  expect(pidsIn(netns)).toBe('');
}, 90_000);
