import { existsSync, readFileSync } from 'node:fs';
import {
  BPF,
  CLONE_NAMESPACE_FLAGS,
  compileSeccompFilter,
  DENIED_SYSCALLS,
  SECCOMP_RET,
  seccompArchFor,
  seccompFilterProgram,
  SYSCALL_TABLES,
  type BpfInstruction,
  type SeccompArch,
} from './seccomp-filter.js';

// A classic-BPF interpreter for the instructions the filter uses, run on struct seccomp_data.
function runFilter(program: BpfInstruction[], data: { arch: number; nr: number; args?: number[] }): number {
  const word = (offset: number): number => {
    if (offset === 0) return data.nr >>> 0;
    if (offset === 4) return data.arch >>> 0;
    if (offset >= 16 && offset < 64 && offset % 8 === 0) return (data.args?.[(offset - 16) / 8] ?? 0) >>> 0;
    if (offset >= 16 && offset < 64) return 0;
    throw new Error(`load from offset ${offset}`);
  };
  let a = 0;
  for (let pc = 0, steps = 0; pc < program.length && steps < 1000; steps++) {
    const insn = program[pc]!;
    switch (insn.code) {
      case BPF.LD_W_ABS:
        a = word(insn.k);
        pc++;
        break;
      case BPF.JMP_JEQ_K:
        pc += 1 + (a === insn.k ? insn.jt : insn.jf);
        break;
      case BPF.JMP_JGE_K:
        pc += 1 + (a >= insn.k ? insn.jt : insn.jf);
        break;
      case BPF.JMP_JSET_K:
        pc += 1 + ((a & insn.k) !== 0 ? insn.jt : insn.jf);
        break;
      case BPF.RET_K:
        return insn.k;
      default:
        throw new Error(`unexpected opcode ${insn.code}`);
    }
  }
  throw new Error('the filter fell off its end');
}

const EPERM = SECCOMP_RET.ERRNO | 1;
const ENOSYS = SECCOMP_RET.ERRNO | 38;
const AF = { UNIX: 1, INET: 2, INET6: 10, NETLINK: 16, PACKET: 17, VSOCK: 40 };
const CLONE_THREAD_FLAGS = 0x003d0f00; // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID

describe('the seccomp filter', () => {
  const cases: Array<[SeccompArch, string, { nr: number; args?: number[]; arch?: number }, number]> = [];
  for (const arch of ['x86_64', 'aarch64'] as const) {
    const t = SYSCALL_TABLES[arch];
    const { socket, clone, clone3 } = t.inspected;
    cases.push(
      [arch, 'socket(AF_UNIX) is allowed', { nr: socket, args: [AF.UNIX] }, SECCOMP_RET.ALLOW],
      [arch, 'socket(AF_INET) is refused', { nr: socket, args: [AF.INET] }, EPERM],
      [arch, 'socket(AF_INET6) is refused', { nr: socket, args: [AF.INET6] }, EPERM],
      [arch, 'socket(AF_NETLINK) is refused', { nr: socket, args: [AF.NETLINK] }, EPERM],
      [arch, 'socket(AF_PACKET) is refused', { nr: socket, args: [AF.PACKET] }, EPERM],
      [arch, 'socket(AF_VSOCK) is refused', { nr: socket, args: [AF.VSOCK] }, EPERM],
      [arch, 'a thread may be cloned', { nr: clone, args: [CLONE_THREAD_FLAGS] }, SECCOMP_RET.ALLOW],
      [arch, 'a child process may be cloned', { nr: clone, args: [17 /* SIGCHLD */] }, SECCOMP_RET.ALLOW],
      [arch, 'clone into a new user namespace is refused', { nr: clone, args: [0x10000000 | 17] }, EPERM],
      [arch, 'clone into a new network namespace is refused', { nr: clone, args: [0x40000000 | 17] }, EPERM],
      [arch, 'clone3 answers ENOSYS so libc falls back to clone', { nr: clone3 }, ENOSYS],
      [arch, 'another architecture is killed', { nr: 0, arch: 0x40000003 /* i386 */ }, SECCOMP_RET.KILL_PROCESS],
    );
    for (const name of DENIED_SYSCALLS) {
      const nr = t.denied[name];
      if (nr !== undefined) cases.push([arch, `${name} is refused`, { nr }, EPERM]);
    }
  }
  const x86Allowed: Array<[string, number]> = [['read', 0], ['write', 1], ['mmap', 9], ['openat', 257], ['execve', 59], ['futex', 202], ['landlock_restrict_self', 446]];
  for (const [name, nr] of x86Allowed) cases.push(['x86_64', `${name} is allowed`, { nr }, SECCOMP_RET.ALLOW]);
  cases.push(['x86_64', 'an x32 syscall is killed', { nr: 0x40000000 | 41, args: [AF.UNIX] }, SECCOMP_RET.KILL_PROCESS]);
  cases.push(['aarch64', 'read (63) is allowed', { nr: 63 }, SECCOMP_RET.ALLOW]);

  it.each(cases)('%s: %s', (arch, _what, call, verdict) => {
    const program = seccompFilterProgram(arch);
    expect(runFilter(program, { arch: call.arch ?? SYSCALL_TABLES[arch].audit, nr: call.nr, args: call.args })).toBe(verdict);
  });

  it('checks only namespace flags on clone', () => {
    expect(CLONE_NAMESPACE_FLAGS & CLONE_THREAD_FLAGS).toBe(0);
  });

  it('serializes as struct sock_filter (8 bytes each, little endian)', () => {
    const program = seccompFilterProgram('x86_64');
    const bytes = compileSeccompFilter('x86_64');
    expect(bytes.length).toBe(program.length * 8);
    expect(bytes.readUInt16LE(0)).toBe(BPF.LD_W_ABS);
    expect(bytes.readUInt32LE(4)).toBe(4);
    expect(bytes.readUInt32LE(12)).toBe(SYSCALL_TABLES.x86_64.audit);
  });

  it('maps Node architectures', () => {
    expect(seccompArchFor('x64')).toBe('x86_64');
    expect(seccompArchFor('arm64')).toBe('aarch64');
    expect(seccompArchFor('ia32')).toBeUndefined();
  });
});

describe('the syscall tables', () => {
  // The kernel headers that come with gcc (linux-libc-dev) are the reference.
  const headers: Array<[SeccompArch, string]> = [
    ['x86_64', '/usr/include/x86_64-linux-gnu/asm/unistd_64.h'],
    ['aarch64', '/usr/include/asm-generic/unistd.h'],
  ];
  it.each(headers)('%s matches %s', (arch, header) => {
    expect(existsSync(header)).toBe(true);
    const text = readFileSync(header, 'utf8');
    const defined = new Map<string, number>();
    for (const match of text.matchAll(/^#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$/gm)) defined.set(match[1]!, Number(match[2]));
    const table = SYSCALL_TABLES[arch];
    const numbers: Record<string, number | undefined> = { ...table.denied, ...table.inspected };
    for (const [name, number] of Object.entries(numbers)) {
      expect({ name, number: defined.get(name) }).toEqual({ name, number });
    }
  });
});
