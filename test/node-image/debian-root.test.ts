// The node hardening applied for real to a Debian 12 root filesystem: debootstrap builds the tree
// (make-debian-root.sh, cached outside the repository), then install-node-hardening.sh and
// secai-firstboot run in a chroot as they would in an image build and on first boot, and the
// tree's own systemd and nftables check the result. Chroot commands run in a private mount and
// PID namespace (`unshare --mount-proc`), so the /proc they need disappears with them; the tree is
// removed after the tests, and anything still mounted under it is unmounted first.
//
// The k3s binary is a stand-in (a script in a fake bundle): the installer only places it, and
// systemd-analyze verify needs k3s-agent.service's ExecStart to exist.
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { parse } from 'yaml';
import { type ExecResult, runCommand } from '../../agents/src/exec.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const MAKE_ROOT = join(REPO_ROOT, 'test/node-image/make-debian-root.sh');
const UNITS = ['secai-base-firewall.service', 'secai-firstboot.service', 'secai-agent.service', 'k3s-agent.service'];
// A cold debootstrap downloads ~50 MB and installs ~230 MB on two shared cores.
const BUILD_TIMEOUT_MS = 20 * 60_000;
const HOST_SYSCTLS = ['kernel/kptr_restrict', 'kernel/perf_event_paranoid', 'net/ipv4/conf/all/accept_redirects', 'vm/overcommit_memory'];

let parent: string;
let root: string;
const hostBefore = { sysctls: HOST_SYSCTLS.map(readHostSysctl), tables: hostTables() };

function readHostSysctl(path: string): string {
  return readFileSync(join('/proc/sys', path), 'utf8');
}

function hostTables(): string {
  return execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mountPoint) => mountPoint === dir || mountPoint.startsWith(`${dir}/`));
}

function removeTree(): void {
  if (!parent) return;
  // Deepest first; lazily, so a busy mount cannot keep the tree.
  for (const mountPoint of mountsUnder(parent).reverse()) execFileSync('umount', ['-l', mountPoint]);
  rmSync(parent, { recursive: true, force: true });
}

function inChroot(command: string, args: readonly string[] = [], timeoutMs = 60_000): Promise<ExecResult> {
  return runCommand('unshare', ['--mount', '--propagation', 'private', '--fork', '--pid', `--mount-proc=${root}/proc`, 'chroot', root, command, ...args], {
    timeoutMs,
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', SYSTEMD_COLORS: '0', SYSTEMD_URLIFY: '0', LANG: 'C.UTF-8' },
  });
}

function expectSuccess(result: ExecResult): void {
  if (result.code !== 0) throw new Error(`exit ${result.code}: ${result.stderr.slice(-2000)}`);
}

beforeAll(async () => {
  process.once('exit', removeTree);
  parent = mkdtempSync(join(tmpdir(), 'secai-node-root-'));
  root = join(parent, 'root');
  const built = await runCommand(MAKE_ROOT, [root], { timeoutMs: BUILD_TIMEOUT_MS });
  // How long the cold (download and install) or warm (cached tree) path took.
  console.log(built.stderr.trim());
  expectSuccess(built);

  cpSync(join(REPO_ROOT, 'node-image'), join(root, 'tmp/secai-node-image'), { recursive: true });
  const bundle = join(root, 'tmp/k3s-bundle');
  mkdirSync(bundle);
  writeFileSync(join(bundle, 'k3s'), '#!/bin/sh\necho "k3s stand-in"\n', { mode: 0o755 });
  writeFileSync(join(bundle, 'k3s-airgap-images-amd64.tar.zst'), 'stand-in image tarball');
  expectSuccess(await inChroot('/tmp/secai-node-image/install-node-hardening.sh', ['--k3s-bundle', '/tmp/k3s-bundle']));

  // What the person installing the node writes before first boot.
  writeFileSync(join(root, 'etc/secai/node.env'), 'K3S_URL=https://192.0.2.10:6443\nK3S_TOKEN_FILE=/etc/secai/k3s-token\nSECAI_NODE_LABELS="topology.secai.io/rack=r7"\n');
  writeFileSync(join(root, 'etc/secai/k3s-token'), 'K10stand-in::server:stand-in\n', { mode: 0o600 });
  expectSuccess(await inChroot('/usr/libexec/secai/secai-firstboot'));
}, BUILD_TIMEOUT_MS + 120_000);

