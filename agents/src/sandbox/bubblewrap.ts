// Runs a program inside bubblewrap with every namespace unshared (so no network but a private
// loopback), only the listed paths bound read-only, a size-bounded tmpfs for scratch, a cleared
// environment, no capabilities, and death with the parent. Inside, the seccomp filter (installed
// by bwrap) and the Landlock launcher (run before the program) add what the kernel offers.
// Rendering the arguments is pure; spawning is the thin shell around it.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { compileSeccompFilter } from './seccomp-filter.js';
import type { SandboxSupport } from './sandbox-support.js';

export interface SandboxBind {
  source: string;
  target: string;
}

/** Landlock grants, as paths inside the sandbox; everything else is denied. */
export interface LandlockGrants {
  read: readonly string[];
  readExec: readonly string[];
  write: readonly string[];
  devices: readonly string[];
}

export interface SandboxSpec {
  /** The program and its arguments, as seen inside. */
  argv: readonly string[];
  readOnlyBinds: readonly SandboxBind[];
  /** Device nodes bound when present (GPU nodes), each at the same path. */
  devices: readonly string[];
  symlinks: readonly { target: string; path: string }[];
  scratch: { path: string; sizeBytes: number };
  env: Readonly<Record<string, string>>;
  cwd: string;
  landlock: LandlockGrants;
}

/** File descriptors as the sandboxed program sees them. */
export const SANDBOX_CHANNEL_FD = 3;
const SECCOMP_FD = 4;
export const LANDLOCK_LAUNCHER_INSIDE = '/run/secai/landlock-exec';

export interface RenderedLayers {
  seccompFd?: number;
  landlockLauncher?: string;
}

export function renderLandlockArgs(grants: LandlockGrants): string[] {
  const args: string[] = [];
  for (const path of grants.read) args.push('--read', path);
  for (const path of grants.readExec) args.push('--read-exec', path);
  for (const path of grants.write) args.push('--write', path);
  for (const path of grants.devices) args.push('--device', path);
  return args;
}

export function renderBubblewrapArgs(spec: SandboxSpec, layers: RenderedLayers): string[] {
  const args = [
    '--unshare-all',
    '--unshare-user',
    '--disable-userns',
    '--die-with-parent',
    // A new session: the sandbox cannot push input into a terminal of ours (TIOCSTI).
    '--new-session',
    '--cap-drop', 'ALL',
    '--hostname', 'sandbox',
    '--clearenv',
  ];
  for (const [name, value] of Object.entries(spec.env)) args.push('--setenv', name, value);
  args.push('--proc', '/proc', '--dev', '/dev');
  args.push('--size', String(spec.scratch.sizeBytes), '--tmpfs', spec.scratch.path);
  for (const bind of spec.readOnlyBinds) args.push('--ro-bind', bind.source, bind.target);
  for (const link of spec.symlinks) args.push('--symlink', link.target, link.path);
  for (const device of spec.devices) args.push('--dev-bind-try', device, device);
  if (layers.landlockLauncher) args.push('--ro-bind', layers.landlockLauncher, LANDLOCK_LAUNCHER_INSIDE);
  if (layers.seccompFd !== undefined) args.push('--seccomp', String(layers.seccompFd));
  args.push('--chdir', spec.cwd, '--');
  if (layers.landlockLauncher) args.push(LANDLOCK_LAUNCHER_INSIDE, ...renderLandlockArgs(spec.landlock), '--');
  args.push(...spec.argv);
  return args;
}

export interface SandboxedChild {
  child: ChildProcess;
  /** A UNIX stream socket whose other end is fd 3 inside the sandbox. */
  channel: Socket;
}

export interface SpawnSandboxedOptions {
  /** Runs bwrap through this command, e.g. `ip netns exec NAME` in tests. */
  prefix?: readonly string[];
}

export function spawnSandboxed(spec: SandboxSpec, support: SandboxSupport, options: SpawnSandboxedOptions = {}): SandboxedChild {
  const seccomp = support.seccomp.available ? compileSeccompFilter(support.seccomp.arch) : undefined;
  const args = renderBubblewrapArgs(spec, {
    seccompFd: seccomp ? SECCOMP_FD : undefined,
    landlockLauncher: support.landlock.available ? support.landlock.launcher : undefined,
  });
  const [command, ...rest] = [...(options.prefix ?? []), support.bubblewrap, ...args] as [string, ...string[]];
  // stdio 'pipe' is a UNIX socketpair in libuv, so fd 3 is the worker's channel; fd 4 carries the
  // filter, which bwrap reads to the end before it starts the program.
  const child = spawn(command, rest, {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe', seccomp ? 'pipe' : 'ignore'],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  if (seccomp) {
    const filterPipe = child.stdio[SECCOMP_FD] as Writable;
    filterPipe.on('error', () => {
      // bwrap failed before reading it; its exit status says why.
    });
    filterPipe.end(seccomp);
  }
  return { child, channel: child.stdio[SANDBOX_CHANNEL_FD] as Socket };
}
