// The TPM parts against a real software TPM (swtpm, started and stopped here) with tpm2-tools: PCR
// reads, sealing to a PCR policy, the reseal dry-run checked against real unseals, and attestation.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { SecureBootState, Tpm2Mode, VaultPlan } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { Attestor } from '../../agents/src/attestation/attestation.js';
import { extendPcr, policyPcrDigest, sealedBlobAuthPolicy } from '../../agents/src/attestation/pcr-policy.js';
import { tpm2ToolsClient, type TpmClient } from '../../agents/src/attestation/tpm2-tools.js';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { resealDryRun } from '../../agents/src/vault/reseal-dry-run.js';
import { checkVaultCompliance } from '../../agents/src/vault/vault-compliance.js';
import { cryptsetupHeaderReader } from '../../agents/src/vault/vault-reader.js';
import { createLabVault } from './lab-vault.js';
import { startSwtpm, type Swtpm } from './swtpm.js';
import { extendPcrOnTpm, sealToPcrs, trialPolicyPcr, unsealWithPcrs } from './tpm2-seal.js';

let dir: string;
let swtpm: Swtpm;
let tpm: TpmClient;
const event = (name: string) => createHash('sha256').update(name).digest();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'secai-tpm-'));
  swtpm = await startSwtpm(join(dir, 'swtpm'));
  tpm = tpm2ToolsClient(swtpm.tcti);
}, 30_000);

afterAll(async () => {
  await swtpm?.stop();
  await rm(dir, { recursive: true, force: true });
});

it('answers as a TPM 2.0 and reads PCR values of the requested bank', async () => {
  expect(await tpm.isPresent()).toBe(true);
  const values = await tpm.readPcrs('sha256', [0, 2, 4, 7, 16]);
  expect([...values.keys()]).toEqual([0, 2, 4, 7, 16]);
  for (const value of values.values()) expect(value).toHaveLength(32);
  expect((await tpm.readPcrs('sha1', [7])).get(7)).toHaveLength(20);
  expect(await tpm2ToolsClient('swtpm:host=127.0.0.1,port=1').isPresent()).toBe(false);
});

it('unseals a secret sealed to PCRs 7 and 16 only until PCR 16 is extended', async () => {
  const secret = Buffer.from('vault key material');
  const sealed = await sealToPcrs(swtpm.tcti, secret, 'sha256', [7, 16]);
  expect(await unsealWithPcrs(swtpm.tcti, sealed, 'sha256', [7, 16])).toEqual(secret);
  await extendPcrOnTpm(swtpm.tcti, 'sha256', 16, event('unseal test'));
  await expect(unsealWithPcrs(swtpm.tcti, sealed, 'sha256', [7, 16])).rejects.toThrow(/0x99D|policy check failed/i);
});

it('computes the same PolicyPCR digest as a tpm2-tools trial session, for live and for supplied values', async () => {
  const live = await tpm.readPcrs('sha256', [0, 7, 16]);
  expect(policyPcrDigest('sha256', [0, 7, 16], live)).toEqual(await trialPolicyPcr(swtpm.tcti, 'sha256', [0, 7, 16]));
  const predicted = new Map(live).set(16, extendPcr('sha256', live.get(16)!, event('planned')));
  const fromFile = await trialPolicyPcr(swtpm.tcti, 'sha256', [0, 7, 16], [0, 7, 16].map((p) => predicted.get(p)!));
  expect(policyPcrDigest('sha256', [0, 7, 16], predicted)).toEqual(fromFile);
  expect(fromFile).not.toEqual(policyPcrDigest('sha256', [0, 7, 16], live));
});

