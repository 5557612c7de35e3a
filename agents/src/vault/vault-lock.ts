// The two edges of locking: a probe that tells whether the vault's dm-crypt mapping is open, and an
// executor that closes it. There is deliberately no counterpart that opens a vault: unlock is local
// console only (SecAI OS `--unlock-once` on a TTY), so no command from the fleet can reach one.
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { runChecked, runCommand, type Exec } from '../exec.js';

export interface VaultLockProbe {
  /** Whether the vault is open (unlocked). */
  isOpen(): Promise<boolean>;
}

export interface VaultLockExecutor {
  /** Closes the vault; resolves once the close command succeeded. */
  close(): Promise<void>;
}

const MAPPER_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

function checkMapperName(name: string): string {
  if (!MAPPER_NAME.test(name) || name === '.' || name === '..') throw new RangeError(`invalid device-mapper name ${JSON.stringify(name)}`);
  return name;
}

/** Open means the mapping's node exists under /dev/mapper, which is what `cryptsetup open` creates. */
export function mapperLockProbe(mapperName: string, devMapperDir = '/dev/mapper'): VaultLockProbe {
  const path = join(devMapperDir, checkMapperName(mapperName));
  return {
    async isOpen() {
      try {
        await lstat(path);
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw error;
      }
    },
  };
}

export interface CryptsetupLockOptions {
  mapperName: string;
  /** Unmounted first when set: cryptsetup cannot close a mapping that is in use. */
  mountPoint?: string;
  exec?: Exec;
}

const LOCK_COMMAND_TIMEOUT_MS = 30_000;
/** util-linux umount exits 32 on failure, including "not mounted", which is fine before a close. */
const NOT_MOUNTED = /not mounted/;

/** Closes the vault on a host: `umount <mountPoint>` (when set), then `cryptsetup close <mapper>`. */
export function cryptsetupLockExecutor(options: CryptsetupLockOptions): VaultLockExecutor {
  const mapperName = checkMapperName(options.mapperName);
  const exec = options.exec ?? runCommand;
  return {
    async close() {
      if (options.mountPoint) {
        const result = await exec('umount', [options.mountPoint], { timeoutMs: LOCK_COMMAND_TIMEOUT_MS });
        if (result.code !== 0 && !NOT_MOUNTED.test(result.stderr)) {
          throw new Error(`umount ${options.mountPoint} failed: ${result.stderr.trim().slice(0, 300)}`);
        }
      }
      await runChecked(exec, 'cryptsetup', ['close', mapperName], { timeoutMs: LOCK_COMMAND_TIMEOUT_MS });
    },
  };
}
