// Vault compliance against real LUKS headers that cryptsetup makes in the test's own directory.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tpm2Mode, VaultPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { runChecked, runCommand } from '../exec.js';
import { addTpm2Keyslot, formatLuksHeader, importTpm2Token, type LuksHeaderSpec, type Tpm2TokenSpec } from '../../../test/vault/luks-headers.js';
import { VaultReason, checkVaultCompliance } from './vault-compliance.js';
import { cryptsetupHeaderReader } from './vault-reader.js';

const plan = VaultPlan.fromPartial({
  policy: 'fleet-vault',
  luksType: 'luks2',
  cipher: 'aes-xts-plain64',
  minKeySizeBits: 512,
  pbkdf: 'argon2id',
  minPbkdfMemoryKib: 65536,
  tpm2Mode: Tpm2Mode.TPM2_MODE_REQUIRED,
  pcrBank: 'sha256',
  pcrs: [0, 2, 4, 7],
});

let dir: string;
const headers: Record<string, string> = {};

/** A header formatted per `spec`, with a TPM2 keyslot and token unless `token` is null. */
async function make(name: string, spec: LuksHeaderSpec, token: Omit<Tpm2TokenSpec, 'keyslots'> & { keyslots?: number[] } | null = {}) {
  const path = join(dir, `${name}.img`);
  await formatLuksHeader(path, spec);
  if (token) {
    await addTpm2Keyslot(path, Buffer.alloc(32, 7));
    await importTpm2Token(path, { keyslots: [1], ...token });
  }
  headers[name] = path;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'secai-vault-'));
  await make('compliant', {});
  await make('no-token', {}, null);
  await make('low-memory', { pbkdfMemoryKib: 32768 });
  await make('pbkdf2', { pbkdf: 'pbkdf2' });
  await make('argon2i', { pbkdf: 'argon2i' });
  await make('cbc-256', { cipher: 'aes-cbc-essiv:sha256', keySizeBits: 256 });
  await make('luks1', { type: 'luks1' }, null);
  await make('sha1-bank', {}, { pcrBank: 'sha1' });
  await make('pcr-4-missing', {}, { pcrs: [0, 2, 7] });
  await make('extra-pcrs', {}, { pcrs: [0, 2, 4, 7, 11] });
  await make('unassigned-token', {}, { keyslots: [] });
  headers.plain = join(dir, 'plain.img');
  await writeFile(headers.plain, '');
  await truncate(headers.plain, 1024 * 1024);
  // LUKS2 magic and version with nothing valid behind them: cryptsetup refuses it.
  headers.garbled = join(dir, 'garbled.img');
  await writeFile(headers.garbled, Buffer.concat([Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0, 2]), Buffer.alloc(1 << 20, 0x41)]));
  headers.missing = join(dir, 'missing.img');
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const R = VaultReason;
const cases: [header: string, reasons: VaultReason[], sealed: boolean][] = [
  ['compliant', [], true],
  ['no-token', [R.Tpm2TokenMissing], false],
  ['low-memory', [R.PbkdfMemoryTooLow], true],
  ['pbkdf2', [R.PbkdfMismatch], true],
  ['argon2i', [R.PbkdfMismatch], true],
  ['cbc-256', [R.CipherMismatch, R.KeySizeTooSmall], true],
  ['luks1', [R.LuksVersionMismatch], false],
  ['sha1-bank', [R.Tpm2PcrBankMismatch], false],
  ['pcr-4-missing', [R.Tpm2PcrsMissing], false],
  ['extra-pcrs', [], true],
  // The PBKDF2 keyslot no token opens counts as a passphrase keyslot.
  ['unassigned-token', [R.PbkdfMismatch, R.Tpm2KeyslotMissing], false],
  ['plain', [R.NotLuks], false],
  ['garbled', [R.HeaderUnreadable], false],
  ['missing', [R.VaultMissing], false],
];

it.each(cases)('the %s header gives reasons %j', async (name, reasons, sealed) => {
  const observed = await cryptsetupHeaderReader(headers[name]!).read();
  const verdict = checkVaultCompliance(plan, observed);
  expect(verdict.findings.map((f) => f.reason)).toEqual(reasons);
  expect(verdict.compliant).toBe(reasons.length === 0);
  expect(verdict.sealed).toBe(sealed);
  for (const finding of verdict.findings) expect(finding.message.length).toBeGreaterThan(5);
});

it('reads the header facts cryptsetup reports, including the TPM2 token binding', async () => {
  const observed = await cryptsetupHeaderReader(headers.compliant!).read();
  expect(observed).toMatchObject({
    kind: 'luks',
    version: 2,
    header: {
      keyslots: [
        { id: '0', keySizeBits: 512, pbkdf: 'argon2id', pbkdfMemoryKib: 65536 },
        { id: '1', keySizeBits: 512, pbkdf: 'pbkdf2' },
      ],
      segments: [{ id: '0', type: 'crypt', cipher: 'aes-xts-plain64' }],
      tpm2Tokens: [{ id: '0', keyslots: ['1'], pcrBank: 'sha256', pcrs: [0, 2, 4, 7], pin: false, policyHash: '00'.repeat(32) }],
    },
  });
  const dump = await runChecked(runCommand, 'cryptsetup', ['luksDump', headers.compliant!]);
  expect(dump).toContain('systemd-tpm2');
});

it('names the failing keyslot and the required value in each message', async () => {
  const verdict = checkVaultCompliance(plan, await cryptsetupHeaderReader(headers['low-memory']!).read());
  expect(verdict.findings[0]!.message).toBe('keyslot 0: 32768 KiB; at least 65536 KiB required');
});

it('requires a TPM2 token only in Required mode', async () => {
  const observed = await cryptsetupHeaderReader(headers['no-token']!).read();
  expect(checkVaultCompliance({ ...plan, tpm2Mode: Tpm2Mode.TPM2_MODE_OPTIONAL }, observed).compliant).toBe(true);
  expect(checkVaultCompliance({ ...plan, tpm2Mode: Tpm2Mode.TPM2_MODE_DISABLED }, observed).compliant).toBe(true);
  const wrongBank = await cryptsetupHeaderReader(headers['sha1-bank']!).read();
  expect(checkVaultCompliance({ ...plan, tpm2Mode: Tpm2Mode.TPM2_MODE_OPTIONAL }, wrongBank).findings.map((f) => f.reason)).toEqual([R.Tpm2PcrBankMismatch]);
  expect(checkVaultCompliance({ ...plan, tpm2Mode: Tpm2Mode.TPM2_MODE_DISABLED }, wrongBank).compliant).toBe(true);
});

it('requires nothing when no VaultPolicy selects the node, but still reports what it found', async () => {
  const verdict = checkVaultCompliance({ ...plan, policy: '' }, await cryptsetupHeaderReader(headers.pbkdf2!).read());
  expect(verdict).toEqual({ encrypted: true, sealed: true, compliant: true, findings: [] });
});
