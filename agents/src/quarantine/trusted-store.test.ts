// The trusted store on a real filesystem: atomic promotion with a manifest, refusal of a file that
// changed after its scan, idempotent re-promotion, and containment that takes a digest out of
// service for good.
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileIdentity, MANIFEST_VERSION, TrustedStore, type TrustManifest } from './trusted-store.js';
import { composeVerdict, passed, STAGE_ORDER } from './verdict.js';

let root: string;
let store: TrustedStore;
beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'trusted-store-'));
  store = new TrustedStore(root);
  await store.init();
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function stage(content: string): { path: string; sha256: string } {
  const path = join(store.stagingDir, `f-${Math.random()}`);
  writeFileSync(path, content, { mode: 0o600 });
  return { path, sha256: createHash('sha256').update(content).digest('hex') };
}

function manifest(sha256: string, size: number): TrustManifest {
  return {
    version: MANIFEST_VERSION,
    name: 'm',
    source: 'https://example.org/m.gguf',
    sha256,
    sizeBytes: size,
    tensorMerkleRoot: 'c'.repeat(64),
    tensorCount: 1,
    policyDigest: 'd'.repeat(64),
    promotedAt: '2026-01-01T00:00:00.000Z',
    verdict: composeVerdict(STAGE_ORDER.map((s) => passed(s))),
  };
}

it('renames the staged file into sha256/<hex>, read-only, with its manifest', async () => {
  const { path, sha256 } = stage('model bytes');
  const result = await store.promote(path, await fileIdentity(path), manifest(sha256, 11));
  expect(result).toEqual({ ok: true, path: store.artifactPath(sha256), alreadyTrusted: false });
  expect(existsSync(path)).toBe(false);
  expect(readFileSync(store.artifactPath(sha256), 'utf8')).toBe('model bytes');
  expect(statSync(store.artifactPath(sha256)).mode & 0o777).toBe(0o444);
  // The manifest records the artifact as it lies in the store, for the duty's drift checks.
  const promoted = statSync(store.artifactPath(sha256));
  expect(await store.lookup(sha256)).toEqual({ ...manifest(sha256, 11), artifact: { ino: promoted.ino, size: 11, mtimeMs: promoted.mtimeMs, ctimeMs: promoted.ctimeMs } });
  expect(await store.trustedDigests()).toEqual([sha256]);
});

it('re-verifies an artifact by its full hash, and records its state again when it still matches', async () => {
  const { path, sha256 } = stage('model bytes');
  await store.promote(path, await fileIdentity(path), manifest(sha256, 11));
  const target = store.artifactPath(sha256);
  const later = new Date(Date.now() + 60_000);
  utimesSync(target, later, later);
  expect(await store.reverify(sha256)).toEqual({ matches: true, actual: sha256 });
  expect((await store.lookup(sha256))?.artifact?.mtimeMs).toBe(statSync(target).mtimeMs);
  chmodSync(target, 0o644);
  writeFileSync(target, 'model bytez');
  expect(await store.reverify(sha256)).toMatchObject({ matches: false, actual: expect.not.stringMatching(sha256) });
  rmSync(target);
  expect(await store.reverify(sha256)).toEqual({ matches: false });
});

it('refuses a staged file that changed after it was scanned', async () => {
  const { path, sha256 } = stage('model bytes');
  const identity = await fileIdentity(path);
  appendFileSync(path, 'more');
  expect(await store.promote(path, identity, manifest(sha256, 11))).toMatchObject({ ok: false, reason: 'changed' });
  expect(await store.lookup(sha256)).toBeUndefined();
});

it('is idempotent: a digest already trusted keeps its file and drops the new copy', async () => {
  const first = stage('same');
  await store.promote(first.path, await fileIdentity(first.path), manifest(first.sha256, 4));
  const second = stage('same');
  expect(await store.promote(second.path, await fileIdentity(second.path), manifest(second.sha256, 4))).toMatchObject({ ok: true, alreadyTrusted: true });
  expect(existsSync(second.path)).toBe(false);
});

it('does not trust an artifact without a manifest naming it', async () => {
  const { path, sha256 } = stage('bytes');
  await store.promote(path, await fileIdentity(path), manifest(sha256, 5));
  writeFileSync(`${store.artifactPath(sha256)}.json`, JSON.stringify({ ...manifest('e'.repeat(64), 5) }));
  expect(await store.lookup(sha256)).toBeUndefined();
});

it('contains a digest: moved out, unreadable, never looked up, never promoted again', async () => {
  const { path, sha256 } = stage('revoked bytes');
  await store.promote(path, await fileIdentity(path), manifest(sha256, 13));
  expect(await store.contain(sha256, 'revoked by the fleet', new Date('2026-02-01T00:00:00Z'))).toEqual({ moved: true });
  expect(await store.lookup(sha256)).toBeUndefined();
  expect(existsSync(store.artifactPath(sha256))).toBe(false);
  const dir = join(root, 'contained', sha256);
  expect(readdirSync(dir).sort()).toEqual(['artifact', 'containment.json', 'manifest.json']);
  expect(statSync(join(dir, 'artifact')).mode & 0o777).toBe(0);
  expect(JSON.parse(readFileSync(join(dir, 'containment.json'), 'utf8'))).toEqual({ sha256, reason: 'revoked by the fleet', containedAt: '2026-02-01T00:00:00.000Z' });
  expect(await store.contain(sha256, 'again', new Date())).toEqual({ moved: false });
  const again = stage('revoked bytes');
  expect(await store.promote(again.path, await fileIdentity(again.path), manifest(sha256, 13))).toMatchObject({ ok: false, reason: 'contained' });
});

it('records a revoked digest it never held, so it cannot be promoted later', async () => {
  const { path, sha256 } = stage('never here');
  await store.contain(sha256, 'revoked before arrival', new Date());
  expect(await store.promote(path, await fileIdentity(path), manifest(sha256, 10))).toMatchObject({ ok: false, reason: 'contained' });
});
