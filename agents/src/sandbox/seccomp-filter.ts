// The seccomp filter every sandboxed child runs under, generated as classic BPF so that bubblewrap
// can install it (`bwrap --seccomp FD`) without libseccomp. It is a deny list on top of the
// namespaces and Landlock: sockets other than AF_UNIX (no network even if a namespace leaked one),
// namespace and mount changes, tracing other processes, kernel keyrings, eBPF, module and kexec
// loading, io_uring (its operations are not seen by seccomp), and clock or host changes. A
// syscall from another architecture ABI (i386 via int 0x80, x32) kills the process, since the
// numbers below would not mean what they say there.

/** The architectures the agent runs on, named as the kernel's audit subsystem names them. */
export type SeccompArch = 'x86_64' | 'aarch64';

export type DeniedSyscall =
  | 'ptrace' | 'process_vm_readv' | 'process_vm_writev' | 'pidfd_getfd' | 'kcmp'
  | 'mount' | 'umount2' | 'pivot_root' | 'chroot' | 'open_tree' | 'move_mount' | 'fsopen' | 'fsconfig'
  | 'fsmount' | 'fspick' | 'mount_setattr' | 'open_by_handle_at' | 'name_to_handle_at'
  | 'unshare' | 'setns'
  | 'bpf' | 'perf_event_open' | 'userfaultfd' | 'io_uring_setup' | 'io_uring_enter' | 'io_uring_register'
  | 'keyctl' | 'add_key' | 'request_key'
  | 'init_module' | 'finit_module' | 'delete_module' | 'kexec_load' | 'kexec_file_load'
  | 'reboot' | 'swapon' | 'swapoff' | 'acct' | 'quotactl' | 'quotactl_fd' | 'syslog' | 'vhangup' | 'fanotify_init'
  | 'sethostname' | 'setdomainname' | 'settimeofday' | 'clock_settime' | 'clock_adjtime' | 'adjtimex'
  | 'lookup_dcookie' | 'iopl' | 'ioperm' | 'uselib';

/** Syscalls the filter inspects by argument rather than denying outright. */
export type InspectedSyscall = 'socket' | 'clone' | 'clone3';

export const DENIED_SYSCALLS: readonly DeniedSyscall[] = [
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'pidfd_getfd', 'kcmp',
  'mount', 'umount2', 'pivot_root', 'chroot', 'open_tree', 'move_mount', 'fsopen', 'fsconfig',
  'fsmount', 'fspick', 'mount_setattr', 'open_by_handle_at', 'name_to_handle_at',
  'unshare', 'setns',
  'bpf', 'perf_event_open', 'userfaultfd', 'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'keyctl', 'add_key', 'request_key',
  'init_module', 'finit_module', 'delete_module', 'kexec_load', 'kexec_file_load',
  'reboot', 'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd', 'syslog', 'vhangup', 'fanotify_init',
  'sethostname', 'setdomainname', 'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex',
  'lookup_dcookie', 'iopl', 'ioperm', 'uselib',
];

interface ArchTable {
  /** AUDIT_ARCH_* from <linux/audit.h>. */
  audit: number;
  /** Syscall numbers at or above this belong to another ABI (x32 on x86_64). */
  foreignAbiBase?: number;
  inspected: Record<InspectedSyscall, number>;
  /** undefined: the architecture has no such syscall, so there is nothing to deny. */
  denied: Record<DeniedSyscall, number | undefined>;
}

// From <asm/unistd_64.h> (x86_64) and <asm-generic/unistd.h> (aarch64); a test compares them with
// the installed kernel headers.
export const SYSCALL_TABLES: Record<SeccompArch, ArchTable> = {
  x86_64: {
    audit: 0xc000003e,
    foreignAbiBase: 0x40000000,
    inspected: { socket: 41, clone: 56, clone3: 435 },
    denied: {
      ptrace: 101, process_vm_readv: 310, process_vm_writev: 311, pidfd_getfd: 438, kcmp: 312,
      mount: 165, umount2: 166, pivot_root: 155, chroot: 161, open_tree: 428, move_mount: 429, fsopen: 430,
      fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442, open_by_handle_at: 304, name_to_handle_at: 303,
      unshare: 272, setns: 308,
      bpf: 321, perf_event_open: 298, userfaultfd: 323, io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427,
      keyctl: 250, add_key: 248, request_key: 249,
      init_module: 175, finit_module: 313, delete_module: 176, kexec_load: 246, kexec_file_load: 320,
      reboot: 169, swapon: 167, swapoff: 168, acct: 163, quotactl: 179, quotactl_fd: 443, syslog: 103, vhangup: 153,
      fanotify_init: 300,
      sethostname: 170, setdomainname: 171, settimeofday: 164, clock_settime: 227, clock_adjtime: 305, adjtimex: 159,
      lookup_dcookie: 212, iopl: 172, ioperm: 173, uselib: 134,
    },
  },
  aarch64: {
    audit: 0xc00000b7,
    inspected: { socket: 198, clone: 220, clone3: 435 },
    denied: {
      ptrace: 117, process_vm_readv: 270, process_vm_writev: 271, pidfd_getfd: 438, kcmp: 272,
      mount: 40, umount2: 39, pivot_root: 41, chroot: 51, open_tree: 428, move_mount: 429, fsopen: 430,
      fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442, open_by_handle_at: 265, name_to_handle_at: 264,
      unshare: 97, setns: 268,
      bpf: 280, perf_event_open: 241, userfaultfd: 282, io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427,
      keyctl: 219, add_key: 217, request_key: 218,
      init_module: 105, finit_module: 273, delete_module: 106, kexec_load: 104, kexec_file_load: 294,
      reboot: 142, swapon: 224, swapoff: 225, acct: 89, quotactl: 60, quotactl_fd: 443, syslog: 116, vhangup: 58,
      fanotify_init: 262,
      sethostname: 161, setdomainname: 162, settimeofday: 170, clock_settime: 112, clock_adjtime: 266, adjtimex: 171,
      lookup_dcookie: 18, iopl: undefined, ioperm: undefined, uselib: undefined,
    },
  },
};