describe('reseal dry-run on a vault whose key is sealed in a systemd-tpm2 token', () => {
  let header: string;
  let sealed: Awaited<ReturnType<typeof sealToPcrs>>;
  beforeAll(async () => {
    header = join(dir, 'vault.img');
    ({ sealed } = await createLabVault({ path: header, tcti: swtpm.tcti, pcrs: [7, 16] }));
  }, 60_000);

  it('enrols a compliant, sealed vault whose token carries the sealed object and its policy', async () => {
    expect(sealedBlobAuthPolicy(sealed.blob)).toEqual(sealed.policy);
    const observed = await cryptsetupHeaderReader(header).read();
    const plan = VaultPlan.fromPartial({
      policy: 'fleet-vault', luksType: 'luks2', cipher: 'aes-xts-plain64', minKeySizeBits: 512, pbkdf: 'argon2id',
      minPbkdfMemoryKib: 65536, tpm2Mode: Tpm2Mode.TPM2_MODE_REQUIRED, pcrBank: 'sha256', pcrs: [7, 16],
    });
    expect(checkVaultCompliance(plan, observed)).toEqual({ encrypted: true, sealed: true, compliant: true, findings: [] });
    expect(observed).toMatchObject({ header: { tpm2Tokens: [{ keyslots: ['1'], blob: sealed.blob, policyHash: sealed.policy.toString('hex') }] } });
  });

  it('predicts each outcome, and the TPM then does exactly that', async () => {
    const reader = cryptsetupHeaderReader(header);
    const harmless = event('a change to PCR 23 only');
    const [unaffected] = await resealDryRun(reader, tpm, [{ pcr: 23, extend: [harmless.toString('hex')] }]);
    expect(unaffected).toMatchObject({ tokenId: '0', keyslots: ['1'], now: 'unseals', afterChange: 'unseals', affectedPcrs: [] });
    await extendPcrOnTpm(swtpm.tcti, 'sha256', 23, harmless);
    const key = await unsealWithPcrs(swtpm.tcti, sealed, 'sha256', [7, 16]);
    expect(key).toHaveLength(32);

    const live16 = (await tpm.readPcrs('sha256', [16])).get(16)!;
    const [unchanged] = await resealDryRun(reader, tpm, [{ pcr: 16, value: live16.toString('hex') }]);
    expect(unchanged).toMatchObject({ now: 'unseals', afterChange: 'unseals', affectedPcrs: [16] });

    const upgrade = event('new boot loader');
    const [breaking] = await resealDryRun(reader, tpm, [{ pcr: 16, extend: [upgrade.toString('hex')] }]);
    expect(breaking).toMatchObject({ now: 'unseals', afterChange: 'fails', affectedPcrs: [16], sealedPolicy: sealed.policy.toString('hex') });
    await extendPcrOnTpm(swtpm.tcti, 'sha256', 16, upgrade);
    await expect(unsealWithPcrs(swtpm.tcti, sealed, 'sha256', [7, 16])).rejects.toThrow(/0x99D|policy check failed/i);

    const [after] = await resealDryRun(reader, tpm, []);
    expect(after).toMatchObject({ now: 'fails', afterChange: 'fails' });
    expect(after!.currentPolicy).toBe(breaking!.predictedPolicy);
  });
});

describe('attestation against the software TPM', () => {
  it('is attested while PCRs match the plan, and names the PCR that changed', async () => {
    const live = await tpm.readPcrs('sha256', [7, 23]);
    const plan = VaultPlan.fromPartial({
      policy: 'fleet-vault',
      tpm2Mode: Tpm2Mode.TPM2_MODE_REQUIRED,
      pcrBank: 'sha256',
      pcrs: [7],
      expectedPcrs: [7, 23].map((index) => ({ index, value: live.get(index)!.toString('hex') })),
    });
    const audit = new MemoryAuditSink();
    const registry = new Registry();
    const attestor = new Attestor({ tpm, efiDir: join(dir, 'no-efi'), audit, registry, clock: () => 5 });

    const first = await attestor.attest(plan);
    expect(first.attested).toBe(true);
    expect(first.report).toMatchObject({ secureBoot: SecureBootState.SECURE_BOOT_STATE_UNKNOWN, tpmPresent: true, mismatchedPcrs: [] });
    expect(first.report.pcrDigest).toBe(createHash('sha256').update(live.get(7)!).update(live.get(23)!).digest('hex'));
    await attestor.attest(plan);
    expect(audit.events).toHaveLength(1);

    await extendPcrOnTpm(swtpm.tcti, 'sha256', 23, event('unexpected boot component'));
    const second = await attestor.attest(plan);
    expect(second).toMatchObject({ attested: false, failures: ['PcrMismatch'], report: { mismatchedPcrs: [23] } });
    expect(audit.events.at(-1)).toMatchObject({ type: 'attestation.checked', data: { attested: false, failures: 'PcrMismatch', mismatchedPcrs: '23' } });
    const metrics = await registry.metrics();
    expect(metrics).toContain('secai_agent_attestation_attested 0');
    expect(metrics).toContain('secai_agent_attestation_mismatched_pcrs 1');
    expect(metrics).toContain('secai_agent_attestation_secure_boot{state="unknown"} 1');
    expect(metrics).toContain('secai_agent_attestation_tpm_present 1');
  });

  it('reports a node without a TPM as such', async () => {
    const attestor = new Attestor({ efiDir: join(dir, 'no-efi'), audit: new MemoryAuditSink(), registry: new Registry() });
    const plan = VaultPlan.fromPartial({ pcrBank: 'sha256', pcrs: [7], tpm2Mode: Tpm2Mode.TPM2_MODE_REQUIRED });
    expect(await attestor.attest(plan)).toMatchObject({ attested: false, failures: ['TpmAbsent'], report: { tpmPresent: false, pcrDigest: '' } });
  });
});
