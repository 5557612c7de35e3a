// Secure Boot state from the UEFI variable SecureBoot (EFI global variable GUID), as efivarfs shows
// it: 4 bytes of attributes, then one byte, 1 when Secure Boot is enforcing.
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SecureBootState } from '../../../api/gen/proto/secai/fleet/v1/agent.js';

export const SECURE_BOOT_VARIABLE = 'SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c';

/** The state a SecureBoot efivarfs file encodes; anything but 5 bytes ending in 0 or 1 is Unknown. */
export function parseSecureBootVariable(bytes: Uint8Array): SecureBootState {
  if (bytes.length !== 5) return SecureBootState.SECURE_BOOT_STATE_UNKNOWN;
  if (bytes[4] === 1) return SecureBootState.SECURE_BOOT_STATE_ENABLED;
  if (bytes[4] === 0) return SecureBootState.SECURE_BOOT_STATE_DISABLED;
  return SecureBootState.SECURE_BOOT_STATE_UNKNOWN;
}

const exists = (path: string) => access(path).then(() => true, () => false);

/**
 * Reads Secure Boot from `efiDir` (/sys/firmware/efi on a host). No EFI directory (BIOS boot, or
 * efivarfs not visible) is Unknown; UEFI firmware without the variable has no Secure Boot: Disabled.
 */
export async function readSecureBootState(efiDir = '/sys/firmware/efi'): Promise<SecureBootState> {
  const efivars = join(efiDir, 'efivars');
  if (!(await exists(efivars))) return SecureBootState.SECURE_BOOT_STATE_UNKNOWN;
  try {
    const handle = await readFile(join(efivars, SECURE_BOOT_VARIABLE));
    return parseSecureBootVariable(handle.subarray(0, 16));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return SecureBootState.SECURE_BOOT_STATE_DISABLED;
    return SecureBootState.SECURE_BOOT_STATE_UNKNOWN;
  }
}
