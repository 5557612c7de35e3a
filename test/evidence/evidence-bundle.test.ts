// The offline evidence bundle (issue 16), built from real parts: the node's real audit log (signed
// heads, RFC 6962 consistency proof), a real quote of a swtpm's AK over a fresh nonce after a
// simulated measured boot with its event log, and a real trusted store's manifest; signed with an
// operator evidence key. `verify` passes it and says what each part proves; a bundle altered in any
// one part fails, naming that part.
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../../agents/src/audit/audit-log.js';
import { tpm2ToolsAttestation } from '../../agents/src/attestation/tpm-attestation.js';
import { fileIdentity, TrustedStore } from '../../agents/src/quarantine/trusted-store.js';
import { signEvidence, verifyEvidence, type EvidenceBundle, type EvidenceParts } from '../../operator/src/evidence/bundle.js';
import { startSwtpm, type Swtpm } from '../vault/swtpm.js';
import { measureOnTpm, simulatedFirmwareBoot, writeEventLog } from '../attestation/event-log-writer.js';

let dir: string;
let swtpm: Swtpm;
let parts: EvidenceParts;
const operatorKey = generateKeyPairSync('ed25519');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'secai-evidence-'));
  // The node's audit log: a head the operator verified at 40 entries, then 25 more.
  const log = await AuditLog.open({ dir: join(dir, 'audit') });
  for (let i = 0; i < 40; i++) await log.record({ type: 'plan.applied', subject: String(i), data: { n: i } });
  const verified = await log.signTreeHead();
  for (let i = 0; i < 25; i++) await log.record({ type: 'egress.drops', data: { n: i } });
  const proof = await log.proveConsistency(verified.treeSize);
  const head = proof.toHead!;
  // The node's TPM after a measured boot; a quote of its AK over a fresh nonce.
  swtpm = await startSwtpm(join(dir, 'tpm'), { ekCertificate: { caDir: join(dir, 'ca') } });
  const boot = simulatedFirmwareBoot({ secureBoot: true, tag: 'evidence' });
  await measureOnTpm(swtpm.tcti, boot);
  await mkdir(join(dir, 'tpm-work'));
  const tpm = tpm2ToolsAttestation({ tcti: swtpm.tcti, workDir: join(dir, 'tpm-work') });
  const identity = await tpm.identity();
  const nonce = randomBytes(32);
  const quote = await tpm.quote(nonce, 'sha256', [0, 4, 7]);
  // A model the node's store trusts.
  const store = new TrustedStore(join(dir, 'store'));
  await store.init();
  const staged = join(store.stagingDir, 'model');
  await writeFile(staged, 'model bytes');
  const sha256 = createHash('sha256').update('model bytes').digest('hex');
  const verdict = { trusted: true, stages: [] } as never;
  await store.promote(staged, await fileIdentity(staged), { version: 1, name: 'tiny', source: 'https://models.example/tiny.gguf', sha256, sizeBytes: 11, tensorMerkleRoot: '', tensorCount: 0, policyDigest: 'p', promotedAt: new Date().toISOString(), verdict });
  parts = {
    auditLog: {
      nodeKey: b64(log.publicKey),
      verified: { treeSize: verified.treeSize, rootHash: hex(verified.rootHash) },
      head: { treeSize: head.treeSize, rootHash: hex(head.rootHash), timestampUnixMillis: head.timestampUnixMillis, signature: b64(head.signature) },
      proof: proof.hashes.map(hex),
    },
    attestation: {
      ekFingerprint: createHash('sha256').update(identity.ekPublic).digest('hex'),
      akPublic: b64(identity.akPublic),
      nonce: hex(nonce),
      pcrBank: 'sha256',
      pcrs: [0, 4, 7],
      attest: b64(quote.attest),
      signature: b64(quote.signature),
      pcrValues: quote.pcrValues.map((p) => ({ index: p.index, value: hex(p.value) })),
      eventLog: b64(writeEventLog(boot)),
    },
    plan: { generation: 7, digest: 'a'.repeat(64), appliedGeneration: 7, appliedDigest: 'a'.repeat(64), rulesetDigest: 'b'.repeat(64) },
    models: [{ sha256, manifest: (await store.lookup(sha256)) as unknown as Record<string, unknown> }],
  };
  await log.close();
}, 120_000);

