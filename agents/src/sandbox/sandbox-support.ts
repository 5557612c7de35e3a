// What this node's kernel and installation offer a sandbox: bubblewrap (required), a seccomp filter
// for the running architecture, and Landlock through the compiled launcher. Layers the kernel lacks
// are reported, not silently skipped: `describeSandboxSupport` goes into service status.
import { readFile } from 'node:fs/promises';
import type { Exec } from '../exec.js';
import { buildLandlockLauncher, readLandlockAbi } from './landlock-launcher.js';
import { seccompArchFor, type SeccompArch } from './seccomp-filter.js';

export type SandboxLayer<T> = ({ available: true } & T) | { available: false; why: string };

export interface SandboxSupport {
  bubblewrap: string;
  seccomp: SandboxLayer<{ arch: SeccompArch }>;
  landlock: SandboxLayer<{ abi: number; launcher: string }>;
}

export interface SandboxProbe {
  exec: Exec;
  cacheDir: string;
  bubblewrap?: string;
  arch?: string;
  readText?: (path: string) => Promise<string>;
}

export async function detectSandboxSupport(probe: SandboxProbe): Promise<SandboxSupport> {
  const bubblewrap = probe.bubblewrap ?? 'bwrap';
  const readText = probe.readText ?? ((path: string) => readFile(path, 'utf8'));
  const version = await probe.exec(bubblewrap, ['--version'], { timeoutMs: 10_000 }).catch((error: Error) => error);
  if (version instanceof Error || version.code !== 0) {
    throw new Error(`bubblewrap is required for inference and was not found as ${bubblewrap} (Debian package bubblewrap)`);
  }
  return {
    bubblewrap,
    seccomp: await detectSeccomp(probe.arch ?? process.arch, readText),
    landlock: await detectLandlock(probe),
  };
}

async function detectSeccomp(nodeArch: string, readText: (path: string) => Promise<string>): Promise<SandboxSupport['seccomp']> {
  const arch = seccompArchFor(nodeArch);
  if (!arch) return { available: false, why: `no seccomp syscall table for architecture ${nodeArch}` };
  // actions_avail exists only with CONFIG_SECCOMP_FILTER; the filter needs these three actions.
  const actions = await readText('/proc/sys/kernel/seccomp/actions_avail').catch(() => '');
  const have = new Set(actions.trim().split(/\s+/));
  for (const action of ['kill_process', 'errno', 'allow']) {
    if (!have.has(action)) return { available: false, why: `the kernel has no seccomp filter action ${action}` };
  }
  return { available: true, arch };
}

async function detectLandlock(probe: SandboxProbe): Promise<SandboxSupport['landlock']> {
  let launcher: string;
  try {
    launcher = await buildLandlockLauncher({ exec: probe.exec, cacheDir: probe.cacheDir });
  } catch (error) {
    return { available: false, why: (error as Error).message };
  }
  const abi = await readLandlockAbi(probe.exec, launcher);
  if (abi < 1) return { available: false, why: 'the kernel has no Landlock (ABI 0)' };
  return { available: true, abi, launcher };
}

/** One line for status messages, e.g. "bubblewrap, seccomp x86_64, Landlock ABI 7". */
export function describeSandboxSupport(support: SandboxSupport): string {
  const parts = ['bubblewrap'];
  parts.push(support.seccomp.available ? `seccomp ${support.seccomp.arch}` : `no seccomp (${support.seccomp.why})`);
  parts.push(support.landlock.available ? `Landlock ABI ${support.landlock.abi}` : `no Landlock (${support.landlock.why})`);
  return parts.join(', ');
}

/** True when a layer the design asks for is missing on this node. */
export function sandboxIsDegraded(support: SandboxSupport): boolean {
  return !support.seccomp.available || !support.landlock.available;
}
