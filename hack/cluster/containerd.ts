// One node's container runtime: containerd 2 with runc (cgroupfs, cgroup v1 here) in a network
// namespace the caller made and a mount namespace of its own, so that the node's /run (containerd's
// state, the shims' sockets, CRI's Pod network namespaces) is a directory under the node's root and
// nothing of it appears on the host. Everything else containerd keeps is under the same root.
//
// Containers' cgroups are <controller>/<containerd namespace>/<container id>; stop() kills whatever
// is left in them (shims and containers survive containerd's own death), removes them, and removes
// the root. Used by the tests and the lab; binaries come from hack/install-tools.sh runtime.
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Exec, type ExecResult, runCommand } from '../../agents/src/exec.js';
import type { NetnsHarness, NetnsProcess } from '../../test/support/netns.js';
import { REPO_ROOT } from '../control-plane/control-plane.js';

export const HACK_BIN = join(REPO_ROOT, 'hack', 'bin');
const CGROUP_ROOT = '/sys/fs/cgroup';

export interface ContainerdNodeOptions {
  /** The node's name, used in messages. */
  name: string;
  /** A directory only this node uses; created, and removed by stop(). */
  root: string;
  /** The node's network namespace (its "host network"), made by the harness. */
  netns: string;
  harness: NetnsHarness;
  /**
   * containerd namespace of the node's ctr containers, also the first level of their cgroups (so
   * unique per node: stop() kills what is in them). CRI's Pods use k8s.io, cgroups of the kubelet's.
   */
  namespace: string;
  /** The sandbox image CRI pins (the pause image the project builds). */
  sandboxImage?: string;
  exec?: Exec;
}

const CAP_SYS_RESOURCE = 24;

/** Whether this process holds a capability (effective set). */
export function hasCapability(bit: number): boolean {
  const line = readFileSync('/proc/self/status', 'utf8').match(/^CapEff:\s*([0-9a-f]+)$/m);
  return line !== null && ((BigInt(`0x${line[1]}`) >> BigInt(bit)) & 1n) === 1n;
}

/**
 * containerd's configuration (version 3): every path under the node's root or hack/bin. Without
 * CAP_SYS_RESOURCE (this machine's sandbox drops it) no process may lower its oom_score_adj, and
 * runc fails every Pod sandbox the kubelet asks for at -998: CRI then keeps Pods' scores no lower
 * than containerd's own.
 */
export function renderContainerdConfig(root: string, sandboxImage: string): string {
  return `version = 3
root = "${root}/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "/run/containerd/containerd.sock"

[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "${root}/opt/containerd"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${sandboxImage}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = ${!hasCapability(CAP_SYS_RESOURCE)}
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "${HACK_BIN}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["${HACK_BIN}/cni"]
    conf_dir = "${root}/etc/cni/net.d"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
`;
}

export class ContainerdNode {
  readonly name: string;
  readonly root: string;
  readonly namespace: string;
  private readonly options: ContainerdNodeOptions;
  private readonly exec: Exec;
  private daemon?: NetnsProcess;
  private readonly cgroupRoots = new Set<string>();

  constructor(options: ContainerdNodeOptions) {
    this.options = options;
    this.name = options.name;
    this.root = options.root;
    if (options.namespace === 'k8s.io') throw new Error('the ctr namespace of a node must be its own, not k8s.io');
    this.namespace = options.namespace;
    this.exec = options.exec ?? runCommand;
  }

  /** The containerd process id; its mount and network namespaces are the node's. */
  get pid(): number {
    if (!this.daemon) throw new Error(`node ${this.name}: containerd is not running`);
    return this.daemon.pid;
  }