afterAll(() => {
  removeTree();
  process.removeListener('exit', removeTree);
  expect(mountsUnder(parent)).toEqual([]);
  expect(existsSync(parent)).toBe(false);
});

it('installs SecAI OS’s sysctl file where the tree’s systemd-sysctl reads it', async () => {
  const installed = readFileSync(join(root, 'usr/lib/sysctl.d/90-secai.conf'), 'utf8');
  expect(installed).toBe(readFileSync(join(REPO_ROOT, 'node-image/rootfs/usr/lib/sysctl.d/90-secai.conf'), 'utf8'));
  // Not its exit code: minbase has /etc/sysctl.d/99-sysctl.conf as a dangling link (no procps).
  const config = await inChroot('systemd-analyze', ['cat-config', 'sysctl.d']);
  expect(config.stdout).toContain('# /usr/lib/sysctl.d/90-secai.conf');
  expect(config.stdout).toContain('kernel.kptr_restrict = 2');
});

it('installs a base ruleset that the tree’s nft accepts, with the join rule from node.env', async () => {
  expectSuccess(await inChroot('nft', ['-c', '-f', '/usr/lib/secai/base-ruleset.nft']));
  const check = await inChroot('/usr/libexec/secai/secai-base-firewall', ['--check']);
  expectSuccess(check);
  expect(check.stdout).toContain('base ruleset /usr/lib/secai/base-ruleset.nft and 1 join rule(s) are valid');
});

it('enables the units and masks the services that would load another ruleset', async () => {
  const result = await inChroot('systemctl', ['is-enabled', ...UNITS, 'nftables.service', 'firewalld.service', 'netfilter-persistent.service']);
  expect(result.stdout.trim().split('\n')).toEqual(['enabled', 'enabled', 'enabled', 'enabled', 'masked', 'masked', 'masked']);
  expect(readlinkSync(join(root, 'etc/systemd/system/sysinit.target.wants/secai-base-firewall.service'))).toBe('/lib/systemd/system/secai-base-firewall.service');
});

it('passes systemd-analyze verify in the tree, warnings included, for every unit and the network drop-in', async () => {
  const result = await inChroot('systemd-analyze', ['verify', '--man=no', ...UNITS, 'systemd-networkd.service']);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
});

it('gives the agent CAP_SYS_ADMIN back on Debian, where unprivileged user namespaces are switched off', () => {
  const dropIn = readFileSync(join(root, 'usr/lib/systemd/system/secai-agent.service.d/50-userns-clone.conf'), 'utf8');
  expect(dropIn).toMatch(/^CapabilityBoundingSet=CAP_SYS_ADMIN$/m);
});

it('registers the node with k3s as a SecAI node, tainted until compliant', () => {
  const config = parse(readFileSync(join(root, 'etc/rancher/k3s/config.yaml.d/50-secai-node.yaml'), 'utf8'));
  expect(config).toEqual({
    'node-label': ['secai.io/node=true', 'secai.io/image-version=12', 'topology.secai.io/rack=r7'],
    'node-taint': ['secai.io/not-compliant:NoSchedule'],
  });
  expect(statSync(join(root, 'var/lib/secai/firstboot.done')).isFile()).toBe(true);
});

it('creates the state directories and links the air-gap images where k3s imports them', async () => {
  expectSuccess(await inChroot('systemd-tmpfiles', ['--create', '/usr/lib/tmpfiles.d/secai.conf', '/usr/lib/tmpfiles.d/secai-k3s-images.conf']));
  expect(statSync(join(root, 'var/lib/secai')).mode & 0o777).toBe(0o750);
  expect(statSync(join(root, 'var/lib/secai/vault')).mode & 0o777).toBe(0o700);
  const image = join(root, 'var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst');
  expect(lstatSync(image).isSymbolicLink()).toBe(true);
  expect(readlinkSync(image)).toBe('/usr/lib/secai/k3s-images/k3s-airgap-images-amd64.tar.zst');
  expect(statSync(join(root, 'usr/bin/k3s')).mode & 0o777).toBe(0o755);
});

it('keeps node configuration private', () => {
  expect(statSync(join(root, 'etc/secai')).mode & 0o777).toBe(0o750);
});

it('changed nothing on the host: its sysctls and nftables tables are as before', () => {
  expect(HOST_SYSCTLS.map(readHostSysctl)).toEqual(hostBefore.sysctls);
  expect(hostTables()).toBe(hostBefore.tables);
});