/** The seccomp architecture for a Node `process.arch`, or undefined where the agent has no table. */
export function seccompArchFor(nodeArch: string): SeccompArch | undefined {
  if (nodeArch === 'x64') return 'x86_64';
  if (nodeArch === 'arm64') return 'aarch64';
  return undefined;
}

// Classic BPF opcodes (<linux/filter.h>) and seccomp return values (<linux/seccomp.h>).
export const BPF = {
  LD_W_ABS: 0x20,
  JMP_JEQ_K: 0x15,
  JMP_JGE_K: 0x35,
  JMP_JSET_K: 0x45,
  RET_K: 0x06,
} as const;

export const SECCOMP_RET = {
  KILL_PROCESS: 0x80000000,
  ERRNO: 0x00050000,
  ALLOW: 0x7fff0000,
} as const;

const EPERM = 1;
const ENOSYS = 38;
const AF_UNIX = 1;
// CLONE_NEWTIME | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
// CLONE_NEWPID | CLONE_NEWNET: a thread or child may be made, a namespace may not.
export const CLONE_NAMESPACE_FLAGS = 0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;

/** Offsets into struct seccomp_data. The low 32 bits of args[0] are where int arguments live (little endian). */
const DATA_NR = 0;
const DATA_ARCH = 4;
const DATA_ARG0_LOW = 16;

export interface BpfInstruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

type Target = string | 0;
type Step =
  | { label: string }
  | { code: number; k: number; jt?: Target; jf?: Target };

/** Resolves labels to the forward offsets classic BPF jumps take (0..255 instructions). */
function assemble(steps: readonly Step[]): BpfInstruction[] {
  const positions = new Map<string, number>();
  let index = 0;
  for (const step of steps) {
    if ('label' in step) positions.set(step.label, index);
    else index++;
  }
  const program: BpfInstruction[] = [];
  for (const step of steps) {
    if ('label' in step) continue;
    const here = program.length;
    const offset = (target: Target | undefined): number => {
      if (target === undefined || target === 0) return 0;
      const at = positions.get(target);
      if (at === undefined) throw new Error(`seccomp filter: unknown label ${target}`);
      const jump = at - here - 1;
      if (jump < 0 || jump > 255) throw new Error(`seccomp filter: jump to ${target} out of range (${jump})`);
      return jump;
    };
    program.push({ code: step.code, k: step.k >>> 0, jt: offset(step.jt), jf: offset(step.jf) });
  }
  return program;
}

/** The filter as instructions, for inspection and tests. */
export function seccompFilterProgram(arch: SeccompArch): BpfInstruction[] {
  const table = SYSCALL_TABLES[arch];
  const { socket, clone, clone3 } = table.inspected;
  const steps: Step[] = [
    { code: BPF.LD_W_ABS, k: DATA_ARCH },
    { code: BPF.JMP_JEQ_K, k: table.audit, jf: 'kill' },
    { code: BPF.LD_W_ABS, k: DATA_NR },
  ];
  if (table.foreignAbiBase !== undefined) steps.push({ code: BPF.JMP_JGE_K, k: table.foreignAbiBase, jt: 'kill' });
  steps.push(
    { code: BPF.JMP_JEQ_K, k: socket, jt: 'socket' },
    { code: BPF.JMP_JEQ_K, k: clone, jt: 'clone' },
    // clone3 passes its flags in memory, out of a filter's reach; ENOSYS makes glibc fall back to clone.
    { code: BPF.JMP_JEQ_K, k: clone3, jt: 'enosys' },
  );
  for (const name of DENIED_SYSCALLS) {
    const number = table.denied[name];
    if (number !== undefined) steps.push({ code: BPF.JMP_JEQ_K, k: number, jt: 'deny' });
  }
  steps.push(
    { code: BPF.RET_K, k: SECCOMP_RET.ALLOW },
    { label: 'socket' },
    { code: BPF.LD_W_ABS, k: DATA_ARG0_LOW },
    { code: BPF.JMP_JEQ_K, k: AF_UNIX, jt: 'allow', jf: 'deny' },
    { label: 'clone' },
    { code: BPF.LD_W_ABS, k: DATA_ARG0_LOW },
    { code: BPF.JMP_JSET_K, k: CLONE_NAMESPACE_FLAGS, jt: 'deny', jf: 'allow' },
    { label: 'allow' },
    { code: BPF.RET_K, k: SECCOMP_RET.ALLOW },
    { label: 'deny' },
    { code: BPF.RET_K, k: SECCOMP_RET.ERRNO | EPERM },
    { label: 'enosys' },
    { code: BPF.RET_K, k: SECCOMP_RET.ERRNO | ENOSYS },
    { label: 'kill' },
    { code: BPF.RET_K, k: SECCOMP_RET.KILL_PROCESS },
  );
  return assemble(steps);
}

/** The filter as the bytes of a struct sock_filter array, as `bwrap --seccomp` reads them. */
export function compileSeccompFilter(arch: SeccompArch): Buffer {
  const program = seccompFilterProgram(arch);
  const bytes = Buffer.alloc(program.length * 8);
  program.forEach((insn, i) => {
    bytes.writeUInt16LE(insn.code, i * 8);
    bytes.writeUInt8(insn.jt, i * 8 + 2);
    bytes.writeUInt8(insn.jf, i * 8 + 3);
    bytes.writeUInt32LE(insn.k, i * 8 + 4);
  });
  return bytes;
}