afterAll(async () => {
  await swtpm?.stop();
  await rm(dir, { recursive: true, force: true });
});

const bundle = () => signEvidence({ node: 'node-a', requestId: 'r1', collectedAt: '2026-12-07T12:00:00.000Z', parts: structuredClone(parts) }, operatorKey);
const pem = operatorKey.publicKey.export({ type: 'spki', format: 'pem' }).toString();

it('verifies offline, and says what each part proves', () => {
  const findings = verifyEvidence(bundle(), pem);
  expect(findings.filter((f) => !f.ok)).toEqual([]);
  const text = (part: string) => findings.find((f) => f.part === part)?.text ?? '';
  expect(text('operator')).toContain('(the key given)');
  expect(text('auditLog')).toMatch(/log of 65 entries, signed by node key [0-9a-f]{16}, extends the 40-entry head the operator verified before/);
  expect(text('attestation')).toMatch(/quoted sha256 PCRs 0, 4, 7 over the bundle's nonce; the boot event log \(\d+ events\) replays to PCRs/);
  expect(text('plan')).toContain('enforces plan generation 7');
  expect(text('models')).toContain('1 trusted model(s)');
});

// Each tamper changes one part the way someone rewriting the evidence would, re-signing nothing.
const tampers: [string, string, (b: EvidenceBundle) => void][] = [
  ['a head of a rewritten log', 'auditLog', (b) => (b.parts.auditLog.head.rootHash = 'c'.repeat(64))],
  ['a consistency proof for another history', 'auditLog', (b) => (b.parts.auditLog.proof[0] = 'd'.repeat(64))],
  ['a quote over another nonce', 'attestation', (b) => (b.parts.attestation.nonce = 'e'.repeat(64))],
  ['a forged PCR value', 'attestation', (b) => (b.parts.attestation.pcrValues[2]!.value = 'f'.repeat(64))],
  ['another event log', 'attestation', (b) => (b.parts.attestation.eventLog = b64(writeEventLog(simulatedFirmwareBoot({ secureBoot: false }))))],
  ['a plan the node does not hold', 'plan', (b) => (b.parts.plan.appliedDigest = '0'.repeat(64))],
  ['a model added', 'models', (b) => b.parts.models.push({ ...b.parts.models[0]!, sha256: '1'.repeat(64), manifest: { ...b.parts.models[0]!.manifest, sha256: '1'.repeat(64) } })],
  ['a manifest with another verdict', 'models', (b) => (b.parts.models[0]!.manifest.verdict = { trusted: false })],
];

it.each(tampers)('fails for %s, naming the part', (_what, part, tamper) => {
  const b = bundle();
  tamper(b);
  const failed = verifyEvidence(b, pem).filter((f) => !f.ok);
  expect(failed.map((f) => f.part)).toContain(part);
  expect(failed.every((f) => f.part === part)).toBe(true);
});

it('fails a bundle re-signed by another key when the operator key is pinned, and one whose statement was changed', () => {
  const other = generateKeyPairSync('ed25519');
  const resigned = signEvidence({ node: 'node-a', requestId: 'r1', collectedAt: '2026-12-07T12:00:00.000Z', parts: structuredClone(parts) }, other);
  expect(verifyEvidence(resigned, pem).filter((f) => !f.ok).map((f) => f.part)).toEqual(['operator']);
  const renamed = bundle();
  renamed.node = 'node-b';
  expect(verifyEvidence(renamed, pem).find((f) => f.part === 'operator')).toMatchObject({ ok: false });
});
