// The vault section of a node plan. When several VaultPolicies select a node, the highest priority
// wins and ties go to the alphabetically first name (the rule the CRD documents); the others are
// shadowed on that node and say so in their status.
import type { VaultPolicy } from '../../../api/gen/crd-types.js';
import { Tpm2Mode, type VaultPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { matchesSelector, type Labels } from './label-selector.js';

/** The CRD defaults, applied here too so that a plan never depends on whether defaulting ran. */
export const VAULT_DEFAULTS = {
  luksType: 'luks2',
  cipher: 'aes-xts-plain64',
  minKeySizeBits: 512,
  pbkdf: 'argon2id',
  minPbkdfMemoryKib: 65_536,
  tpm2Mode: 'Optional',
  pcrBank: 'sha256',
  pcrs: [0, 2, 4, 7],
  // SecAI OS locks an idle vault after 30 minutes; a policy without autoLock keeps that default.
  autoLockIdleMinutes: 30,
  relockOnIncident: true,
} as const;

export interface VaultSelection {
  applied?: VaultPolicy;
  /** Names of the other matching policies, sorted. */
  shadowed: string[];
}

export function selectVaultPolicy(policies: readonly VaultPolicy[], labels: Labels): VaultSelection {
  const matching = policies
    .filter((p) => matchesSelector(p.spec.nodeSelector, labels))
    .sort((a, b) => {
      const byPriority = (b.spec.priority ?? 0) - (a.spec.priority ?? 0);
      if (byPriority !== 0) return byPriority;
      const an = a.metadata.name ?? '';
      const bn = b.metadata.name ?? '';
      return an < bn ? -1 : an > bn ? 1 : 0;
    });
  const [applied, ...others] = matching;
  return { ...(applied ? { applied } : {}), shadowed: others.map((p) => p.metadata.name ?? '').sort() };
}

function tpm2ModeOf(mode: string): Tpm2Mode {
  if (mode === 'Required') return Tpm2Mode.TPM2_MODE_REQUIRED;
  if (mode === 'Disabled') return Tpm2Mode.TPM2_MODE_DISABLED;
  return Tpm2Mode.TPM2_MODE_OPTIONAL;
}

export function vaultPlanOf(policy: VaultPolicy): VaultPlan {
  const { luks, tpm2, autoLock, attestation } = policy.spec;
  return {
    policy: policy.metadata.name ?? '',
    luksType: luks.type ?? VAULT_DEFAULTS.luksType,
    cipher: luks.cipher ?? VAULT_DEFAULTS.cipher,
    minKeySizeBits: luks.minKeySizeBits ?? VAULT_DEFAULTS.minKeySizeBits,
    pbkdf: luks.pbkdf ?? VAULT_DEFAULTS.pbkdf,
    minPbkdfMemoryKib: luks.minPbkdfMemoryKiB ?? VAULT_DEFAULTS.minPbkdfMemoryKib,
    tpm2Mode: tpm2ModeOf(tpm2?.mode ?? VAULT_DEFAULTS.tpm2Mode),
    pcrBank: tpm2?.pcrBank ?? VAULT_DEFAULTS.pcrBank,
    pcrs: [...new Set(tpm2?.pcrs ?? VAULT_DEFAULTS.pcrs)].sort((a, b) => a - b),
    autoLockIdleMinutes: autoLock?.idleMinutes ?? VAULT_DEFAULTS.autoLockIdleMinutes,
    relockOnIncident: policy.spec.relockOnIncident ?? VAULT_DEFAULTS.relockOnIncident,
    lockEpoch: policy.spec.lockEpoch ?? 0,
    requireSecureBoot: attestation?.requireSecureBoot ?? false,
    expectedPcrs: [...(attestation?.expectedPcrs ?? [])]
      .sort((a, b) => a.index - b.index)
      .map((p) => ({ index: p.index, value: p.value.toLowerCase() })),
  };
}
