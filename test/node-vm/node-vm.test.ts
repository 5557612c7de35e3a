// The lab node disk (hack/node-vm/build-image.sh: Debian 12, Debian's signed shim, GRUB and kernel,
// node-image's units, base ruleset, hardening and kernel arguments) booted for real under QEMU
// (TCG) with OVMF and swtpm, three times on one disk and one TPM:
//   1. Secure Boot on (Microsoft keys enrolled), first boot: the vault is created and sealed to the
//      TPM, then opened by crypttab's tpm2-device=auto;
//   2. Secure Boot on again: the vault opens unattended on a later boot, with the first boot's file;
//   3. Secure Boot off (OVMF vars without keys): PCR 7 differs, the vault stays closed.
// Each boot, the image's secai-lab-report writes what the booted node shows to a virtio-serial
// port; the quote it takes over this test's nonce (fw_cfg) is verified here by the operator's own
// code (operator/src/attestation: signature, nonce, PCR digest, event-log replay). The VM's only
// network device is a tap in a network namespace this test creates (no route anywhere else).
//
// Nothing is skipped: without QEMU, OVMF, swtpm, mtools, dosfstools, fdisk or mmdebstrap the suite
// fails and says which Debian package is missing (hack/apt-packages.txt installs them).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChecked, runCommand } from '../../agents/src/exec.js';
import { checkAttestationKey } from '../../operator/src/attestation/enrolment.js';
import { verifyQuote, type QuoteEvidence } from '../../operator/src/attestation/quote-verification.js';
import type { TpmPublic } from '../../operator/src/attestation/tpm-structures.js';
import {
  bootNodeVm, buildNodeDisk, copyForBoot, manufactureTpm, missingPrerequisites, OVMF_VARS_PLAIN, OVMF_VARS_SECURE_BOOT, type BootResult,
} from '../../hack/node-vm/vm.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { startSwtpm } from '../vault/swtpm.js';

// A cold build downloads ~250 MB of Debian packages and installs them on two shared cores.
const BUILD_TIMEOUT_MS = 20 * 60_000;
// One boot under TCG, first boot included (LUKS format and TPM enrolment): measured 160 to 250 s
// on two shared cores under load.
const BOOT_TIMEOUT_MS = 7 * 60_000;
const PCRS = [0, 2, 4, 7];
const NETNS = `secai-nodevm-${process.pid}`;
const TAP = 'secai-vm0';

let dir: string;
let disk: string;
type BootName = 'sbOn1' | 'sbOn2' | 'sbOff';
const booted: Partial<Record<BootName, Boot>> = {};
const bootErrors: Partial<Record<BootName, Error>> = {};
/** A boot's result; a boot that failed fails every test that reads it, with its own error. */
const boots = new Proxy(booted, {
  get(target, name: BootName) {
    const b = target[name];
    if (b) return b;
    throw bootErrors[name] ?? new Error(`boot ${String(name)} did not run`);
  },
}) as Record<BootName, Boot>;
interface Boot extends BootResult {
  nonce: Buffer;
}

