// Real LUKS headers for tests and the lab, made by cryptsetup on small sparse files. The PBKDF cost is
// forced (no benchmark) so a header takes a fraction of a second; the passphrase is a fixed test value.
import { rm, truncate, writeFile } from 'node:fs/promises';
import { runChecked, runCommand } from '../../agents/src/exec.js';

export const TEST_PASSPHRASE = 'secai-test-passphrase';

export interface LuksHeaderSpec {
  type?: 'luks1' | 'luks2';
  cipher?: string;
  keySizeBits?: number;
  pbkdf?: 'argon2id' | 'argon2i' | 'pbkdf2';
  /** Argon2 memory cost of the passphrase keyslot, KiB. */
  pbkdfMemoryKib?: number;
}

const TIMEOUT_MS = 60_000;

/** Formats `path` (a 20 MiB sparse file, enough for the 16 MiB LUKS2 header area) as a LUKS vault. */
export async function formatLuksHeader(path: string, spec: LuksHeaderSpec = {}): Promise<void> {
  await writeFile(path, '');
  await truncate(path, 20 * 1024 * 1024);
  const type = spec.type ?? 'luks2';
  const pbkdf = spec.pbkdf ?? (type === 'luks1' ? 'pbkdf2' : 'argon2id');
  const args = ['luksFormat', '--batch-mode', '--type', type, '--cipher', spec.cipher ?? 'aes-xts-plain64', '--key-size', String(spec.keySizeBits ?? 512)];
  if (pbkdf === 'pbkdf2') args.push('--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000');
  else args.push('--pbkdf', pbkdf, '--pbkdf-memory', String(spec.pbkdfMemoryKib ?? 65536), '--pbkdf-force-iterations', '4', '--pbkdf-parallel', '1');
  if (type === 'luks1') args.splice(args.indexOf('--pbkdf'), 2);
  args.push('--key-file', '-', path);
  await runChecked(runCommand, 'cryptsetup', args, { input: TEST_PASSPHRASE, timeoutMs: TIMEOUT_MS });
}

/**
 * Adds a keyslot the way systemd-cryptenroll enrols a TPM2 key (a random secret under a cheap PBKDF2)
 * and returns its number.
 */
export async function addTpm2Keyslot(path: string, secret: Buffer, keyslot = 1): Promise<number> {
  const passphraseFile = `${path}.passphrase`;
  const secretFile = `${path}.tpm2-secret`;
  await writeFile(passphraseFile, TEST_PASSPHRASE, { mode: 0o600 });
  await writeFile(secretFile, secret, { mode: 0o600 });
  try {
    await runChecked(
      runCommand,
      'cryptsetup',
      ['luksAddKey', '--batch-mode', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--key-slot', String(keyslot),
        '--key-file', passphraseFile, path, secretFile],
      { timeoutMs: TIMEOUT_MS },
    );
  } finally {
    await rm(passphraseFile, { force: true });
    await rm(secretFile, { force: true });
  }
  return keyslot;
}

export interface Tpm2TokenSpec {
  keyslots: number[];
  pcrBank?: string;
  pcrs?: number[];
  policyHash?: string;
  /** Base64 of TPM2B_PRIVATE || TPM2B_PUBLIC. */
  blob?: string;
}

/** Imports a systemd-tpm2 token (the JSON systemd-cryptenroll writes) into the header. */
export async function importTpm2Token(path: string, spec: Tpm2TokenSpec): Promise<void> {
  const token = {
    type: 'systemd-tpm2',
    keyslots: spec.keyslots.map(String),
    'tpm2-blob': spec.blob ?? Buffer.from('not a real blob').toString('base64'),
    'tpm2-pcrs': spec.pcrs ?? [0, 2, 4, 7],
    'tpm2-pcr-bank': spec.pcrBank ?? 'sha256',
    'tpm2-primary-alg': 'ecc',
    'tpm2-policy-hash': spec.policyHash ?? '00'.repeat(32),
    'tpm2-pin': false,
  };
  await runChecked(runCommand, 'cryptsetup', ['token', 'import', '--json-file', '-', path], { input: JSON.stringify(token), timeoutMs: TIMEOUT_MS });
}