  async start(timeoutMs = 30_000): Promise<void> {
    const { root } = this;
    for (const dir of ['run', 'lib', 'opt', 'etc/cni/net.d', 'log', 'secai']) await mkdir(join(root, dir), { recursive: true });
    const config = join(root, 'etc', 'containerd.toml');
    await writeFile(config, renderContainerdConfig(root, this.options.sandboxImage ?? 'registry.k8s.io/pause:3.10.2'));
    // The mount namespace is private (nothing propagates to the host); the node's /run and
    // /var/lib/secai (the agent's state, audit log and vault, hostPaths of the chart) are its own.
    // `ip netns exec` mounts a sysfs of the node's network namespace over /sys, which hides the
    // cgroup hierarchies runc needs: they are mounted again (the same hierarchies as the host's).
    const script = [
      'set -e',
      ...(await cgroupMountCommands()),
      `mount --bind ${shellQuote(join(root, 'run'))} /run`,
      'mkdir -p /run/containerd /var/lib/secai',
      `mount --bind ${shellQuote(join(root, 'secai'))} /var/lib/secai`,
      // Shared within the node (a peer group of its own): the chart mounts the vault into the agent
      // with HostToContainer propagation, which a private mount refuses.
      'mount --make-rshared /var/lib/secai',
      `exec ${shellQuote(join(HACK_BIN, 'containerd'))} --config ${shellQuote(config)} --log-level info`,
    ].join('\n');
    this.daemon = this.options.harness.spawn(this.options.netns, 'unshare', ['--mount', '--propagation', 'private', '--', 'bash', '-c', script], {
      // The shim is found on PATH; the runc binary is named in the config.
      env: { ...process.env, PATH: `${HACK_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}` },
    });
    const daemon = this.daemon;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const exited = await Promise.race([daemon.exited.then((status) => status), sleep(200).then(() => undefined)]);
      if (exited) return this.failStart(`containerd exited (${exited.signal ?? `code ${exited.code}`}) while starting: ${containerdFailure(daemon.stderr())}`);
      if (daemon.stderr().includes('containerd successfully booted')) {
        const version = await this.ctr(['version']);
        if (version.code === 0) return;
      }
      if (Date.now() > deadline) return this.failStart(`containerd did not answer within ${timeoutMs} ms: ${containerdFailure(daemon.stderr())}`);
    }
  }

  /**
   * A runtime that cannot start leaves nothing behind: the daemon (if still running), its shims and
   * cgroups and the node's root are removed, and the error names the node and the cause. The whole
   * log is kept in the error's `log`.
   */
  private async failStart(reason: string): Promise<never> {
    const log = this.containerdLog();
    await this.stop();
    throw Object.assign(new Error(`node ${this.name}: the container runtime cannot start: ${reason}`), { log });
  }

  /**
   * The node's CNI network: a bridge `cni0` with the node's end as gateway, addresses from
   * `subnet` (host-local), and portmap with its nftables backend (there is no iptables here) for
   * hostPorts. CRI reports its network ready, and so the kubelet its node, only once one exists.
   * `routes`: destinations a Pod reaches through the node (e.g. the Service range, which the
   * node's kube-proxy rewrites); a Pod has no default route.
   */
  async writeCniConfig(subnet: string, routes: readonly string[] = []): Promise<void> {
    await writeFile(
      join(this.root, 'etc/cni/net.d/10-lab.conflist'),
      JSON.stringify({
        cniVersion: '1.1.0',
        name: 'lab',
        plugins: [
          { type: 'bridge', bridge: 'cni0', isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: routes.map((dst) => ({ dst })), dataDir: join(this.root, 'lib/cni') } },
          { type: 'portmap', capabilities: { portMappings: true }, backend: 'nftables' },
        ],
      }),
    );
  }

  /** Runs a command in the node's mount and network namespaces (containerd's). */
  inNode(command: string, args: readonly string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
    return this.exec('nsenter', ['--target', String(this.pid), '--mount', '--net', '--', command, ...args], {
      timeoutMs: options.timeoutMs ?? 60_000,
      env: { ...process.env, PATH: `${HACK_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}`, ...options.env },
    });
  }

  /** `ctr` against this node's containerd, in its namespaces (`namespace`: k8s.io for CRI's). */
  ctr(args: readonly string[], timeoutMs = 60_000, namespace = this.namespace): Promise<ExecResult> {
    return this.inNode(join(HACK_BIN, 'ctr'), ['--namespace', namespace, ...args], { timeoutMs });
  }

  async ctrChecked(args: readonly string[], timeoutMs = 60_000): Promise<string> {
    const result = await this.ctr(args, timeoutMs);
    if (result.code !== 0) throw new Error(`node ${this.name}: ctr ${args.join(' ')} exited ${result.code}: ${result.stderr.trim().slice(-2000)}`);
    return result.stdout;
  }

  containerdLog(): string {
    return this.daemon?.stderr() ?? '';
  }

  /** A cgroup tree (`/name`, in every hierarchy) whose processes belong to this node: the kubelet's. */
  async addCgroupRoot(path: string): Promise<void> {
    if (!/^\/[a-z0-9][a-z0-9.-]*$/.test(path)) throw new Error(`bad cgroup root ${path}`);
    this.cgroupRoots.add(path);
    for (const controller of await controllers()) await mkdir(join(CGROUP_ROOT, controller, path), { recursive: true });
  }

  /** Stops containers, shims and containerd, removes the node's cgroups and its root. */
  async stop(): Promise<void> {
    // containerd first: alive, it answers each dying shim by running `shim delete`, which writes
    // into the task directories while they are being removed.
    await this.daemon?.kill('SIGKILL');
    this.daemon = undefined;
    const cgroups = [...(await this.containerCgroups()), ...(await this.cgroupTrees())];
    for (const dir of cgroups) await killCgroup(dir);
    const shims = await this.shimPids();
    for (const pid of shims) killPid(pid);
    await waitForExit(shims, 10_000);
    // A killed process leaves its cgroup only once it has exited and been reaped.
    for (const dir of cgroups) await removeCgroup(dir);
    for (const controller of await controllers()) await removeCgroup(join(CGROUP_ROOT, controller, this.namespace));
    await rm(this.root, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }

  /** The cgroup directories of this node's containers, deepest first per controller. */
  private async containerCgroups(): Promise<string[]> {
    const found: string[] = [];
    for (const controller of await controllers()) {
      const base = join(CGROUP_ROOT, controller, this.namespace);
      const entries = await readdir(base, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) if (entry.isDirectory()) found.push(join(base, entry.name));
    }
    return found;
  }

  /** Every directory of the added cgroup roots, deepest first, the roots last. */
  private async cgroupTrees(): Promise<string[]> {
    const found: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) if (entry.isDirectory()) await walk(join(dir, entry.name));
      found.push(dir);
    };
    for (const controller of await controllers()) for (const root of this.cgroupRoots) await walk(join(CGROUP_ROOT, controller, root));
    return found;
  }

  /**
   * Shims write their pid next to their bundle under the node's /run (containerd's state dir, the
   * node's own, so every containerd namespace in it is this node's: ctr's and CRI's k8s.io).
   */
  private async shimPids(): Promise<number[]> {
    const tasks = join(this.root, 'run', 'containerd', 'io.containerd.runtime.v2.task');
    const pids: number[] = [];
    for (const namespace of await readdir(tasks).catch(() => [] as string[])) {
      for (const id of await readdir(join(tasks, namespace)).catch(() => [] as string[])) {
        const text = await readFile(join(tasks, namespace, id, 'shim.pid'), 'utf8').catch(() => '');
        const pid = Number.parseInt(text, 10);
        if (Number.isInteger(pid) && pid > 1) pids.push(pid);
      }
    }
    return pids;
  }
}

