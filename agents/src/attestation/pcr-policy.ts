// TPM 2.0 PCR arithmetic, pure: extending a PCR, the PolicyPCR digest a sealed key is bound to
// (TPM 2.0 Part 3, TPM2_PolicyPCR: policyDigest' = H(policyDigest || TPM_CC_PolicyPCR || pcrs ||
// H(selected PCR values))), the authPolicy inside a sealed object, and tpm2_pcrread output.
import { createHash } from 'node:crypto';

interface BankAlgorithm {
  id: number;
  bytes: number;
  hash: string;
}

/** PCR banks by tpm2-tools name: TPM_ALG_ID and digest size. */
export const PCR_BANKS: Record<string, BankAlgorithm> = {
  sha1: { id: 0x0004, bytes: 20, hash: 'sha1' },
  sha256: { id: 0x000b, bytes: 32, hash: 'sha256' },
  sha384: { id: 0x000c, bytes: 48, hash: 'sha384' },
  sha512: { id: 0x000d, bytes: 64, hash: 'sha512' },
};

const TPM_CC_POLICY_PCR = 0x0000017f;
const PCR_COUNT = 24;

export type PcrValues = ReadonlyMap<number, Buffer>;

export function bankAlgorithm(bank: string): BankAlgorithm {
  const algorithm = PCR_BANKS[bank];
  if (!algorithm) throw new RangeError(`unknown PCR bank ${JSON.stringify(bank)}`);
  return algorithm;
}

function checkPcrs(pcrs: readonly number[]): number[] {
  const sorted = [...new Set(pcrs)].sort((a, b) => a - b);
  if (sorted.length !== pcrs.length) throw new RangeError('a PCR is listed twice');
  for (const pcr of sorted) if (!Number.isInteger(pcr) || pcr < 0 || pcr >= PCR_COUNT) throw new RangeError(`PCR ${pcr} is not 0 to 23`);
  return sorted;
}

/** The value a PCR takes after extending `current` with `digest`: H_bank(current || digest). */
export function extendPcr(bank: string, current: Buffer, digest: Buffer): Buffer {
  const { bytes, hash } = bankAlgorithm(bank);
  if (current.length !== bytes || digest.length !== bytes) throw new RangeError(`${bank} PCR values and digests have ${bytes} bytes`);
  return createHash(hash).update(current).update(digest).digest();
}

/** TPML_PCR_SELECTION with one bank: count, algorithm, a 3-byte bitmap of PCRs 0 to 23. */
export function pcrSelectionBytes(bank: string, pcrs: readonly number[]): Buffer {
  const bitmap = Buffer.alloc(3);
  for (const pcr of checkPcrs(pcrs)) bitmap[Math.floor(pcr / 8)]! |= 1 << pcr % 8;
  const out = Buffer.alloc(4 + 2 + 1 + 3);
  out.writeUInt32BE(1, 0);
  out.writeUInt16BE(bankAlgorithm(bank).id, 4);
  out.writeUInt8(3, 6);
  bitmap.copy(out, 7);
  return out;
}

/** The selected PCR values in ascending index order; every PCR must have a value of the bank's size. */
export function selectedPcrValues(bank: string, pcrs: readonly number[], values: PcrValues): Buffer[] {
  const { bytes } = bankAlgorithm(bank);
  return checkPcrs(pcrs).map((pcr) => {
    const value = values.get(pcr);
    if (!value || value.length !== bytes) throw new RangeError(`no ${bank} value for PCR ${pcr}`);
    return value;
  });
}

/**
 * The policy digest of a trial session that ran one TPM2_PolicyPCR over `pcrs` with `values`
 * (policy hash SHA-256, as systemd-cryptenroll and tpm2_policypcr use), starting from the empty policy.
 */
export function policyPcrDigest(bank: string, pcrs: readonly number[], values: PcrValues): Buffer {
  const composite = createHash('sha256');
  for (const value of selectedPcrValues(bank, pcrs, values)) composite.update(value);
  const command = Buffer.alloc(4);
  command.writeUInt32BE(TPM_CC_POLICY_PCR);
  return createHash('sha256')
    .update(Buffer.alloc(32))
    .update(command)
    .update(pcrSelectionBytes(bank, pcrs))
    .update(composite.digest())
    .digest();
}

/** A sealed object is small; anything larger is not one. */
const MAX_TPM2B = 4096;

function readTpm2b(bytes: Buffer, offset: number, what: string): { data: Buffer; next: number } {
  if (offset + 2 > bytes.length) throw new RangeError(`${what}: truncated`);
  const size = bytes.readUInt16BE(offset);
  if (size > MAX_TPM2B || offset + 2 + size > bytes.length) throw new RangeError(`${what}: size ${size} is out of bounds`);
  return { data: bytes.subarray(offset + 2, offset + 2 + size), next: offset + 2 + size };
}

/** The authPolicy of a TPM2B_PUBLIC (the digest the object's policy session must reach). */
export function publicAuthPolicy(tpm2bPublic: Buffer): Buffer {
  const { data } = readTpm2b(tpm2bPublic, 0, 'TPM2B_PUBLIC');
  // TPMT_PUBLIC: type (2), nameAlg (2), objectAttributes (4), then authPolicy as a TPM2B_DIGEST.
  return Buffer.from(readTpm2b(data, 8, 'TPMT_PUBLIC.authPolicy').data);
}

/** The authPolicy of a systemd-tpm2 blob: TPM2B_PRIVATE followed by TPM2B_PUBLIC. */
export function sealedBlobAuthPolicy(blob: Buffer): Buffer {
  const { next } = readTpm2b(blob, 0, 'TPM2B_PRIVATE');
  return publicAuthPolicy(blob.subarray(next));
}

const PCRREAD_BANK = /^\s*([a-z0-9]+):\s*$/;
const PCRREAD_VALUE = /^\s*(\d{1,2})\s*:\s*0x([0-9A-Fa-f]+)\s*$/;
const MAX_PCRREAD_BYTES = 64 * 1024;

/** Parses tpm2_pcrread output ("  sha256:" then "    7 : 0x…") for one bank. */
export function parsePcrRead(text: string, bank: string): Map<number, Buffer> {
  if (text.length > MAX_PCRREAD_BYTES) throw new RangeError('tpm2_pcrread output is too large');
  const { bytes } = bankAlgorithm(bank);
  const values = new Map<number, Buffer>();
  let current: string | undefined;
  for (const line of text.split('\n')) {
    const bankLine = PCRREAD_BANK.exec(line);
    if (bankLine) {
      current = bankLine[1];
      continue;
    }
    const valueLine = PCRREAD_VALUE.exec(line);
    if (!valueLine || current !== bank) continue;
    const index = Number(valueLine[1]);
    const value = Buffer.from(valueLine[2]!, 'hex');
    if (index >= PCR_COUNT || value.length !== bytes) throw new RangeError(`tpm2_pcrread gave a bad value for ${bank} PCR ${index}`);
    values.set(index, value);
  }
  return values;
}
