// OpenSSF model signatures made by the real model_signing CLI, verified offline by secai-quarantine
// as a user runs it (the bin launcher, the sandboxed pass): a good signature passes for the key and
// certificate methods, for a model signed as one file and as a directory; a changed model byte, a
// signature by another key, a manifest naming another file, a statement of another predicate type
// and a certificate of another CA are each rejected with their own reason.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { ModelPlan } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { runCommand } from '../../agents/src/exec.js';
import { quarantineModel } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { TrustedStore } from '../../agents/src/quarantine/trusted-store.js';
import { tinyModelBytes } from '../support/tiny-model.js';
import { startModelSigningLab, type ModelSigningLab } from './model-signing-fixtures.js';
import { startSigningLab, TEST_IDENTITY, TEST_ISSUER, type SigningLab } from './signing-fixtures.js';

const BIN = resolve(import.meta.dirname, '../../bin/secai-quarantine.mjs');
let dir: string;
let lab: ModelSigningLab;
let sigstoreLab: SigningLab;
const files: Record<string, string> = {};

function put(name: string, content: string | Buffer): string {
  files[name] = join(dir, name);
  writeFileSync(files[name]!, content);
  return files[name]!;
}

const sha256Of = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'model-signing-test-'));
  lab = await startModelSigningLab();
  const model = put('model.gguf', tinyModelBytes());
  put('key.pub', lab.publicKeyPem);
  put('other.pub', lab.otherPublicKeyPem);
  put('ca-chain.pem', lab.caChainPem);
  put('other-ca-chain.pem', lab.otherCaChainPem);
  put('key.sig', await lab.signKey(model));
  put('other-key.sig', await lab.signKey(model, 'other'));
  put('certificate.sig', await lab.signCertificate(model));
  put('other-ca.sig', await lab.signCertificate(model, 'other'));
  const unhinted = JSON.parse(readFileSync(files['other-key.sig']!, 'utf8'));
  delete unhinted.verificationMaterial.publicKey.hint;
  put('other-key-unhinted.sig', JSON.stringify(unhinted));
  put('root-only.pem', lab.caChainPem.slice(lab.caChainPem.indexOf('-----END CERTIFICATE-----') + 26));
  put('other-predicate.sig', await lab.signPredicate(model, 'https://model_signing/Digests/v0.1'));
  // A changed byte in the weights, at the end of the file.
  const changed = tinyModelBytes();
  changed[changed.length - 3]! ^= 0x01;
  put('changed.gguf', changed);
  // A model repository signed as a directory: the GGUF and a tokenizer file; and another with a GGUF of another name.
  for (const [repo, name] of [['repo', 'model.gguf'], ['other-repo', 'weights-q8.gguf']] as const) {
    mkdirSync(join(dir, repo));
    copyFileSync(model, join(dir, repo, name));
    writeFileSync(join(dir, repo, 'tokenizer.json'), '{"version":"1.0"}\n');
    put(`${repo}.sig`, await lab.signKey(join(dir, repo)));
  }
}, 300_000);

afterAll(async () => {
  await sigstoreLab?.close();
  lab?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(realpathSync(process.execPath), [BIN, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      done({ code: error ? Number((error as NodeJS.ErrnoException & { code: unknown }).code) : 0, stdout, stderr });
    });
  });
}

async function check(file: string, signature: string, method: string[], extra: string[] = []): Promise<{ code: number; stage?: string; reason?: string; signature?: { status: string; reason: string; details?: Record<string, unknown> } }> {
  const { code, stdout, stderr } = await cli([file, '--sha256', sha256Of(file), '--model-signature', files[signature]!, ...method, ...extra, '--json']);
  if (code === 2) throw new Error(stderr);
  const verdict = JSON.parse(stdout) as { stage?: string; reason?: string; stages: { stage: string; status: string; reason: string; details?: Record<string, unknown> }[] };
  return { code, stage: verdict.stage, reason: verdict.reason, signature: verdict.stages.find((s) => s.stage === 'Signature') };
}

const key = () => ['--key', files['key.pub']!];
const chain = () => ['--certificate-chain', files['ca-chain.pem']!];