/** Commands that mount the host's cgroup hierarchies (v1 and the unified one) at the same places. */
export async function cgroupMountCommands(): Promise<string[]> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((line) => line.split(' '));
  const commands = [`mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup-root ${CGROUP_ROOT}`];
  for (const [, mountPoint, type, options] of mounts) {
    if (!mountPoint?.startsWith(`${CGROUP_ROOT}/`) || !options) continue;
    const own = options.split(',').filter((o) => !['rw', 'ro', 'relatime', 'nosuid', 'nodev', 'noexec'].includes(o));
    if (type === 'cgroup') {
      // A named hierarchy without controllers (name=systemd) must say so, or it would take them all.
      if (own.every((o) => o.startsWith('name='))) own.unshift('none');
      commands.push(`mkdir -p ${shellQuote(mountPoint)}`, `mount -t cgroup -o ${shellQuote(['nosuid', 'nodev', 'noexec', ...own].join(','))} cgroup ${shellQuote(mountPoint)}`);
    } else if (type === 'cgroup2') {
      commands.push(`mkdir -p ${shellQuote(mountPoint)}`, `mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 ${shellQuote(mountPoint)}`);
    }
  }
  return commands;
}

async function controllers(): Promise<string[]> {
  const entries = await readdir(CGROUP_ROOT, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

async function killCgroup(dir: string): Promise<void> {
  const text = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const pid = Number.parseInt(line, 10);
    if (Number.isInteger(pid) && pid > 1) killPid(pid);
  }
  // A frozen cgroup would keep its processes alive past SIGKILL (only the freezer has the file).
  await writeFile(join(dir, 'freezer.state'), 'THAWED').catch(() => undefined);
}

async function removeCgroup(dir: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) throw new Error(`cannot remove cgroup ${dir}: ${(error as Error).message}`);
      await killCgroup(dir);
      await sleep(50);
    }
  }
}

/** Waits until none of `pids` is alive (a zombie counts as gone), at most `timeoutMs`. */
async function waitForExit(pids: readonly number[], timeoutMs: number): Promise<void> {
  const alive = (pid: number) => {
    try {
      return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive) && Date.now() < deadline) await sleep(20);
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/**
 * The line of containerd's log that says why it stopped: its last fatal or error entry (logfmt
 * `msg` and `error` fields), else the last line of its output.
 */
export function containerdFailure(log: string): string {
  const lines = log.split('\n').filter((line) => line.trim() !== '');
  const entry = [...lines].reverse().find((line) => /\blevel=(fatal|error)\b/.test(line));
  if (!entry) return lines.at(-1)?.trim() ?? '(no output)';
  const field = (name: string) => entry.match(new RegExp(`\\b${name}="((?:[^"\\\\]|\\\\.)*)"`))?.[1]?.replaceAll('\\"', '"');
  const msg = field('msg');
  const error = field('error');
  return [msg, error].filter(Boolean).join(': ') || entry.trim();
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
