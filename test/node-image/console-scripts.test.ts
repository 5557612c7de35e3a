// The vault and TPM hooks of the node image: their dry-run plans carry SecAI OS's parameters, and
// without --dry-run they refuse to run anywhere but the local console (no terminal, a
// pseudo-terminal as ssh or `script` gives, or an SSH session), before touching anything.
// Acceptance on a real virtual terminal cannot be shown here: tests have no VT.
import { join } from 'node:path';
import { runCommand } from '../../agents/src/exec.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const SBIN = join(REPO_ROOT, 'node-image/rootfs/usr/sbin');
const DEVICE = '/dev/secai-test-nonexistent';

function planOf(stdout: string): string[] {
  return stdout.split('\n').filter((line) => line !== '');
}

describe('secai-vault-setup --dry-run', () => {
  let plan: string[];
  beforeAll(async () => {
    const result = await runCommand(join(SBIN, 'secai-vault-setup'), ['--device', DEVICE, '--dry-run'], { input: '' });
    expect(result.code).toBe(0);
    plan = planOf(result.stdout);
  });

  it('formats LUKS2 with aes-xts-plain64, a 512-bit key and argon2id', () => {
    expect(plan[0]).toBe(
      `run: cryptsetup luksFormat --type luks2 --cipher aes-xts-plain64 --key-size 512 --hash sha512 --pbkdf argon2id --iter-time 5000 --verify-passphrase --batch-mode ${DEVICE}`,
    );
  });

  it('registers the vault in crypttab without discard and mounts it nodev,nosuid,noexec', () => {
    expect(plan).toEqual(
      expect.arrayContaining([
        'append: /etc/crypttab (mode 0600)',
        '  | secai-vault UUID=<luksUUID of the device> none luks',
        'append: /etc/fstab (mode 0644)',
        '  | /dev/mapper/secai-vault /var/lib/secai/vault ext4 nodev,nosuid,noexec 0 2',
        'run: mount /var/lib/secai/vault',
      ]),
    );
    expect(plan.join('\n')).not.toContain('discard');
  });
});

describe('secai-tpm-enroll --dry-run', () => {
  it('seals to PCRs 0+2+4+7 by default and adds tpm2-device=auto to crypttab', async () => {
    const result = await runCommand(join(SBIN, 'secai-tpm-enroll'), ['--device', DEVICE, '--dry-run'], { input: '' });
    expect(result.code).toBe(0);
    const plan = planOf(result.stdout);
    expect(plan[0]).toBe(`run: systemd-cryptenroll ${DEVICE} --wipe-slot=tpm2 --tpm2-device=auto --tpm2-pcrs=0+2+4+7`);
    expect(plan[1]).toMatch(/^run: sed -i -E .*tpm2-device=auto.* \/etc\/crypttab$/);
  });

  it.each([['0+24'], ['7,8'], ['']])('refuses the PCR list %j', async (pcrs) => {
    const result = await runCommand(join(SBIN, 'secai-tpm-enroll'), ['--device', DEVICE, '--pcrs', pcrs, '--dry-run'], { input: '' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('--pcrs wants PCR numbers 0-23');
  });
});

describe('local console only', () => {
  const commands: [string, string[]][] = [
    ['secai-vault-setup', ['--device', DEVICE]],
    ['secai-tpm-enroll', ['--device', DEVICE]],
    ['secai-vault-unlock', []],
  ];

  it.each(commands)('%s refuses when stdin is not a terminal', async (name, args) => {
    const result = await runCommand(join(SBIN, name), args, { input: '' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('refused: this step is local-console only (stdin is not a terminal)');
  });

  it.each(commands)('%s refuses on a pseudo-terminal', async (name, args) => {
    // `script` runs the command on a fresh pseudo-terminal, as an ssh session or sudo over ssh would.
    const line = [join(SBIN, name), ...args].join(' ');
    const result = await runCommand('script', ['-qec', line, '/dev/null'], { input: '', env: { PATH: process.env.PATH } });
    expect(result.code).not.toBe(0);
    expect(result.stdout).toMatch(/refused: this step is local-console only \(\/dev\/pts\/[0-9]+ is not a local console\)/);
  });

  it.each(commands)('%s refuses in an SSH session', async (name, args) => {
    const result = await runCommand(join(SBIN, name), args, { input: '', env: { ...process.env, SSH_CONNECTION: '192.0.2.1 50000 192.0.2.2 22' } });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('SSH session detected');
  });
});
