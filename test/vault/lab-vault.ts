// One node's vault for the lab and tests: a real LUKS2 header file whose key is also sealed to the
// node's (software) TPM, enrolled the way systemd-cryptenroll does it (a random key in its own
// keyslot, a systemd-tpm2 token with the sealed blob and its policy digest).
import { randomBytes } from 'node:crypto';
import { addTpm2Keyslot, formatLuksHeader, importTpm2Token, type LuksHeaderSpec } from './luks-headers.js';
import { sealToPcrs, type SealedSecret } from './tpm2-seal.js';

export interface LabVaultOptions {
  /** The header file to create (20 MiB, sparse). */
  path: string;
  /** The node's TPM (startSwtpm().tcti). */
  tcti: string;
  pcrBank?: string;
  pcrs?: number[];
  luks?: LuksHeaderSpec;
}

export async function createLabVault(options: LabVaultOptions): Promise<{ path: string; sealed: SealedSecret }> {
  const bank = options.pcrBank ?? 'sha256';
  const pcrs = options.pcrs ?? [0, 2, 4, 7];
  await formatLuksHeader(options.path, options.luks);
  const key = randomBytes(32);
  const sealed = await sealToPcrs(options.tcti, key, bank, pcrs);
  const keyslot = await addTpm2Keyslot(options.path, key);
  await importTpm2Token(options.path, {
    keyslots: [keyslot],
    pcrBank: bank,
    pcrs,
    policyHash: sealed.policy.toString('hex'),
    blob: sealed.blob.toString('base64'),
  });
  return { path: options.path, sealed };
}
