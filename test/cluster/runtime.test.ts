// A node's container runtime for real: containerd 2 and runc from hack/ (cgroup v1, as root) in a
// network namespace and a mount namespace this test makes, its state under a temporary root. The
// pause image the project builds (hack/images/build.sh) is imported only after its cosign
// signature verifies (hack/images/import.sh); a container runs from it and prints; images whose
// signature does not verify never reach the runtime. The node components report their pinned
// versions.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../agents/src/exec.js';
import { ContainerdNode, HACK_BIN } from '../../hack/cluster/containerd.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { NetnsHarness } from '../support/netns.js';

const BUILD = join(REPO_ROOT, 'hack/images/build.sh');
const IMPORT = join(REPO_ROOT, 'hack/images/import.sh');
const VERSIONS = new Map(
  readFileSync(join(REPO_ROOT, 'hack/versions.env'), 'utf8')
    .split('\n')
    .filter((line) => /^[A-Z0-9_]+=/.test(line))
    .map((line) => line.split('=', 2) as [string, string]),
);

function pinned(name: string): string {
  const version = VERSIONS.get(name);
  if (!version) throw new Error(`hack/versions.env has no ${name}`);
  return version;
}
const PAUSE = 'registry.k8s.io/pause:3.10.2';

let work: string;
let images: string;
let harness: NetnsHarness;
let node: ContainerdNode;
let pauseDigest: string;

function build(out: string, env: NodeJS.ProcessEnv = {}): void {
  execFileSync(BUILD, [out, 'pause'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
}

async function importImages(pub: string, dir: string, ...names: string[]) {
  return runCommand(IMPORT, ['--address', join(node.root, 'run/containerd/containerd.sock'), '--namespace', node.namespace, pub, dir, ...names], { timeoutMs: 120_000 });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'secai-runtime-'));
  images = join(work, 'images');
  build(images);
  pauseDigest = readFileSync(join(images, 'pause.digest'), 'utf8').trim();
  harness = await NetnsHarness.create({ prefix: 'sfrt' });
  const netns = await harness.addNamespace('node1');
  node = new ContainerdNode({ name: 'node1', root: join(work, 'node1'), netns, harness, namespace: `secai-rt-${process.pid}` });
  await node.start();
}, 360_000);

