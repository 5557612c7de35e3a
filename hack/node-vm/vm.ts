// Boots the lab node disk (hack/node-vm/build-image.sh) under QEMU: q35 with TCG (nested KVM hung
// in early boot on this host; SECAI_NODE_VM_ACCEL=kvm asks for KVM where it works), OVMF with
// Secure Boot (Debian's OVMF_CODE_4M.secboot.fd and a vars file the caller keeps between boots),
// swtpm as the VM's TPM 2.0 (its state in a directory the caller keeps, so the same TPM answers
// every boot), the serial console into a file, a virtio-serial port `secai.report` that the image's
// secai-lab-report writes into, a nonce in fw_cfg (opt/secai/nonce) for the quote. The VM's only
// network device, if any, is a tap inside a network namespace the caller created. QEMU and swtpm get
// SIGKILL if this process dies (setpriv --pdeathsig), and are killed on every return path.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, copyFileSync, existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runChecked, runCommand } from '../../agents/src/exec.js';

export const OVMF_DIR = '/usr/share/OVMF';
export const OVMF_CODE = join(OVMF_DIR, 'OVMF_CODE_4M.secboot.fd');
/** Microsoft's KEK and db enrolled, Secure Boot on. */
export const OVMF_VARS_SECURE_BOOT = join(OVMF_DIR, 'OVMF_VARS_4M.ms.fd');
/** No keys enrolled: Secure Boot off. */
export const OVMF_VARS_PLAIN = join(OVMF_DIR, 'OVMF_VARS_4M.fd');

