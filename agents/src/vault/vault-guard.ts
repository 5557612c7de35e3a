// The vault duty: checks the vault against the plan (header, TPM2 token, lock state), reports it,
// and locks — on idle, when the operator raises the plan's lock epoch, on a LockVault command or an
// incident. It can only lock: the executor it drives has no way to open a vault.
import { readFile, rename, writeFile } from 'node:fs/promises';
import pino, { type Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { VaultPlan, VaultReport } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { AuditSink } from '../audit/audit-sink.js';
import { VaultReason, checkVaultCompliance, type VaultVerdict } from './vault-compliance.js';
import type { VaultLockExecutor, VaultLockProbe } from './vault-lock.js';
import { vaultMetrics, type LockTrigger, type VaultMetrics } from './vault-metrics.js';
import type { VaultHeaderReader } from './vault-reader.js';

export type { LockTrigger } from './vault-metrics.js';

export type LockDecision = { action: 'none' } | { action: 'lock'; trigger: LockTrigger } | { action: 'honour-request' };

export interface LockInputs {
  locked: boolean;
  planLockEpoch: number;
  honouredLockEpoch: number;
  idleMinutes: number;
  idleForMs: number;
}

/**
 * Whether to lock now. A raised lock epoch is honoured once (an already locked vault only records
 * it); auto-lock closes an open vault idle for the plan's minutes (0 disables it).
 */
export function decideVaultLock(input: LockInputs): LockDecision {
  if (input.planLockEpoch > input.honouredLockEpoch) return input.locked ? { action: 'honour-request' } : { action: 'lock', trigger: 'lock-request' };
  if (!input.locked && input.idleMinutes > 0 && input.idleForMs >= input.idleMinutes * 60_000) return { action: 'lock', trigger: 'idle' };
  return { action: 'none' };
}

export interface VaultGuardOptions {
  reader: VaultHeaderReader;
  probe: VaultLockProbe;
  executor: VaultLockExecutor;
  /** Keeps the last honoured lock epoch across restarts, so a request is honoured once. */
  stateFile: string;
  audit: AuditSink;
  registry: Registry;
  logger?: Logger;
  clock?: () => number;
  /** When the vault was last used (ms since the epoch), or undefined when nothing has used it. */
  lastActivity?: () => number | undefined;
}

const MAX_STATE_BYTES = 4096;

async function readHonouredEpoch(path: string): Promise<number> {
  let text: Buffer;
  try {
    text = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  if (text.length > MAX_STATE_BYTES) throw new Error(`${path} is larger than ${MAX_STATE_BYTES} bytes`);
  const epoch = (JSON.parse(text.toString('utf8')) as { honouredLockEpoch?: unknown }).honouredLockEpoch;
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) throw new Error(`${path}: honouredLockEpoch is not a count`);
  return epoch;
}

function summary(verdict: VaultVerdict, locked: boolean): string {
  return JSON.stringify([verdict.encrypted, verdict.sealed, verdict.compliant, locked, verdict.findings.map((f) => f.reason)]);
}

export class VaultGuard {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly metrics: VaultMetrics;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly startedAt: number;
  private lastAudited: string | undefined;
  private wasLocked: boolean | undefined;
  private unlockSeenAt: number | undefined;
  /** What the last check read: the header's digest, or what stood in its place. */
  private observed: string | undefined;

  private constructor(
    private readonly options: VaultGuardOptions,
    private honouredLockEpoch: number,
  ) {
    this.metrics = vaultMetrics(options.registry);
    this.logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'vault' });
    this.clock = options.clock ?? Date.now;
    this.startedAt = this.clock();
  }

  static async create(options: VaultGuardOptions): Promise<VaultGuard> {
    return new VaultGuard(options, await readHonouredEpoch(options.stateFile));
  }

  get lockEpoch(): number {
    return this.honouredLockEpoch;
  }

  /** What the last check read of the header (its digest, or `missing`, `unreadable`, ...). */
  get observedHeader(): string | undefined {
    return this.observed;
  }

  private serial<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.queue.then(operation, operation);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async isLocked(): Promise<boolean> {
    const open = await this.options.probe.isOpen();
    const now = this.clock();
    // An unlock at the console counts as use, so auto-lock does not close a vault just opened.
    if (open && this.wasLocked !== false) this.unlockSeenAt = this.wasLocked === true ? now : undefined;
    this.wasLocked = !open;
    return !open;
  }

  /** Reads the vault and reports it against the plan; records an audit entry when the result changes. */
  check(plan: VaultPlan): Promise<VaultReport> {
    return this.serial(async () => {
      const observation = await this.options.reader.read();
      this.observed = observation.kind === 'luks' ? `luks${observation.version}:${observation.digest ?? ''}` : observation.kind;
      const locked = await this.isLocked();
      const verdict = checkVaultCompliance(plan, observation);
      const reasons = verdict.findings.map((f) => f.reason);
      const m = this.metrics;
      m.checks.inc();
      m.encrypted.set(Number(verdict.encrypted));
      m.sealed.set(Number(verdict.sealed));
      m.locked.set(Number(locked));
      m.compliant.set(Number(verdict.compliant));
      for (const reason of Object.values(VaultReason)) m.nonCompliance.set({ reason }, Number(reasons.includes(reason)));
      const now = summary(verdict, locked);
      if (now !== this.lastAudited) {
        await this.options.audit.record({
          type: 'vault.checked',
          ...(plan.policy ? { subject: plan.policy } : {}),
          data: { compliant: verdict.compliant, encrypted: verdict.encrypted, sealed: verdict.sealed, locked, reasons: reasons.join(',') },
        });
        this.lastAudited = now;
        this.logger.info({ policy: plan.policy, compliant: verdict.compliant, locked, findings: verdict.findings }, 'vault state changed');
      }
      return {
        encrypted: verdict.encrypted,
        sealed: verdict.sealed,
        locked,
        compliant: verdict.compliant,
        policy: plan.policy,
        reasons,
        lockEpoch: this.honouredLockEpoch,
      };
    });
  }

  /** Applies the plan's lock request and auto-lock; run on every plan and every check interval. */
  enforce(plan: VaultPlan): Promise<LockDecision> {
    return this.serial(async () => {
      const locked = await this.isLocked();
      const activity = this.options.lastActivity?.() ?? this.startedAt;
      const idleSince = Math.max(activity, this.unlockSeenAt ?? Number.NEGATIVE_INFINITY);
      const decision = decideVaultLock({
        locked,
        planLockEpoch: plan.lockEpoch,
        honouredLockEpoch: this.honouredLockEpoch,
        idleMinutes: plan.autoLockIdleMinutes,
        idleForMs: this.clock() - idleSince,
      });
      if (decision.action === 'honour-request') {
        await this.options.audit.record({ type: 'vault.locked', data: { trigger: 'lock-request', lockEpoch: plan.lockEpoch, alreadyLocked: true } });
        await this.honour(plan.lockEpoch);
      } else if (decision.action === 'lock' && (await this.lockOnce(decision.trigger, plan.lockEpoch)) && decision.trigger === 'lock-request') {
        await this.honour(plan.lockEpoch);
      }
      return decision;
    });
  }

  /** Locks now (a LockVault command or an incident); resolves true when the vault is closed. */
  lock(trigger: 'command' | 'incident', reason: string): Promise<boolean> {
    return this.serial(async () => {
      if (await this.isLocked()) {
        await this.options.audit.record({ type: 'vault.locked', data: { trigger, reason: reason.slice(0, 256), alreadyLocked: true } });
        return true;
      }
      return this.lockOnce(trigger, this.honouredLockEpoch, reason);
    });
  }

  private async lockOnce(trigger: LockTrigger, lockEpoch: number, reason?: string): Promise<boolean> {
    const detail = { trigger, lockEpoch, ...(reason === undefined ? {} : { reason: reason.slice(0, 256) }) };
    try {
      await this.options.executor.close();
      if (!(await this.isLocked())) throw new Error('the vault mapping is still open after close');
    } catch (error) {
      const message = (error as Error).message.slice(0, 500);
      this.metrics.lockFailures.inc({ trigger });
      this.logger.error({ trigger, err: message }, 'vault lock failed');
      await this.options.audit.record({ type: 'vault.lock-failed', data: { ...detail, error: message } });
      return false;
    }
    this.metrics.locks.inc({ trigger });
    this.metrics.locked.set(1);
    this.logger.info({ trigger, lockEpoch }, 'vault locked');
    await this.options.audit.record({ type: 'vault.locked', data: { ...detail, alreadyLocked: false } });
    return true;
  }

  private async honour(epoch: number): Promise<void> {
    const path = this.options.stateFile;
    await writeFile(`${path}.tmp`, JSON.stringify({ honouredLockEpoch: epoch }), { mode: 0o600 });
    await rename(`${path}.tmp`, path);
    this.honouredLockEpoch = epoch;
  }
}
