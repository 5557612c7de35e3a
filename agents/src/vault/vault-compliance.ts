// The vault verdict: what the header and lock state say against the VaultPlan, with one stable reason
// code per failing field. Pure; the reader and the lock probe gather the inputs.
import { Tpm2Mode, type VaultPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { Luks2Header, Tpm2Token } from './luks-metadata.js';

/** Stable reason codes (CamelCase); VaultReport.reasons carries them. */
export const VaultReason = {
  VaultMissing: 'VaultMissing',
  HeaderUnreadable: 'HeaderUnreadable',
  NotLuks: 'NotLuks',
  LuksVersionMismatch: 'LuksVersionMismatch',
  CipherMismatch: 'CipherMismatch',
  KeySizeTooSmall: 'KeySizeTooSmall',
  PbkdfMismatch: 'PbkdfMismatch',
  PbkdfMemoryTooLow: 'PbkdfMemoryTooLow',
  Tpm2TokenMissing: 'Tpm2TokenMissing',
  Tpm2PcrBankMismatch: 'Tpm2PcrBankMismatch',
  Tpm2PcrsMissing: 'Tpm2PcrsMissing',
  Tpm2KeyslotMissing: 'Tpm2KeyslotMissing',
} as const;
export type VaultReason = (typeof VaultReason)[keyof typeof VaultReason];

/** What the reader found at the vault's header path. */
export type VaultHeaderObservation =
  | { kind: 'missing' }
  | { kind: 'unreadable'; error: string }
  | { kind: 'not-luks' }
  | { kind: 'luks'; version: number; header?: Luks2Header; /** SHA-256 of the LUKS2 metadata JSON, to notice any change. */ digest?: string };

export interface VaultFinding {
  reason: VaultReason;
  message: string;
}

export interface VaultVerdict {
  encrypted: boolean;
  /** A systemd-tpm2 token binds the key to the plan's bank and PCRs. */
  sealed: boolean;
  compliant: boolean;
  findings: VaultFinding[];
}

const PLAN_LUKS_VERSION: Record<string, number> = { luks2: 2, luks1: 1 };

function tokenBindsPlan(token: Tpm2Token, plan: VaultPlan, keyslots: Set<string>): boolean {
  return (
    token.pcrBank === plan.pcrBank &&
    plan.pcrs.every((pcr) => token.pcrs.includes(pcr) || token.signedPolicyPcrs.includes(pcr)) &&
    token.keyslots.length > 0 &&
    token.keyslots.every((k) => keyslots.has(k))
  );
}

/**
 * Checks a vault against its plan. An empty plan.policy means no VaultPolicy selects the node: the
 * facts are reported and nothing is required. Keyslots that a systemd-tpm2 token opens hold a random
 * key sealed by the TPM, which systemd-cryptenroll deliberately protects with a cheap PBKDF2, so the
 * PBKDF requirements apply to the other (passphrase) keyslots; their key size still counts.
 */
export function checkVaultCompliance(plan: VaultPlan, observed: VaultHeaderObservation): VaultVerdict {
  const findings: VaultFinding[] = [];
  const add = (reason: VaultReason, message: string) => findings.push({ reason, message });
  const header = observed.kind === 'luks' ? observed.header : undefined;
  const keyslotIds = new Set(header?.keyslots.map((k) => k.id) ?? []);
  const sealed = header?.tpm2Tokens.some((t) => tokenBindsPlan(t, plan, keyslotIds)) ?? false;
  const encrypted = observed.kind === 'luks';
  if (!plan.policy) return { encrypted, sealed, compliant: true, findings };

  switch (observed.kind) {
    case 'missing':
      add(VaultReason.VaultMissing, 'no vault header at the configured path');
      return { encrypted, sealed, compliant: false, findings };
    case 'unreadable':
      add(VaultReason.HeaderUnreadable, observed.error);
      return { encrypted, sealed, compliant: false, findings };
    case 'not-luks':
      add(VaultReason.NotLuks, 'the vault device has no LUKS header');
      return { encrypted, sealed, compliant: false, findings };
    case 'luks':
      break;
  }
  const wantVersion = PLAN_LUKS_VERSION[plan.luksType] ?? 2;
  if (observed.version !== wantVersion || !header) {
    add(VaultReason.LuksVersionMismatch, `LUKS version ${observed.version}, the policy requires ${plan.luksType || 'luks2'}`);
    return { encrypted, sealed, compliant: false, findings };
  }

  const wrongCipher = header.segments.filter((s) => s.type === 'crypt' && s.cipher !== plan.cipher);
  if (wrongCipher.length > 0 || !header.segments.some((s) => s.type === 'crypt')) {
    const found = wrongCipher.map((s) => `segment ${s.id}: ${s.cipher}`).join(', ') || 'no crypt segment';
    add(VaultReason.CipherMismatch, `${found}; the policy requires ${plan.cipher}`);
  }
  const small = header.keyslots.filter((k) => k.keySizeBits < plan.minKeySizeBits);
  if (small.length > 0) {
    add(VaultReason.KeySizeTooSmall, `${small.map((k) => `keyslot ${k.id}: ${k.keySizeBits} bits`).join(', ')}; at least ${plan.minKeySizeBits} required`);
  }
  const tpmKeyslots = new Set(header.tpm2Tokens.flatMap((t) => t.keyslots));
  const passphraseSlots = header.keyslots.filter((k) => !tpmKeyslots.has(k.id));
  const wrongPbkdf = passphraseSlots.filter((k) => k.pbkdf !== plan.pbkdf);
  if (wrongPbkdf.length > 0) {
    add(VaultReason.PbkdfMismatch, `${wrongPbkdf.map((k) => `keyslot ${k.id}: ${k.pbkdf}`).join(', ')}; the policy requires ${plan.pbkdf}`);
  }
  const cheap = passphraseSlots.filter((k) => k.pbkdf === plan.pbkdf && (k.pbkdfMemoryKib ?? 0) < plan.minPbkdfMemoryKib);
  if (cheap.length > 0) {
    add(
      VaultReason.PbkdfMemoryTooLow,
      `${cheap.map((k) => `keyslot ${k.id}: ${k.pbkdfMemoryKib ?? 0} KiB`).join(', ')}; at least ${plan.minPbkdfMemoryKib} KiB required`,
    );
  }

  if (plan.tpm2Mode !== Tpm2Mode.TPM2_MODE_DISABLED) {
    const tokens = header.tpm2Tokens;
    if (tokens.length === 0) {
      if (plan.tpm2Mode === Tpm2Mode.TPM2_MODE_REQUIRED) add(VaultReason.Tpm2TokenMissing, 'no systemd-tpm2 token: the key is not sealed to the TPM');
    } else {
      const wrongBank = tokens.filter((t) => t.pcrBank !== plan.pcrBank);
      if (wrongBank.length > 0) {
        add(VaultReason.Tpm2PcrBankMismatch, `${wrongBank.map((t) => `token ${t.id}: ${t.pcrBank}`).join(', ')}; the policy requires ${plan.pcrBank}`);
      }
      const unbound = tokens
        .map((t) => ({ t, missing: plan.pcrs.filter((p) => !t.pcrs.includes(p) && !t.signedPolicyPcrs.includes(p)) }))
        .filter(({ missing }) => missing.length > 0);
      if (unbound.length > 0) {
        add(VaultReason.Tpm2PcrsMissing, `${unbound.map(({ t, missing }) => `token ${t.id} lacks PCR ${missing.join(',')}`).join('; ')}`);
      }
      const dangling = tokens.filter((t) => t.keyslots.length === 0 || t.keyslots.some((k) => !keyslotIds.has(k)));
      if (dangling.length > 0) {
        add(VaultReason.Tpm2KeyslotMissing, `${dangling.map((t) => `token ${t.id} opens keyslots [${t.keyslots.join(',')}]`).join('; ')}, which do not all exist`);
      }
    }
  }
  return { encrypted, sealed, compliant: findings.length === 0, findings };
}
