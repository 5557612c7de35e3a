// Reseal dry-run: before a planned change (firmware, boot loader, Secure Boot keys), predict whether
// the key sealed in each systemd-tpm2 token would still unseal. The token's policy digest is compared
// with the PolicyPCR digest of the live PCR values (does it unseal now?) and of the predicted values
// (will it unseal after the change?). Kairos and Talos users lost their disks to exactly this change.
import { bankAlgorithm, extendPcr, policyPcrDigest, sealedBlobAuthPolicy, type PcrValues } from '../attestation/pcr-policy.js';
import type { TpmClient } from '../attestation/tpm2-tools.js';
import type { Tpm2Token } from './luks-metadata.js';
import type { VaultHeaderReader } from './vault-reader.js';

export interface PlannedPcrChange {
  pcr: number;
  /** The PCR's value after the change (hex), when known outright. */
  value?: string;
  /** Or the digests (hex) the change will extend the PCR with, in order, from its current value. */
  extend?: string[];
}

export type UnsealPrediction = 'unseals' | 'fails' | 'unpredictable';

export interface ResealDryRunResult {
  tokenId: string;
  keyslots: string[];
  pcrBank: string;
  pcrs: number[];
  now: UnsealPrediction;
  afterChange: UnsealPrediction;
  /** Planned changes to PCRs the token is bound to. */
  affectedPcrs: number[];
  sealedPolicy?: string;
  currentPolicy?: string;
  predictedPolicy?: string;
  reason?: string;
}

const MAX_CHANGES = 24;
const MAX_EXTENDS = 64;

function predictedValues(bank: string, current: PcrValues, changes: readonly PlannedPcrChange[]): Map<number, Buffer> {
  const { bytes } = bankAlgorithm(bank);
  const values = new Map(current);
  for (const change of changes) {
    const hex = (h: string) => {
      const value = Buffer.from(h, 'hex');
      if (value.length !== bytes || value.toString('hex') !== h) throw new RangeError(`PCR ${change.pcr}: ${JSON.stringify(h.slice(0, 140))} is not a ${bank} digest`);
      return value;
    };
    if ((change.value === undefined) === (change.extend === undefined)) throw new RangeError(`PCR ${change.pcr}: give either value or extend`);
    if (change.value !== undefined) {
      values.set(change.pcr, hex(change.value));
      continue;
    }
    const digests = change.extend!;
    if (digests.length > MAX_EXTENDS) throw new RangeError(`PCR ${change.pcr}: at most ${MAX_EXTENDS} extends`);
    let value = values.get(change.pcr);
    if (!value) throw new RangeError(`PCR ${change.pcr} has no current ${bank} value to extend`);
    for (const digest of digests) value = extendPcr(bank, value, hex(digest));
    values.set(change.pcr, value);
  }
  return values;
}

/** Predicts unsealing for one token from the live PCR values (of the token's bank) and the planned changes. */
export function predictUnseal(token: Tpm2Token, current: PcrValues, changes: readonly PlannedPcrChange[]): ResealDryRunResult {
  if (changes.length > MAX_CHANGES) throw new RangeError(`at most ${MAX_CHANGES} planned PCR changes`);
  const base = {
    tokenId: token.id,
    keyslots: token.keyslots,
    pcrBank: token.pcrBank,
    pcrs: token.pcrs,
    affectedPcrs: [...new Set(changes.map((c) => c.pcr))].filter((p) => token.pcrs.includes(p)).sort((a, b) => a - b),
  };
  const unpredictable = (reason: string): ResealDryRunResult => ({ ...base, now: 'unpredictable', afterChange: 'unpredictable', reason });
  if (token.pin) return unpredictable('the policy includes a PIN');
  if (token.signedPolicyPcrs.length > 0) return unpredictable('PCRs are bound through a signed policy');
  if (token.pcrs.length === 0) return unpredictable('the token binds no PCRs');
  let blobPolicy: string | undefined;
  if (token.blob) {
    try {
      blobPolicy = sealedBlobAuthPolicy(token.blob).toString('hex');
    } catch (error) {
      return unpredictable(`the sealed object cannot be read: ${(error as Error).message}`);
    }
  }
  if (token.policyHash && blobPolicy && token.policyHash !== blobPolicy) {
    return unpredictable('the token policy hash disagrees with the sealed object');
  }
  const sealedPolicy = token.policyHash ?? blobPolicy;
  if (!sealedPolicy) return unpredictable('the token records no policy');
  const currentPolicy = policyPcrDigest(token.pcrBank, token.pcrs, current).toString('hex');
  const relevant = changes.filter((c) => token.pcrs.includes(c.pcr));
  const predictedPolicy = policyPcrDigest(token.pcrBank, token.pcrs, predictedValues(token.pcrBank, current, relevant)).toString('hex');
  return {
    ...base,
    now: currentPolicy === sealedPolicy ? 'unseals' : 'fails',
    afterChange: predictedPolicy === sealedPolicy ? 'unseals' : 'fails',
    sealedPolicy,
    currentPolicy,
    predictedPolicy,
  };
}

/** Runs the dry-run for every systemd-tpm2 token in the vault header, reading live PCRs from the TPM. */
export async function resealDryRun(reader: VaultHeaderReader, tpm: TpmClient, changes: readonly PlannedPcrChange[]): Promise<ResealDryRunResult[]> {
  const observed = await reader.read();
  if (observed.kind !== 'luks' || !observed.header) throw new Error(`no LUKS2 header to check (${observed.kind})`);
  const results: ResealDryRunResult[] = [];
  for (const token of observed.header.tpm2Tokens) {
    const current = token.pcrs.length > 0 ? await tpm.readPcrs(token.pcrBank, token.pcrs) : new Map<number, Buffer>();
    results.push(predictUnseal(token, current, changes));
  }
  return results;
}
