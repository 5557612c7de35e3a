import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { Tpm2Mode, VaultPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { MemoryAuditSink } from '../audit/audit-sink.js';
import type { Exec, ExecResult } from '../exec.js';
import { formatLuksHeader } from '../../../test/vault/luks-headers.js';
import { VaultGuard, decideVaultLock } from './vault-guard.js';
import { cryptsetupLockExecutor, mapperLockProbe, type VaultLockExecutor } from './vault-lock.js';
import { cryptsetupHeaderReader } from './vault-reader.js';

const MAPPER = 'secai-vault';
const plan = VaultPlan.fromPartial({
  policy: 'fleet-vault',
  luksType: 'luks2',
  cipher: 'aes-xts-plain64',
  minKeySizeBits: 512,
  pbkdf: 'argon2id',
  minPbkdfMemoryKib: 65536,
  tpm2Mode: Tpm2Mode.TPM2_MODE_OPTIONAL,
  pcrBank: 'sha256',
  pcrs: [0, 2, 4, 7],
  autoLockIdleMinutes: 30,
});

let dir: string;
let header: string;
let devMapper: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'secai-vault-guard-'));
  header = join(dir, 'vault.img');
  await formatLuksHeader(header);
}, 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  devMapper = await mkdtemp(join(dir, 'dev-mapper-'));
});

/** The vault is "open" while its mapper node exists, as on a host after `cryptsetup open`. */
const openVault = () => writeFile(join(devMapper, MAPPER), '');

/** Closes like `cryptsetup close` would (removes the mapper node) and records each call. */
function closingExecutor(): VaultLockExecutor & { calls: number } {
  const executor = {
    calls: 0,
    async close() {
      executor.calls += 1;
      await rm(join(devMapper, MAPPER), { force: true });
    },
  };
  return executor;
}

async function guard(options: { executor?: VaultLockExecutor; now?: () => number; lastActivity?: () => number | undefined; registry?: Registry } = {}) {
  const audit = new MemoryAuditSink();
  const registry = options.registry ?? new Registry();
  const vault = await VaultGuard.create({
    reader: cryptsetupHeaderReader(header),
    probe: mapperLockProbe(MAPPER, devMapper),
    executor: options.executor ?? closingExecutor(),
    stateFile: join(devMapper, 'vault-state.json'),
    audit,
    registry,
    clock: options.now ?? (() => 1_000_000),
    ...(options.lastActivity ? { lastActivity: options.lastActivity } : {}),
  });
  return { vault, audit, registry };
}

describe('decideVaultLock', () => {
  const base = { locked: false, planLockEpoch: 0, honouredLockEpoch: 0, idleMinutes: 30, idleForMs: 0 };
  it.each([
    ['an open vault in use', base, { action: 'none' }],
    ['an open vault idle for the limit', { ...base, idleForMs: 30 * 60_000 }, { action: 'lock', trigger: 'idle' }],
    ['auto-lock disabled', { ...base, idleMinutes: 0, idleForMs: 1e12 }, { action: 'none' }],
    ['a locked idle vault', { ...base, locked: true, idleForMs: 1e12 }, { action: 'none' }],
    ['a raised lock epoch', { ...base, planLockEpoch: 2, honouredLockEpoch: 1 }, { action: 'lock', trigger: 'lock-request' }],
    ['a raised lock epoch on a locked vault', { ...base, locked: true, planLockEpoch: 2, honouredLockEpoch: 1 }, { action: 'honour-request' }],
    ['an honoured epoch', { ...base, planLockEpoch: 2, honouredLockEpoch: 2 }, { action: 'none' }],
  ])('%s', (_name, input, decision) => {
    expect(decideVaultLock(input)).toEqual(decision);
  });
});

