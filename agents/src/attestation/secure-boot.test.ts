import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecureBootState } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { SECURE_BOOT_VARIABLE, readSecureBootState } from './secure-boot.js';

let efi: string;
beforeEach(async () => {
  efi = await mkdtemp(join(tmpdir(), 'secai-efi-'));
});
afterEach(async () => {
  await rm(efi, { recursive: true, force: true });
});

// efivarfs layout: 4 bytes of attributes (NV|BS|RT = 0x06 little-endian here), then the value.
const variable = (value: number[]) => Buffer.from([0x06, 0, 0, 0, ...value]);

it.each([
  ['enforcing', variable([1]), SecureBootState.SECURE_BOOT_STATE_ENABLED],
  ['off', variable([0]), SecureBootState.SECURE_BOOT_STATE_DISABLED],
  ['an unexpected value', variable([2]), SecureBootState.SECURE_BOOT_STATE_UNKNOWN],
  ['a truncated variable', Buffer.from([6, 0, 0]), SecureBootState.SECURE_BOOT_STATE_UNKNOWN],
  ['a variable with trailing bytes', variable([1, 1]), SecureBootState.SECURE_BOOT_STATE_UNKNOWN],
])('reads the SecureBoot variable when it is %s', async (_name, bytes, state) => {
  await mkdir(join(efi, 'efivars'));
  await writeFile(join(efi, 'efivars', SECURE_BOOT_VARIABLE), bytes);
  expect(await readSecureBootState(efi)).toBe(state);
});

it('is Disabled on UEFI without the variable, and Unknown without EFI at all', async () => {
  await mkdir(join(efi, 'efivars'));
  expect(await readSecureBootState(efi)).toBe(SecureBootState.SECURE_BOOT_STATE_DISABLED);
  expect(await readSecureBootState(join(efi, 'absent'))).toBe(SecureBootState.SECURE_BOOT_STATE_UNKNOWN);
});
