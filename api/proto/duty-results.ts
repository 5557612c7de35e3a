// The vocabulary of DutyResult (agent.proto) that both ends must agree on: the duties, the reason
// codes of their outcomes and the kinds of drift. The operator turns these codes into conditions
// and Events; it never reads a message's text.

export const DUTY_NAMES = ['egress', 'models', 'inference', 'vault', 'attestation', 'audit', 'tor'] as const;
export type DutyName = (typeof DUTY_NAMES)[number];

export function isDutyName(value: unknown): value is DutyName {
  return typeof value === 'string' && (DUTY_NAMES as readonly string[]).includes(value);
}

export const DutyReason = {
  /** The duty converged and what it enforces was read back (or re-checked) as intended. */
  Converged: 'Converged',
  /** Still converging: a quarantine, a re-verification, a worker start. */
  Progressing: 'Progressing',
  /** Drift found; the repair is not yet read back in force. */
  Drift: 'Drift',
  /** Egress: the plan cannot be rendered as a ruleset. */
  RenderFailed: 'RenderFailed',
  /** Egress: nft refused the transaction (the previous table stays in force). */
  NftFailed: 'NftFailed',
  /** Egress: the table read back differs from the intent right after it was written. */
  ReadBackMismatch: 'ReadBackMismatch',
  /** Egress: the table could not be read back. */
  ReadBackFailed: 'ReadBackFailed',
  /** Drift was found and the repair failed: the node does not enforce what it should. */
  RepairFailed: 'RepairFailed',
  /** The duty threw: the node could not be read or changed (the message says what). */
  Failed: 'Failed',
  /** Tor: the client cannot carry traffic (not running, bootstrapping, no consensus); via: Tor is refused meanwhile. */
  TorUnavailable: 'TorUnavailable',
} as const;
export type DutyReason = (typeof DutyReason)[keyof typeof DutyReason];

export function isDutyReason(value: unknown): value is DutyReason {
  return typeof value === 'string' && (Object.values(DutyReason) as string[]).includes(value);
}

/** What changed behind the agent's back. */
export const DriftKind = {
  /** The `inet secai` table is gone. */
  TableMissing: 'table-missing',
  /** A chain of ours is missing, extra, or has another hook, priority or policy. */
  ChainChanged: 'chain-changed',
  /** A rule of ours was added, removed or changed (a flushed chain shows as this). */
  RuleChanged: 'rule-changed',
  /** A set of ours is missing, extra, or declared otherwise. */
  SetChanged: 'set-changed',
  /** A set holds elements the plan does not allow. */
  SetElementAdded: 'set-element-added',
  /** A set lacks elements the plan allows. */
  SetElementRemoved: 'set-element-removed',
  /** Named counters, limits or other objects of the table changed. */
  ObjectChanged: 'object-changed',
  /** Another table hooks an egress path before ours. */
  ForeignHook: 'foreign-hook',
  /** A trusted file's size, inode or mtime changed. */
  StoreFileChanged: 'store-file-changed',
  /** A trusted file or its manifest disappeared. */
  StoreFileMissing: 'store-file-missing',
  /** A trusted file no longer hashes to its digest. */
  StoreHashMismatch: 'store-hash-mismatch',
  /** The vault's LUKS2 header changed. */
  VaultHeaderChanged: 'vault-header-changed',
  /** The vault was opened or closed by someone other than the agent. */
  VaultLockChanged: 'vault-lock-changed',
  /** A PCR the policy names changed value. */
  PcrChanged: 'pcr-changed',
  /** Secure Boot or TPM presence changed. */
  BootStateChanged: 'boot-state-changed',
  /** The audit log on disk no longer matches the tree the agent holds. */
  AuditLogChanged: 'audit-log-changed',
} as const;
export type DriftKind = (typeof DriftKind)[keyof typeof DriftKind];

export function isDriftKind(value: unknown): value is DriftKind {
  return typeof value === 'string' && (Object.values(DriftKind) as string[]).includes(value);
}

/** The Event and condition reason of a duty's drift: EgressDrift, StoreDrift, VaultDrift, ... */
export function driftReasonOf(duty: DutyName): string {
  const word: Record<DutyName, string> = { egress: 'Egress', models: 'Store', inference: 'Inference', vault: 'Vault', attestation: 'Attestation', audit: 'AuditLog', tor: 'Tor' };
  return `${word[duty]}Drift`;
}