it('passes a model signed by the key as one file', async () => {
  const result = await check(files['model.gguf']!, 'key.sig', key());
  expect(result).toMatchObject({ code: 0, signature: { status: 'passed', reason: 'Passed', details: { kind: 'model-signing/key', files: 1 } } });
}, 60_000);

it('passes a model signed with a certificate that chains to the supplied CA chain', async () => {
  expect(await check(files['model.gguf']!, 'certificate.sig', chain())).toMatchObject({ code: 0, signature: { status: 'passed', details: { kind: 'model-signing/certificate' } } });
}, 60_000);

it('passes the GGUF of a model repository signed as a directory, when named', async () => {
  const inRepo = join(dir, 'repo', 'model.gguf');
  expect(await check(inRepo, 'repo.sig', key(), ['--model-file', 'model.gguf'])).toMatchObject({ code: 0, signature: { details: { file: 'model.gguf', files: 2 } } });
  expect(await check(inRepo, 'repo.sig', key())).toMatchObject({ code: 1, stage: 'Signature', reason: 'ModelFileNotSigned' });
}, 60_000);

it.each([
  ['a changed model byte', 'changed.gguf', 'key.sig', key, [], 'DigestNotSigned'],
  ['a signature by another key', 'model.gguf', 'other-key.sig', key, [], 'KeyMismatch'],
  ['a signature by another key without a key hint', 'model.gguf', 'other-key-unhinted.sig', key, [], 'SignatureInvalid'],
  ['a certificate whose intermediate is not in the supplied chain', 'model.gguf', 'certificate.sig', () => ['--certificate-chain', files['root-only.pem']!], [], 'CertificateUntrusted'],
  ['a manifest naming another file', 'model.gguf', 'other-repo.sig', key, ['--model-file', 'model.gguf'], 'ModelFileNotSigned'],
  ['a statement of another predicate type', 'model.gguf', 'other-predicate.sig', key, [], 'PredicateTypeMismatch'],
  ['a certificate of another CA', 'model.gguf', 'other-ca.sig', chain, [], 'CertificateUntrusted'],
  ['a certificate bundle where a key is expected', 'model.gguf', 'certificate.sig', key, [], 'KeyMismatch'],
])('rejects %s', async (_name, file, signature, method, extra, reason) => {
  expect(await check(files[file]!, signature, method(), extra)).toMatchObject({ code: 1, stage: 'Signature', reason });
}, 60_000);

it('refuses a keyless model signature without its trusted root, and mixed flags, as usage errors', async () => {
  const model = files['model.gguf']!;
  const sha = sha256Of(model);
  for (const args of [
    ['--model-signature', files['key.sig']!, '--identity', '^a@b$', '--issuer', 'https://i'],
    ['--model-signature', files['key.sig']!, '--bundle', files['key.sig']!, ...key()],
    ['--bundle', files['key.sig']!, ...chain()],
    ['--model-signature', files['key.sig']!, ...key(), ...chain()],
  ]) {
    expect((await cli([model, '--sha256', sha, ...args])).code).toBe(2);
  }
}, 60_000);

