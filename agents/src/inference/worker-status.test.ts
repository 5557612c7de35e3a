// Pure pieces of the worker's supervision: how exits are described, when the sandbox a worker
// reports falls short, and the restart backoff.
import type { SandboxSupport } from '../sandbox/sandbox-support.js';
import { containmentShortfall, describeWorkerExit, printable } from './inference-worker.js';
import { DEFAULT_RESTART_POLICY, restartDelayMs } from './supervised-worker.js';

describe('describeWorkerExit', () => {
  it.each<[number | null, NodeJS.Signals | null, string]>([
    [null, 'SIGKILL', 'killed by SIGKILL'],
    [134, null, 'killed by SIGABRT'],
    [139, null, 'killed by SIGSEGV'],
    [0, null, 'exited with status 0'],
    [126, null, 'exited with status 126'],
  ])('code %p signal %p -> %s', (code, signal, text) => {
    expect(describeWorkerExit(code, signal)).toBe(text);
  });
});

describe('containmentShortfall', () => {
  const full: SandboxSupport = {
    bubblewrap: 'bwrap',
    seccomp: { available: true, arch: 'x86_64' },
    landlock: { available: true, abi: 7, launcher: '/x' },
  };
  const bare: SandboxSupport = {
    bubblewrap: 'bwrap',
    seccomp: { available: false, why: 'none' },
    landlock: { available: false, why: 'none' },
  };
  const confined = { seccomp: true, landlock: true, networkInterfaces: ['lo'] };
  it.each<[string, SandboxSupport, typeof confined, RegExp | undefined]>([
    ['every layer present', full, confined, undefined],
    ['seccomp missing inside', full, { ...confined, seccomp: false }, /seccomp/],
    ['Landlock missing inside', full, { ...confined, landlock: false }, /Landlock/],
    ['a network interface beyond loopback', full, { ...confined, networkInterfaces: ['lo', 'eth0'] }, /eth0/],
    ['a node without the layers (reported as degraded instead)', bare, { seccomp: false, landlock: false, networkInterfaces: ['lo'] }, undefined],
    ['a node without the layers still needs the network namespace', bare, { seccomp: false, landlock: false, networkInterfaces: ['lo', 'eth0'] }, /eth0/],
  ])('%s', (_what, support, containment, problem) => {
    const found = containmentShortfall(containment, support);
    if (problem) expect(found).toMatch(problem);
    else expect(found).toBeUndefined();
  });
});

describe('restartDelayMs', () => {
  it.each([
    [1, 1000],
    [2, 2000],
    [3, 4000],
    [6, 32_000],
    [7, 60_000],
    [100, 60_000],
  ])('restart %d waits %d ms', (failures, delay) => {
    expect(restartDelayMs(failures, DEFAULT_RESTART_POLICY)).toBe(delay);
  });
});

describe('printable', () => {
  it('replaces control characters and keeps the tail within the bound', () => {
    expect(printable('bad\u001b[31mtemplate\nline\u2028x', 100)).toBe('bad [31mtemplate line x');
    expect(printable('0123456789', 4)).toBe('6789');
  });
});