describe('VaultGuard', () => {
  it('reports the real header, the lock state and compliance, and audits only changes', async () => {
    const registry = new Registry();
    const { vault, audit } = await guard({ registry });
    expect(await vault.check(plan)).toEqual({
      encrypted: true,
      sealed: false,
      locked: true,
      compliant: true,
      policy: 'fleet-vault',
      reasons: [],
      lockEpoch: 0,
    });
    await vault.check(plan);
    await openVault();
    const strict = { ...plan, tpm2Mode: Tpm2Mode.TPM2_MODE_REQUIRED, minPbkdfMemoryKib: 131072 };
    expect(await vault.check(strict)).toMatchObject({ locked: false, compliant: false, reasons: ['PbkdfMemoryTooLow', 'Tpm2TokenMissing'] });
    expect(audit.events).toEqual([
      { type: 'vault.checked', subject: 'fleet-vault', data: { compliant: true, encrypted: true, sealed: false, locked: true, reasons: '' } },
      {
        type: 'vault.checked',
        subject: 'fleet-vault',
        data: { compliant: false, encrypted: true, sealed: false, locked: false, reasons: 'PbkdfMemoryTooLow,Tpm2TokenMissing' },
      },
    ]);
    const metrics = await registry.metrics();
    expect(metrics).toContain('secai_agent_vault_compliant 0');
    expect(metrics).toContain('secai_agent_vault_locked 0');
    expect(metrics).toContain('secai_agent_vault_noncompliance{reason="Tpm2TokenMissing"} 1');
    expect(metrics).toContain('secai_agent_vault_noncompliance{reason="CipherMismatch"} 0');
    expect(metrics).toContain('secai_agent_vault_checks_total 3');
  });

  it('locks an open vault idle for the plan\'s minutes, counting from the last activity', async () => {
    let now = 10 * 60_000;
    let activity: number | undefined = 0;
    const executor = closingExecutor();
    const { vault, audit, registry } = await guard({ executor, now: () => now, lastActivity: () => activity });
    await openVault();
    expect(await vault.enforce(plan)).toEqual({ action: 'none' });
    now = 30 * 60_000 - 1;
    expect((await vault.enforce(plan)).action).toBe('none');
    activity = 20 * 60_000;
    now = 40 * 60_000;
    expect((await vault.enforce(plan)).action).toBe('none');
    now = 50 * 60_000;
    expect(await vault.enforce(plan)).toEqual({ action: 'lock', trigger: 'idle' });
    expect(executor.calls).toBe(1);
    expect(await readdir(devMapper)).not.toContain(MAPPER);
    expect(audit.events).toEqual([{ type: 'vault.locked', data: { trigger: 'idle', lockEpoch: 0, alreadyLocked: false } }]);
    expect(await registry.metrics()).toContain('secai_agent_vault_locks_total{trigger="idle"} 1');
    expect((await vault.enforce(plan)).action).toBe('none');
    expect(executor.calls).toBe(1);
  });

  it('restarts the idle clock when it sees the vault unlocked at the console', async () => {
    let now = 0;
    const executor = closingExecutor();
    const { vault } = await guard({ executor, now: () => now, lastActivity: () => 0 });
    await vault.enforce(plan);
    now = 60 * 60_000;
    await openVault();
    expect((await vault.enforce(plan)).action).toBe('none');
    now += 30 * 60_000;
    expect((await vault.enforce(plan)).action).toBe('lock');
  });

  it('honours each raised lock epoch once, across restarts, and records it when already locked', async () => {
    const executor = closingExecutor();
    const first = await guard({ executor });
    await openVault();
    expect(await first.vault.enforce({ ...plan, lockEpoch: 3 })).toEqual({ action: 'lock', trigger: 'lock-request' });
    expect(first.vault.lockEpoch).toBe(3);
    expect(JSON.parse(await readFile(join(devMapper, 'vault-state.json'), 'utf8'))).toEqual({ honouredLockEpoch: 3 });

    await openVault();
    const restarted = await guard({ executor });
    expect(await restarted.vault.enforce({ ...plan, lockEpoch: 3 })).toEqual({ action: 'none' });
    expect(executor.calls).toBe(1);
    expect((await restarted.vault.check({ ...plan, lockEpoch: 3 })).lockEpoch).toBe(3);

    await rm(join(devMapper, MAPPER));
    expect(await restarted.vault.enforce({ ...plan, lockEpoch: 4 })).toEqual({ action: 'honour-request' });
    expect(executor.calls).toBe(1);
    expect(restarted.audit.events.at(-1)).toEqual({ type: 'vault.locked', data: { trigger: 'lock-request', lockEpoch: 4, alreadyLocked: true } });
  });

  it('records a failed lock, does not mark the request honoured, and retries', async () => {
    // The real executor: this machine has no device-mapper, so `cryptsetup close` fails as on a broken host.
    const { vault, audit, registry } = await guard({ executor: cryptsetupLockExecutor({ mapperName: MAPPER }) });
    await openVault();
    expect(await vault.enforce({ ...plan, lockEpoch: 1 })).toEqual({ action: 'lock', trigger: 'lock-request' });
    expect(vault.lockEpoch).toBe(0);
    expect(audit.events).toHaveLength(1);
    expect(audit.events[0]).toMatchObject({ type: 'vault.lock-failed', data: { trigger: 'lock-request', lockEpoch: 1 } });
    expect(String(audit.events[0]!.data.error)).toContain('cryptsetup exited');
    expect(await registry.metrics()).toContain('secai_agent_vault_lock_failures_total{trigger="lock-request"} 1');
    expect((await vault.enforce({ ...plan, lockEpoch: 1 })).action).toBe('lock');
  });

  it('locks on a command or an incident, and an executor that leaves the mapping open fails the lock', async () => {
    const stubborn: VaultLockExecutor = { close: async () => undefined };
    const { vault, audit } = await guard({ executor: stubborn });
    await openVault();
    expect(await vault.lock('command', 'operator asked')).toBe(false);
    expect(audit.events[0]).toMatchObject({ type: 'vault.lock-failed', data: { error: 'the vault mapping is still open after close' } });
    const ok = await guard({ executor: closingExecutor() });
    expect(await ok.vault.lock('incident', 'incident-42')).toBe(true);
    expect(ok.audit.events).toEqual([{ type: 'vault.locked', data: { trigger: 'incident', lockEpoch: 0, reason: 'incident-42', alreadyLocked: false } }]);
  });
});