/** Each command the VM needs, with the Debian package that has it (hack/apt-packages.txt). */
const PREREQUISITES: [string, string][] = [
  ['qemu-system-x86_64', 'qemu-system-x86'],
  ['swtpm', 'swtpm'],
  ['swtpm_setup', 'swtpm-tools'],
  ['mmdebstrap', 'mmdebstrap'],
  ['mkfs.vfat', 'dosfstools'],
  ['mcopy', 'mtools'],
  ['sfdisk', 'fdisk'],
  ['mkfs.ext4', 'e2fsprogs'],
  ['setpriv', 'util-linux'],
];

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      accessSync(join(dir, command), fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** What is missing to build and boot the VM, each with the package that provides it. */
export function missingPrerequisites(): string[] {
  const missing = PREREQUISITES.filter(([command]) => !onPath(command)).map(([command, pkg]) => `${command} (Debian package ${pkg})`);
  for (const file of [OVMF_CODE, OVMF_VARS_SECURE_BOOT, OVMF_VARS_PLAIN]) if (!existsSync(file)) missing.push(`${file} (Debian package ovmf)`);
  if (process.getuid?.() !== 0) missing.push('root (the image build keeps root-owned files; the lab link needs a network namespace)');
  return missing;
}

/** TCG unless KVM is asked for and usable: nested KVM on the lab host hung before the kernel. */
export function chooseAccelerator(): 'tcg' | 'kvm' {
  if (process.env.SECAI_NODE_VM_ACCEL !== 'kvm') return 'tcg';
  try {
    accessSync('/dev/kvm', fsConstants.R_OK | fsConstants.W_OK);
    return 'kvm';
  } catch {
    throw new Error('SECAI_NODE_VM_ACCEL=kvm, but /dev/kvm is not usable');
  }
}

export const BUILD_SCRIPT = join(import.meta.dirname, 'build-image.sh');

/** Builds the disk, or finds it in the cache; returns its path and what the build printed. */
export async function buildNodeDisk(timeoutMs: number): Promise<{ disk: string; log: string }> {
  const result = await runCommand(BUILD_SCRIPT, [], { timeoutMs });
  if (result.code !== 0) throw new Error(`build-image.sh ${result.timedOut ? 'timed out' : `exited ${result.code}`}: ${result.stderr.slice(-3000)}`);
  return { disk: result.stdout.trim(), log: result.stderr.trim() };
}

/** A TPM for the VM, manufactured once per state directory (EK persisted, SHA-256 bank). */
export async function manufactureTpm(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await runChecked(runCommand, 'swtpm_setup', ['--tpm2', '--tpmstate', stateDir, '--createek', '--pcr-banks', 'sha256', '--not-overwrite'], { timeoutMs: 60_000 });
}

export interface BootOptions {
  /** The VM's disk (written by the boot: a copy of the built disk). */
  disk: string;
  /** The OVMF vars file of this VM (written by the firmware). */
  vars: string;
  tpmStateDir: string;
  /** Where this boot's serial console, report and logs go. */
  runDir: string;
  nonce: Buffer;
  /** How the report unit locks the vault: the agent's own code, or secai-vault-lock (default). */
  lock?: 'agent' | 'script';
  /** The lab link: a tap device that already exists in this network namespace. */
  link?: { netns: string; tap: string; mac?: string };
  timeoutMs: number;
  memoryMiB?: number;
}

export interface BootResult {
  report: Map<string, string>;
  serial: string;
  /** From QEMU's start to its exit (the image powers off after its report). */
  wallMs: number;
  /** From QEMU's start to the first report line. */
  reportMs?: number;
  accelerator: string;
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function kill(child: ChildProcess | undefined): Promise<void> {
  if (!child || !alive(child)) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The report's KEY=value lines between its BEGIN and END markers; throws when it is incomplete. */
export function parseReport(text: string): Map<string, string> {
  const lines = text.split('\n');
  const begin = lines.lastIndexOf('BEGIN secai-lab-report');
  const end = lines.lastIndexOf('END secai-lab-report');
  if (begin < 0 || end < begin) throw new Error(`the VM's report is incomplete (${text.length} bytes; BEGIN at ${begin}, END at ${end})`);
  const report = new Map<string, string>();
  for (const line of lines.slice(begin + 1, end)) {
    const eq = line.indexOf('=');
    if (eq > 0) report.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return report;
}

/** One boot, until the VM powers itself off (or the timeout, which kills it and throws). */
export async function bootNodeVm(options: BootOptions): Promise<BootResult> {
  await mkdir(options.runDir, { recursive: true });
  const accelerator = chooseAccelerator();
  const ctrl = join(options.runDir, 'swtpm.ctrl');
  const serialPath = join(options.runDir, 'serial.log');
  const reportPath = join(options.runDir, 'report.txt');
  let swtpm: ChildProcess | undefined;
  let qemu: ChildProcess | undefined;
  const killAll = () => {
    for (const child of [qemu, swtpm]) if (child && alive(child)) child.kill('SIGKILL');
  };
  process.once('exit', killAll);
  try {
    // --terminate: swtpm ends when QEMU closes the control channel.
    swtpm = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'swtpm', 'socket', '--tpm2', '--tpmstate', `dir=${options.tpmStateDir}`,
      '--ctrl', `type=unixio,path=${ctrl}`, '--terminate', '--log', `file=${join(options.runDir, 'swtpm.log')},level=2`], { stdio: 'ignore' });
    for (let i = 0; !existsSync(ctrl); i++) {
      if (!alive(swtpm) || i > 200) throw new Error(`swtpm did not start: ${readFileSync(join(options.runDir, 'swtpm.log'), 'utf8').slice(-500)}`);
      await sleep(50);
    }
    const net = options.link
      ? ['-netdev', `tap,id=lab,ifname=${options.link.tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=lab${options.link.mac ? `,mac=${options.link.mac}` : ''}`]
      : [];
    const qemuArgs = [
      '-machine', `q35,smm=on,accel=${accelerator}`, '-cpu', 'max', '-smp', '1', '-m', String(options.memoryMiB ?? 1024),
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-global', 'driver=cfi.pflash01,property=secure,value=on',
      '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
      '-drive', `if=pflash,format=raw,unit=1,file=${options.vars}`,
      '-drive', `if=virtio,format=raw,file=${options.disk}`,
      '-chardev', `socket,id=chrtpm,path=${ctrl}`, '-tpmdev', 'emulator,id=tpm0,chardev=chrtpm', '-device', 'tpm-tis,tpmdev=tpm0',
      '-serial', `file:${serialPath}`,
      '-device', 'virtio-serial-pci', '-chardev', `file,id=report,path=${reportPath}`, '-device', 'virtserialport,chardev=report,name=secai.report',
      '-fw_cfg', `name=opt/secai/nonce,string=${options.nonce.toString('hex')}`,
      '-fw_cfg', `name=opt/secai/lock,string=${options.lock ?? 'script'}`,
      // No network device unless the caller's namespace has the lab link.
      '-nic', 'none', ...net,
    ];
    const argv = options.link ? ['ip', 'netns', 'exec', options.link.netns, 'qemu-system-x86_64', ...qemuArgs] : ['qemu-system-x86_64', ...qemuArgs];
    const started = Date.now();
    let stderr = '';
    qemu = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
    qemu.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    let reportMs: number | undefined;
    const exited = new Promise<void>((resolve) => qemu!.once('exit', () => resolve()));
    const deadline = started + options.timeoutMs;
    while (alive(qemu) && Date.now() < deadline) {
      if (reportMs === undefined && existsSync(reportPath) && readFileSync(reportPath, 'utf8').includes('BEGIN secai-lab-report')) reportMs = Date.now() - started;
      await Promise.race([exited, sleep(250)]);
    }
    const wallMs = Date.now() - started;
    const serial = existsSync(serialPath) ? readFileSync(serialPath, 'utf8') : '';
    if (alive(qemu)) {
      await kill(qemu);
      throw new Error(`the VM did not power off within ${options.timeoutMs} ms; serial console tail:\n${serial.slice(-3000)}`);
    }
    if (qemu.exitCode !== 0) throw new Error(`qemu exited ${qemu.exitCode ?? qemu.signalCode}: ${stderr}\nserial console tail:\n${serial.slice(-3000)}`);
    const text = existsSync(reportPath) ? readFileSync(reportPath, 'utf8') : '';
    let report: Map<string, string>;
    try {
      report = parseReport(text);
    } catch (err) {
      throw new Error(`${(err as Error).message}; serial console tail:\n${serial.slice(-3000)}`);
    }
    return { report, serial, wallMs, ...(reportMs !== undefined ? { reportMs } : {}), accelerator };
  } finally {
    await kill(qemu);
    await kill(swtpm);
    process.removeListener('exit', killAll);
  }
}

/** A writable copy of a built disk (sparse) or of an OVMF vars template. */
export async function copyForBoot(source: string, target: string): Promise<void> {
  if (source.endsWith('.raw')) await runChecked(runCommand, 'cp', ['--sparse=always', source, target], { timeoutMs: 120_000 });
  else copyFileSync(source, target);
}
