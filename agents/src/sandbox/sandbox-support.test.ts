// How a node without some layer is described: the probes' edges (commands, /proc files) are faked;
// the real kernel is covered by sandbox-layers.test.ts.
import type { Exec, ExecResult } from '../exec.js';
import { describeSandboxSupport, detectSandboxSupport, sandboxIsDegraded } from './sandbox-support.js';

const ok = (stdout = ''): ExecResult => ({ code: 0, signal: null, stdout, stderr: '', timedOut: false });
const missing = (): Promise<ExecResult> => Promise.reject(Object.assign(new Error('spawn ENOENT'), { code: 'ENOENT' }));

function execWith(commands: Record<string, () => Promise<ExecResult>>): Exec {
  return (command) => (commands[command] ?? missing)();
}

describe('detectSandboxSupport', () => {
  it('requires bubblewrap', async () => {
    await expect(detectSandboxSupport({ exec: execWith({}), cacheDir: '/nonexistent' })).rejects.toThrow(/bubblewrap is required/);
  });

  it('reports Landlock missing when the launcher cannot be compiled', async () => {
    const support = await detectSandboxSupport({
      exec: execWith({ bwrap: async () => ok('bubblewrap 0.8.0') }),
      cacheDir: '/nonexistent',
      readText: async () => 'kill_process kill_thread trap errno user_notif trace log allow',
    });
    expect(support.seccomp).toEqual({ available: true, arch: expect.any(String) });
    expect(support.landlock).toEqual({ available: false, why: expect.stringMatching(/gcc is not usable \(Debian package gcc\)/) });
    expect(sandboxIsDegraded(support)).toBe(true);
    expect(describeSandboxSupport(support)).toMatch(/^bubblewrap, seccomp \w+, no Landlock \(cannot build/);
  });

  it('reports seccomp missing without filter actions or a syscall table', async () => {
    const exec = execWith({ bwrap: async () => ok() });
    const noFilter = await detectSandboxSupport({ exec, cacheDir: '/nonexistent', readText: async () => '' });
    expect(noFilter.seccomp).toEqual({ available: false, why: 'the kernel has no seccomp filter action kill_process' });
    const otherArch = await detectSandboxSupport({ exec, cacheDir: '/nonexistent', arch: 'riscv64', readText: async () => 'kill_process errno allow' });
    expect(otherArch.seccomp).toEqual({ available: false, why: 'no seccomp syscall table for architecture riscv64' });
  });
});