describe('cryptsetupLockExecutor', () => {
  it('unmounts, then closes the mapping, and nothing else', async () => {
    const calls: string[][] = [];
    const recording: Exec = async (command, args): Promise<ExecResult> => {
      calls.push([command, ...args]);
      const stderr = command === 'umount' ? 'umount: /var/lib/secure-ai/vault: not mounted.' : '';
      return { code: command === 'umount' ? 32 : 0, signal: null, stdout: '', stderr, timedOut: false };
    };
    await cryptsetupLockExecutor({ mapperName: MAPPER, mountPoint: '/var/lib/secure-ai/vault', exec: recording }).close();
    expect(calls).toEqual([
      ['umount', '/var/lib/secure-ai/vault'],
      ['cryptsetup', 'close', MAPPER],
    ]);
  });

  it('refuses mapper names that could escape /dev/mapper', () => {
    expect(() => cryptsetupLockExecutor({ mapperName: '../sda' })).toThrow('invalid device-mapper name');
    expect(() => mapperLockProbe('..')).toThrow('invalid device-mapper name');
  });
});

describe('no path to unlock', () => {
  it('no vault source runs a cryptsetup command that opens or resumes a vault', async () => {
    const sourceDir = new URL('.', import.meta.url).pathname;
    const sources = (await readdir(sourceDir)).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
    expect(sources.length).toBeGreaterThan(4);
    for (const file of sources) {
      const text = await readFile(join(sourceDir, file), 'utf8');
      expect({ file, unlock: text.match(/'(open|luksOpen|luksResume|resume|--test-passphrase|tcryptOpen|bitlkOpen)'/g) }).toEqual({ file, unlock: null });
    }
  });

  it('the lock executor interface has nothing but close', async () => {
    await mkdir(devMapper, { recursive: true });
    expect(Object.keys(cryptsetupLockExecutor({ mapperName: MAPPER }))).toEqual(['close']);
  });
});