function cleanUp(): void {
  try {
    execFileSync('ip', ['netns', 'del', NETNS], { stdio: 'ignore' });
  } catch {
    // not there
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
}

const field = (boot: Boot, key: string): string => {
  const value = boot.report.get(key);
  if (value === undefined) throw new Error(`the VM's report has no ${key}`);
  return value;
};
const file = (boot: Boot, key: string): Buffer => Buffer.from(field(boot, key), 'base64');
const text = (boot: Boot, key: string): string => file(boot, key).toString('utf8');

function evidence(boot: Boot): QuoteEvidence {
  const values = file(boot, 'quote_pcrs');
  return {
    attest: file(boot, 'quote_msg'),
    signature: file(boot, 'quote_sig'),
    pcrValues: PCRS.map((index, i) => ({ index, value: values.subarray(i * 32, (i + 1) * 32) })),
    eventLog: file(boot, 'eventlog'),
  };
}

function akOf(boot: Boot): TpmPublic {
  const checked = checkAttestationKey(file(boot, 'ak_pub'));
  if (!checked.ok) throw new Error(`the VM's AK: ${checked.reason}: ${checked.message}`);
  return checked.value.ak;
}

/** Microseconds since boot from a `journalctl -o short-monotonic` line: "[   12.345678] ...". */
function monotonicUs(line: string): number {
  const match = /^\[\s*(\d+)\.(\d{6})\]/.exec(line);
  if (!match) throw new Error(`not a short-monotonic journal line: ${JSON.stringify(line)}`);
  return Number(match[1]) * 1_000_000 + Number(match[2]);
}

async function boot(name: string, vars: string, lock: 'agent' | 'script'): Promise<Boot> {
  const nonce = randomBytes(32);
  const result = await bootNodeVm({
    disk, vars, tpmStateDir: join(dir, 'tpm'), runDir: join(dir, name), nonce, lock,
    link: { netns: NETNS, tap: TAP }, timeoutMs: BOOT_TIMEOUT_MS,
  });
  console.log(`${name}: ${result.accelerator}, report after ${result.reportMs} ms (the kernel up ${result.report.get('uptime_s')} s), powered off after ${result.wallMs} ms`);
  return { ...result, nonce };
}

const kargs = (): string[] => {
  const toml = readFileSync(join(REPO_ROOT, 'node-image/rootfs/usr/lib/bootc/kargs.d/10-secai.toml'), 'utf8');
  return [...toml.matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
};

beforeAll(async () => {
  process.once('exit', cleanUp);
  const missing = missingPrerequisites();
  if (missing.length > 0) throw new Error(`the node VM test needs: ${missing.join('; ')} (make deps installs hack/apt-packages.txt)`);
  // A namespace left by a run that was killed (its pid is gone).
  for (const line of execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n')) {
    const stale = /^secai-nodevm-(\d+)\b/.exec(line);
    if (stale && !existsSync(`/proc/${stale[1]}`)) execFileSync('ip', ['netns', 'del', `secai-nodevm-${stale[1]}`]);
  }
  dir = mkdtempSync(join(tmpdir(), 'secai-node-vm-'));
  const built = await buildNodeDisk(BUILD_TIMEOUT_MS);
  console.log(built.log);
  disk = join(dir, 'disk.raw');
  await copyForBoot(built.disk, disk);
  await copyForBoot(OVMF_VARS_SECURE_BOOT, join(dir, 'vars-secure-boot.fd'));
  await copyForBoot(OVMF_VARS_PLAIN, join(dir, 'vars-plain.fd'));
  await manufactureTpm(join(dir, 'tpm'));
  // The lab link: a tap in a namespace of this test's own, with no route out of it.
  await runChecked(runCommand, 'ip', ['netns', 'add', NETNS]);
  await runChecked(runCommand, 'ip', ['-n', NETNS, 'tuntap', 'add', 'dev', TAP, 'mode', 'tap']);
  await runChecked(runCommand, 'ip', ['-n', NETNS, 'addr', 'add', '10.213.0.1/30', 'dev', TAP]);
  await runChecked(runCommand, 'ip', ['-n', NETNS, 'link', 'set', TAP, 'up']);

  // The first boot locks with secai-vault-lock, the second with the agent's own lock code.
  const plan: [BootName, string, string, 'agent' | 'script'][] = [
    ['sbOn1', 'secure-boot-1', 'vars-secure-boot.fd', 'script'],
    ['sbOn2', 'secure-boot-2', 'vars-secure-boot.fd', 'agent'],
    ['sbOff', 'secure-boot-off', 'vars-plain.fd', 'script'],
  ];
  // Each boot runs even when an earlier one failed; the tests that need a failed boot fail with its error.
  for (const [key, name, vars, lock] of plan) {
    try {
      booted[key] = await boot(name, join(dir, vars), lock);
    } catch (err) {
      bootErrors[key] = err as Error;
      console.log(`${name} failed: ${(err as Error).message}`);
    }
  }
}, BUILD_TIMEOUT_MS + 3 * BOOT_TIMEOUT_MS + 120_000);

afterAll(cleanUp);

describe('the node disk boots with Secure Boot on', () => {
  it('runs Debian\'s signed shim, GRUB and kernel with Secure Boot enforced, lockdown and the kargs.d arguments', () => {
    for (const b of [boots.sbOn1, boots.sbOn2]) {
      // The SecureBoot variable: 4 attribute bytes, then 1.
      expect(field(b, 'secureboot_efivar').trim().split(' ').at(-1)).toBe('01');
      expect(field(b, 'mokutil_sb_state')).toContain('SecureBoot enabled');
      expect(field(b, 'lockdown')).toContain('[confidentiality]');
      const cmdline = field(b, 'cmdline').split(' ');
      for (const arg of kargs()) expect(cmdline).toContain(arg);
    }
  });

  it('loaded the inet secai table before the network: the firewall was active before networkd started and before any link came up', () => {
    for (const b of [boots.sbOn1, boots.sbOn2, boots.sbOff]) {
      expect(field(b, 'firewall_state')).toBe('active');
      const firewall = Number(field(b, 'firewall_active_us'));
      const networkd = Number(field(b, 'networkd_start_us'));
      const linkUp = monotonicUs(field(b, 'first_link_up'));
      expect(firewall).toBeGreaterThan(0);
      expect(firewall).toBeLessThan(networkd);
      expect(firewall).toBeLessThan(linkUp);
      // The lab link is the only interface up besides loopback.
      const up = field(b, 'links_up').split(' ').filter(Boolean);
      expect(up).toContain('lo');
      expect(up.filter((link) => link !== 'lo')).toEqual([expect.stringMatching(/^enp\d+s\d+$/)]);
      expect(field(b, 'first_link_up')).toContain(`${up.find((link) => link !== 'lo')}: Link UP`);
      expect(field(b, 'nft_secai.rc')).toBe('0');
      expect(text(b, 'nft_secai')).toMatch(/chain input \{[^}]*policy drop;/);
    }
  });
});

describe('the agent\'s unit', () => {
  it('is installed and enabled, and skipped by its condition because the lab image carries no agent payload', () => {
    // Not a running agent: Node 24 and the repository are not in the lab image (node-image/lab-vm/README.md).
    for (const b of [boots.sbOn1, boots.sbOn2, boots.sbOff]) expect(field(b, 'agent_unit')).toBe('enabled no');
  });
});

describe('the vault', () => {
  it('was created on first boot as LUKS2 sealed to the TPM (PCRs 0+2+4+7) with no other key slot', () => {
    const b = boots.sbOn1;
    expect(text(b, 'vault_journal')).toContain('sealed to TPM2 PCRs 0+2+4+7');
    const dump = text(b, 'vault_luks_dump');
    expect(dump).toMatch(/^Version:\s+2$/m);
    expect(dump).toMatch(/systemd-tpm2/);
    expect(dump).toMatch(/tpm2-hash-pcrs:\s+0\+2\+4\+7/);
    expect(dump).toMatch(/systemd-tpm2[\s\S]*Keyslot:\s+1\n/);
    // One key slot only: the TPM's (the one-time key's slot 0 was killed).
    expect([...dump.matchAll(/^\s+(\d+): luks2$/gm)].map((m) => m[1])).toEqual(['1']);
  });

  it('opened unattended from the TPM as a real dm-crypt volume, on the first boot and on a later one', () => {
    for (const b of [boots.sbOn1, boots.sbOn2]) {
      expect(field(b, 'vault_unit_state')).toBe('active');
      expect(text(b, 'vault_status')).toMatch(/is active and is in use|is active/);
      expect(text(b, 'vault_status')).toMatch(/type:\s+LUKS2/);
      expect(text(b, 'vault_status')).toMatch(/cipher:\s+aes-xts-plain64/);
      expect(text(b, 'vault_dm_table')).toMatch(/^0 \d+ crypt aes-xts-plain64 /);
      expect(field(b, 'vault_mount')).toBe('/dev/mapper/secai-vault ext4');
      // Unattended: crypttab says headless (no prompt), and the only key slot is the TPM token's.
      expect([...text(b, 'vault_luks_dump').matchAll(/^\s+(\d+): luks2$/gm)].map((m) => m[1])).toEqual(['1']);
    }
    // The same encrypted filesystem: the second boot finds the first boot's file.
    const first = field(boots.sbOn1, 'boot_id');
    const second = field(boots.sbOn2, 'boot_id');
    expect(field(boots.sbOn2, 'vault_files').split(' ')).toEqual(expect.arrayContaining([`boot-${first}`, `boot-${second}`]));
  });

  it('closes for real: secai-vault-lock on the first boot, the agent\'s own cryptsetupLockExecutor (umount, cryptsetup close) on the second', () => {
    expect(field(boots.sbOn1, 'vault_lock_path')).toBe('script');
    expect(text(boots.sbOn1, 'vault_lock')).toContain('vault locked');
    expect(field(boots.sbOn2, 'vault_lock_path')).toBe('agent');
    expect(JSON.parse(text(boots.sbOn2, 'vault_lock'))).toEqual({ mapperName: 'secai-vault', mountPoint: '/var/lib/secai/vault', openBefore: true, openAfter: false });
    for (const b of [boots.sbOn1, boots.sbOn2]) {
      expect(field(b, 'vault_lock.rc')).toBe('0');
      expect(field(b, 'vault_mapper_after_lock').split(' ')).not.toContain('secai-vault');
      expect(field(b, 'vault_dm_crypt_after_lock')).toMatch(/No devices found/);
    }
  });

  it('does not open unattended with Secure Boot off: the TPM refuses the seal', () => {
    const b = boots.sbOff;
    console.log(`Secure Boot off, the vault's journal:\n${text(b, 'vault_journal')}`);
    expect(field(b, 'vault_unit_state')).toBe('failed');
    expect(field(b, 'vault_mount')).toBe('');
    expect(text(b, 'vault_status')).toMatch(/inactive/);
    expect(text(b, 'vault_dm_table')).not.toMatch(/crypt/);
  });
});

describe('the quote the VM\'s TPM signs, verified by the operator\'s code', () => {
  it('verifies the Secure Boot boots\' quotes: the AK\'s signature, this test\'s nonce, the PCR digest, the event log replayed to PCRs 0, 2, 4 and 7', () => {
    const ak = akOf(boots.sbOn1);
    for (const b of [boots.sbOn1, boots.sbOn2]) {
      expect(field(b, 'quote_rc')).toBe('0');
      expect(field(b, 'nonce')).toBe(b.nonce.toString('hex'));
      const verdict = verifyQuote({
        ak, request: { nonce: b.nonce, issuedAt: 0, bank: 'sha256', pcrs: PCRS }, usedNonces: [], evidence: evidence(b),
        expected: { expectedPcrs: [] }, now: 0, nonceMaxAgeMs: 60_000,
      });
      if (!verdict.ok) throw new Error(`${verdict.reason}: ${verdict.message}`);
      expect(verdict.quote.eventLog).toMatchObject({ replayedPcrs: PCRS, secureBoot: 'Enabled' });
      expect(verdict.quote.eventLog!.events).toBeGreaterThan(20);
    }
    // The same TPM and AK both boots, and the same PCRs: the boot chain measures the same.
    expect(file(boots.sbOn2, 'ak_pub')).toEqual(file(boots.sbOn1, 'ak_pub'));
    expect(file(boots.sbOn2, 'quote_pcrs')).toEqual(file(boots.sbOn1, 'quote_pcrs'));
  });

  it('the AK is the one at the agent\'s handle in this VM\'s swtpm (read on the host after the boots)', async () => {
    const tpm = await startSwtpm(join(dir, 'tpm'));
    try {
      const out = join(dir, 'host-ak.pub');
      await runChecked(runCommand, 'tpm2_readpublic', ['-c', '0x81010002', '-o', out], { env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti }, timeoutMs: 10_000 });
      expect(readFileSync(out)).toEqual(file(boots.sbOn1, 'ak_pub'));
    } finally {
      await tpm.stop();
    }
  });

  it('with Secure Boot off, the quote verifies but PCR 7 differs from the Secure Boot state', () => {
    const b = boots.sbOff;
    const on = evidence(boots.sbOn1).pcrValues;
    const verdict = verifyQuote({
      ak: akOf(boots.sbOn1), request: { nonce: b.nonce, issuedAt: 0, bank: 'sha256', pcrs: PCRS }, usedNonces: [boots.sbOn1.nonce, boots.sbOn2.nonce],
      evidence: evidence(b), expected: { expectedPcrs: on.map(({ index, value }) => ({ index, value: value.toString('hex') })) }, now: 0, nonceMaxAgeMs: 60_000,
    });
    if (!verdict.ok) throw new Error(`${verdict.reason}: ${verdict.message}`);
    expect(verdict.quote.mismatchedPcrs).toContain(7);
    // Measured: with Secure Boot off the VM sent an empty event log (so nothing was replayed); not
    // investigated yet. The log, if any, must never read Secure Boot as on.
    console.log(`Secure Boot off: event log of ${file(b, 'eventlog').length} bytes (${field(b, 'eventlog_error') || 'no read error'}), replayed: ${JSON.stringify(verdict.quote.eventLog)}`);
    expect(verdict.quote.eventLog?.secureBoot).not.toBe('Enabled');
    expect(field(b, 'secureboot_efivar').trim().split(' ').at(-1)).toBe('00');
    expect(field(b, 'mokutil_sb_state')).toContain('SecureBoot disabled');
  });

  it('refuses an earlier boot\'s quote offered for a later nonce (replay)', () => {
    const verdict = verifyQuote({
      ak: akOf(boots.sbOn1), request: { nonce: boots.sbOff.nonce, issuedAt: 0, bank: 'sha256', pcrs: PCRS }, usedNonces: [boots.sbOn1.nonce],
      evidence: evidence(boots.sbOn1), expected: { expectedPcrs: [] }, now: 0, nonceMaxAgeMs: 60_000,
    });
    expect(verdict).toMatchObject({ ok: false, reason: 'NonceReplayed' });
  });
});
