// Every file of the adversarial corpus goes through the real pipeline (the bubblewrap scanner,
// cosign bundles where signatures matter) and is rejected at the expected stage with the expected
// reason; the clean tiny model passes the same way.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../agents/src/exec.js';
import { verifyArtifact, type SignatureInput } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../../agents/src/quarantine/policy.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { composeVerdict, notRequested, Stage, type Verdict } from '../../agents/src/quarantine/verdict.js';
import { tinyModelBytes } from '../support/tiny-model.js';
import { buildAdversarialCorpus, type CorpusEntry } from './adversarial-corpus.js';
import { startSigningLab, type SigningLab } from './signing-fixtures.js';

const corpus = buildAdversarialCorpus();
let dir: string;
let lab: SigningLab;
const verdicts = new Map<string, Verdict>();

async function check(name: string, bytes: Buffer, entry?: CorpusEntry): Promise<Verdict> {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const policy = entry?.blocked ? { ...DEFAULT_QUARANTINE_POLICY, blockedDigests: [{ sha256, reason: 'corpus: blocked' }] } : DEFAULT_QUARANTINE_POLICY;
  let signature: SignatureInput | undefined;
  if (entry?.signature === 'bundle-for-another-file') {
    const other = join(dir, `${name}.other`);
    writeFileSync(other, tinyModelBytes());
    signature = { bundleJson: await lab.signBlob(other), policy: { kind: 'key', publicKeyPem: lab.publicKeyPem } };
  } else if (entry?.signature === 'signed-by-another-key') {
    signature = { bundleJson: await lab.signBlob(path, 'other'), policy: { kind: 'key', publicKeyPem: lab.publicKeyPem } };
  }
  const sandbox = createScannerSandbox({ exec: runCommand, policy: policy.scanner });
  const pin = { sha256: entry?.pin?.sha256 ?? sha256, sizeBytes: entry?.pin?.sizeBytes ?? bytes.length };
  const { results, facts } = await verifyArtifact({ source: { kind: 'file', path }, pin, policy, ...(signature ? { signature } : {}) }, { sandbox, stagingDir: join(dir, 'staging') });
  return composeVerdict([...results, notRequested(Stage.Promotion, 'corpus check')], facts ? { sha256: facts.sha256 } : {});
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'adversarial-corpus-'));
  lab = await startSigningLab();
  // Two at a time: each check starts a sandboxed scanner, and the machine has two cores.
  const queue = [...corpus];
  await Promise.all(
    [0, 1].map(async () => {
      for (let entry = queue.shift(); entry; entry = queue.shift()) verdicts.set(entry.name, await check(entry.name, entry.bytes, entry));
    }),
  );
}, 300_000);

afterAll(async () => {
  await lab?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('has at least 40 adversarial files, each with a distinct name', () => {
  expect(corpus.length).toBeGreaterThanOrEqual(40);
  expect(new Set(corpus.map((e) => e.name)).size).toBe(corpus.length);
});

it.each(corpus.map((e) => [e.name, e.defect, e.expect.stage, e.expect.reason] as const))('%s (%s) is rejected at %s with %s', (name, _defect, stage, reason) => {
  const verdict = verdicts.get(name)!;
  expect({ trusted: verdict.trusted, stage: verdict.stage, reason: verdict.reason }).toEqual({ trusted: false, stage, reason });
});

it('passes the clean tiny model through the same checks', async () => {
  const verdict = await check('tiny.gguf', tinyModelBytes());
  expect(verdict).toMatchObject({ trusted: true });
}, 30_000);
