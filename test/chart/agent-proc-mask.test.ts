// Why the agent container is privileged in daemonset mode (charts/secai-fleet/README.md): bubblewrap
// mounts a fresh /proc in its sandbox, and the kernel refuses that while a /proc mount has masked
// parts, as container runtimes mask /proc/timer_list, /proc/kcore and others in every unprivileged
// container. Reproduced here in a private mount namespace: the same bubblewrap call works on an
// unmasked /proc and fails once one file of it is masked the way runc masks it.
import { execFile } from 'node:child_process';

const BWRAP = 'bwrap --unshare-all --unshare-user --die-with-parent --ro-bind / / --proc /proc --dev /dev true';

function inMountNamespace(script: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, output: stdout + stderr });
    });
  });
}

it('bubblewrap mounts its own /proc when /proc is not masked', async () => {
  expect(await inMountNamespace(BWRAP)).toEqual({ code: 0, output: '' });
});

it('bubblewrap cannot mount its /proc once a /proc file is masked as in a container', async () => {
  const { code, output } = await inMountNamespace(`mount --bind /dev/null /proc/timer_list && ${BWRAP}`);
  expect(code).not.toBe(0);
  expect(output).toContain("Can't mount proc");
});