afterAll(async () => {
  await node?.stop();
  await harness?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

it('imports the pause image after its signature verifies and runs a container from it that prints', async () => {
  const imported = await importImages(join(images, 'cosign.pub'), images, 'pause');
  expect(imported.stderr).not.toMatch(/refusing/);
  expect(imported.code).toBe(0);
  expect(imported.stdout.trim()).toBe(`pause ${pauseDigest}`);
  const listed = await node.ctrChecked(['images', 'ls']);
  expect(listed).toContain(PAUSE);
  expect(listed).toContain(pauseDigest);

  const run = await node.ctrChecked(['run', '--rm', PAUSE, 'print-version', '/pause', '-v']);
  expect(run.trim()).toBe('pause.c v3.10.2-secai');
  // --rm: the task, the container and its cgroup are gone.
  expect((await node.ctrChecked(['containers', 'ls', '-q'])).trim()).toBe('');
  expect(existsSync(`/sys/fs/cgroup/pids/${node.namespace}/print-version`)).toBe(false);
}, 120_000);

it('keeps the runtime in the node: a running container has namespaces of its own, the shim sockets are under the node root, stop() removes everything', async () => {
  await node.ctrChecked(['run', '--detach', PAUSE, 'sleeper']);
  const tasks = await node.ctrChecked(['tasks', 'ls']);
  const line = tasks.split('\n').find((l) => l.startsWith('sleeper'));
  expect(line).toMatch(/RUNNING/);
  const pid = Number(line!.trim().split(/\s+/)[1]);
  for (const kind of ['net', 'mnt', 'pid']) {
    expect(readlinkSync(`/proc/${pid}/ns/${kind}`)).not.toBe(readlinkSync(`/proc/${node.pid}/ns/${kind}`));
  }
  // containerd's own namespaces are the node's, not the host's.
  expect(readlinkSync(`/proc/${node.pid}/ns/net`)).not.toBe(readlinkSync('/proc/self/ns/net'));
  expect(readlinkSync(`/proc/${node.pid}/ns/mnt`)).not.toBe(readlinkSync('/proc/self/ns/mnt'));
  expect(existsSync(join(node.root, 'run/containerd/s'))).toBe(true);
  expect(readFileSync(`/proc/${pid}/cgroup`, 'utf8')).toContain(`/${node.namespace}/sleeper`);

  // A second node stopped with a container running: nothing of it is left.
  const netns = await harness.addNamespace('node2');
  const other = new ContainerdNode({ name: 'node2', root: join(work, 'node2'), netns, harness, namespace: `secai-rt2-${process.pid}` });
  await other.start();
  try {
    const imported = await runCommand(IMPORT, ['--address', join(other.root, 'run/containerd/containerd.sock'), '--namespace', other.namespace, join(images, 'cosign.pub'), images, 'pause'], {
      timeoutMs: 120_000,
    });
    expect(imported.code).toBe(0);
    await other.ctrChecked(['run', '--detach', PAUSE, 'left-running']);
    const otherPid = Number(
      (await other.ctrChecked(['tasks', 'ls']))
        .split('\n')
        .find((l) => l.startsWith('left-running'))!
        .trim()
        .split(/\s+/)[1],
    );
    expect(existsSync(`/proc/${otherPid}`)).toBe(true);
    await other.stop();
    expect(existsSync(`/proc/${otherPid}`)).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/pids/${other.namespace}`)).toBe(false);
    expect(existsSync(other.root)).toBe(false);
  } finally {
    await other.stop();
  }
}, 180_000);

describe('an image whose signature does not verify never reaches the runtime', () => {
  let before: string;
  beforeAll(async () => {
    before = await node.ctrChecked(['images', 'ls', '-q']);
  });
  afterEach(async () => {
    expect(await node.ctrChecked(['images', 'ls', '-q'])).toBe(before);
  });

  it('is refused when signed with another key, naming the image', async () => {
    const otherKey = join(work, 'other-key');
    execFileSync('mkdir', ['-p', otherKey]);
    execFileSync(join(HACK_BIN, 'cosign'), ['generate-key-pair'], { cwd: otherKey, env: { ...process.env, COSIGN_PASSWORD: '' }, stdio: 'ignore' });
    const result = await importImages(join(otherKey, 'cosign.pub'), images, 'pause');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`image ${PAUSE}: signature does not verify with ${join(otherKey, 'cosign.pub')}`);
    expect(result.stderr).toContain('refusing to import pause');
  }, 120_000);

  it('is refused when the archive is another image than the signed one', async () => {
    // The same image built at another time: a valid archive, a different manifest.
    const rebuilt = join(work, 'rebuilt');
    build(rebuilt, { SOURCE_DATE_EPOCH: '1700000000', COSIGN_KEY: join(images, 'cosign.key') });
    const rebuiltDigest = readFileSync(join(rebuilt, 'pause.digest'), 'utf8').trim();
    expect(rebuiltDigest).not.toBe(pauseDigest);
    const mixed = join(work, 'mixed');
    cpSync(join(rebuilt, 'pause.oci.tar'), join(mixed, 'pause.oci.tar'));
    cpSync(join(images, 'pause.signed'), join(mixed, 'pause.signed'), { recursive: true });
    const result = await importImages(join(images, 'cosign.pub'), mixed, 'pause');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`image ${PAUSE}: the archive's manifest ${rebuiltDigest} is not the signed one (${pauseDigest})`);
  }, 360_000);

  it('is refused when there is no signature', async () => {
    const unsigned = join(work, 'unsigned');
    cpSync(join(images, 'pause.oci.tar'), join(unsigned, 'pause.oci.tar'));
    const result = await importImages(join(images, 'cosign.pub'), unsigned, 'pause');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`image ${PAUSE}: no signature: ${join(unsigned, 'pause.signed')} does not exist`);
  }, 60_000);
});

describe('the node components report their pinned versions', () => {
  it.each(['kubelet', 'kube-controller-manager', 'kube-scheduler', 'kube-proxy'])('%s', (tool) => {
    expect(execFileSync(join(HACK_BIN, tool), ['--version'], { encoding: 'utf8' }).trim()).toBe(`Kubernetes ${pinned('K8S_VERSION')}`);
  });

  it('containerd, runc, the CNI plugins, CoreDNS and umoci', () => {
    expect(execFileSync(join(HACK_BIN, 'containerd'), ['--version'], { encoding: 'utf8' })).toContain(pinned('CONTAINERD_VERSION'));
    expect(execFileSync(join(HACK_BIN, 'runc'), ['--version'], { encoding: 'utf8' })).toMatch(new RegExp(`^runc version ${pinned('RUNC_VERSION').slice(1)}\\n[\\s\\S]*seccomp`));
    for (const plugin of ['bridge', 'host-local', 'loopback', 'portmap']) {
      const about = execFileSync(join(HACK_BIN, 'cni', plugin), [], { encoding: 'utf8', env: { ...process.env, CNI_COMMAND: 'VERSION' } });
      expect(JSON.parse(about).supportedVersions).toContain('1.1.0');
      // Without a command a plugin prints its version stamp (hack/install-tools.sh sets it).
      const stamp = spawnSync(join(HACK_BIN, 'cni', plugin), [], { encoding: 'utf8', env: {} });
      expect(stamp.stderr).toContain(`CNI ${plugin} plugin ${pinned('CNI_PLUGINS_VERSION')}`);
    }
    expect(execFileSync(join(HACK_BIN, 'coredns'), ['-version'], { encoding: 'utf8' })).toContain(`CoreDNS-${pinned('COREDNS_VERSION').slice(1)}`);
    expect(execFileSync(join(HACK_BIN, 'umoci'), ['--version'], { encoding: 'utf8' })).toContain(`umoci version ${pinned('UMOCI_VERSION').slice(1)}`);
  });
});
