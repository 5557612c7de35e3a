// Reads the vault header: the binary prefix for the LUKS version, then the LUKS2 JSON metadata from
// cryptsetup. Reading never needs the key and never opens the vault.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { runCommand, type Exec } from '../exec.js';
import type { VaultHeaderObservation } from './vault-compliance.js';
import { LuksMetadataError, MAX_METADATA_JSON_BYTES, luksVersion, parseLuks2Metadata } from './luks-metadata.js';

export interface VaultHeaderReader {
  read(): Promise<VaultHeaderObservation>;
}

const CRYPTSETUP_TIMEOUT_MS = 10_000;

async function readPrefix(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const prefix = Buffer.alloc(8);
    const { bytesRead } = await handle.read(prefix, 0, 8, 0);
    return prefix.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Reads the LUKS header of `headerPath` (the vault block device, or a detached header file). */
export function cryptsetupHeaderReader(headerPath: string, exec: Exec = runCommand): VaultHeaderReader {
  return {
    async read() {
      let prefix: Buffer;
      try {
        prefix = await readPrefix(headerPath);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return { kind: 'missing' };
        return { kind: 'unreadable', error: `cannot read ${headerPath}: ${code ?? (error as Error).message}` };
      }
      const version = luksVersion(prefix);
      if (version === undefined) return { kind: 'not-luks' };
      if (version !== 2) return { kind: 'luks', version };
      const result = await exec('cryptsetup', ['luksDump', '--dump-json-metadata', headerPath], {
        timeoutMs: CRYPTSETUP_TIMEOUT_MS,
        maxOutputBytes: MAX_METADATA_JSON_BYTES + 1,
      });
      if (result.code !== 0) {
        return { kind: 'unreadable', error: `cryptsetup luksDump failed: ${result.stderr.trim().slice(0, 200) || `exit ${result.code}`}` };
      }
      try {
        return { kind: 'luks', version, header: parseLuks2Metadata(result.stdout), digest: createHash('sha256').update(result.stdout).digest('hex') };
      } catch (error) {
        if (error instanceof LuksMetadataError) return { kind: 'unreadable', error: `LUKS2 metadata: ${error.message}` };
        throw error;
      }
    },
  };
}