describe('the agent, from a plan the operator compiled', () => {
  async function quarantine(name: string, file: string, signature: NonNullable<ModelPlan['signature']>) {
    const inbox = mkdtempSync(join(dir, `inbox-${name}-`));
    copyFileSync(file, join(inbox, 'model.gguf'));
    const store = new TrustedStore(mkdtempSync(join(dir, `store-${name}-`)));
    await store.init();
    const plan = ModelPlan.fromPartial({ name, url: pathToFileURL(join(inbox, 'model.gguf')).href, format: 'gguf', sha256: sha256Of(file), signature });
    const deps = { store, audit: new MemoryAuditSink(), sandbox: createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner }), clock: () => new Date(), logger: pino({ level: 'silent' }) };
    const { verdict } = await quarantineModel(plan, DEFAULT_QUARANTINE_POLICY, deps);
    return verdict.trusted ? 'trusted' : `${verdict.stage}: ${verdict.reason}`;
  }
  const bundle = (name: string) => readFileSync(files[name]!);
  const noChain = { file: '', certificateChainPem: Buffer.alloc(0) };

  it('promotes a model whose OpenSSF signature verifies by key, by certificate chain, and as a named file of a signed repository', async () => {
    expect(await quarantine('key', files['model.gguf']!, { bundleJson: bundle('key.sig'), bundleUrl: '', publicKeyPem: lab.publicKeyPem, modelSigning: noChain })).toBe('trusted');
    expect(await quarantine('certificate', files['model.gguf']!, { bundleJson: bundle('certificate.sig'), bundleUrl: '', publicKeyPem: '', modelSigning: { file: '', certificateChainPem: Buffer.from(lab.caChainPem) } })).toBe('trusted');
    expect(await quarantine('repo', join(dir, 'repo', 'model.gguf'), { bundleJson: bundle('repo.sig'), bundleUrl: '', publicKeyPem: lab.publicKeyPem, modelSigning: { ...noChain, file: 'model.gguf' } })).toBe('trusted');
  }, 60_000);

  it('rejects another key, a cosign reading of a model signature, and an ambiguous policy', async () => {
    expect(await quarantine('other', files['model.gguf']!, { bundleJson: bundle('other-key.sig'), bundleUrl: '', publicKeyPem: lab.publicKeyPem, modelSigning: noChain })).toBe('Signature: KeyMismatch');
    // Without modelSigning the bundle is read as a cosign attestation, whose subject must be the file.
    expect(await quarantine('as-cosign', files['model.gguf']!, { bundleJson: bundle('key.sig'), bundleUrl: '', publicKeyPem: lab.publicKeyPem })).toBe('Signature: DigestNotSigned');
    expect(await quarantine('ambiguous', files['model.gguf']!, { bundleJson: bundle('certificate.sig'), bundleUrl: '', publicKeyPem: lab.publicKeyPem, modelSigning: { file: '', certificateChainPem: Buffer.from(lab.caChainPem) } })).toBe('Signature: SignaturePolicyInvalid');
  }, 60_000);
});

// The sigstore method needs Fulcio, an OIDC token and Rekor to sign, none of which runs offline. Its
// bundle is the same DSSE envelope with a Fulcio-style certificate and a signed time: here the
// statement model_signing made (its manifest of model.gguf) is attested by cosign with the test CA's
// certificate and an RFC 3161 timestamp from the loopback TSA, and verified against a trusted root.
describe('the sigstore method, with a statement model_signing made and a certificate and timestamp from the test CA', () => {
  const identity = `^${TEST_IDENTITY.replaceAll('.', '\\.')}$`;
  const keyless = (root = 'root.json') => ['--identity', identity, '--issuer', TEST_ISSUER, '--trusted-root', files[root]!];

  beforeAll(async () => {
    sigstoreLab = await startSigningLab();
    const statement = Buffer.from(JSON.parse(readFileSync(files['key.sig']!, 'utf8')).dsseEnvelope.payload, 'base64').toString('utf8');
    put('sigstore.sig', await sigstoreLab.attestStatementKeyless(statement));
    put('root.json', sigstoreLab.trustedRootJson);
    put('other-root.json', sigstoreLab.otherTrustedRootJson);
  }, 120_000);

  it('passes for the identity and issuer, against the trusted root', async () => {
    expect(await check(files['model.gguf']!, 'sigstore.sig', keyless())).toMatchObject({ code: 0, signature: { details: { kind: 'model-signing/sigstore', files: 1 } } });
  }, 60_000);

  it('rejects another identity, another root and a changed byte', async () => {
    expect(await check(files['model.gguf']!, 'sigstore.sig', ['--identity', '^ops@example\\.org$', '--issuer', TEST_ISSUER, '--trusted-root', files['root.json']!])).toMatchObject({ code: 1, reason: 'IdentityMismatch' });
    expect(await check(files['model.gguf']!, 'sigstore.sig', keyless('other-root.json'))).toMatchObject({ code: 1, reason: 'CertificateUntrusted' });
    expect(await check(files['changed.gguf']!, 'sigstore.sig', keyless())).toMatchObject({ code: 1, reason: 'DigestNotSigned' });
  }, 60_000);
});
