import { Counter, Gauge, type Registry } from 'prom-client';
import { VaultReason } from './vault-compliance.js';

export type LockTrigger = 'idle' | 'lock-request' | 'command' | 'incident';

export interface VaultMetrics {
  encrypted: Gauge;
  sealed: Gauge;
  locked: Gauge;
  compliant: Gauge;
  nonCompliance: Gauge<'reason'>;
  checks: Counter;
  locks: Counter<'trigger'>;
  lockFailures: Counter<'trigger'>;
}

export function vaultMetrics(registry: Registry): VaultMetrics {
  const registers = [registry];
  const gauge = (name: string, help: string) => new Gauge({ name, help, registers });
  const metrics: VaultMetrics = {
    encrypted: gauge('secai_agent_vault_encrypted', 'Whether a LUKS header was found at the vault path (1) or not (0).'),
    sealed: gauge('secai_agent_vault_sealed', 'Whether the vault key is sealed to the TPM with the required bank and PCRs.'),
    locked: gauge('secai_agent_vault_locked', 'Whether the vault is closed (1) or open (0).'),
    compliant: gauge('secai_agent_vault_compliant', 'Whether the vault satisfies the applied VaultPolicy.'),
    nonCompliance: new Gauge({
      name: 'secai_agent_vault_noncompliance',
      help: 'Reasons the vault is not compliant now (1 per failing field).',
      labelNames: ['reason'] as const,
      registers,
    }),
    checks: new Counter({ name: 'secai_agent_vault_checks_total', help: 'Vault compliance checks run.', registers }),
    locks: new Counter({ name: 'secai_agent_vault_locks_total', help: 'Vault locks performed, by trigger.', labelNames: ['trigger'] as const, registers }),
    lockFailures: new Counter({
      name: 'secai_agent_vault_lock_failures_total',
      help: 'Vault locks that failed, by trigger.',
      labelNames: ['trigger'] as const,
      registers,
    }),
  };
  for (const reason of Object.values(VaultReason)) metrics.nonCompliance.set({ reason }, 0);
  return metrics;
}
