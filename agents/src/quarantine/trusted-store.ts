// The content-addressed trusted store: only promotion puts a file here, and only a file here with
// a manifest that names its digest is ever served.
//
//   <root>/staging/                 fetched artifacts awaiting their verdict (0700, files 0600)
//   <root>/sha256/<hex>             trusted artifacts (0444), renamed in atomically from staging
//   <root>/sha256/<hex>.json        their manifests: verdict, stage results, per-tensor hash tree
//                                   root, policy digest
//   <root>/contained/<hex>/         revoked artifacts moved out of service, with containment.json
//
// Staging and the store are one filesystem, so promotion is a rename: a reader sees the whole
// file or none. The manifest goes in last; an artifact without one is not trusted.
import { open, mkdir, readFile, rename, rm, stat, chmod, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { sameStoredState, sha256OfFile, storedFileState, type StoredFileState } from '../file-state.js';
import { fsyncPath } from '../fsync.js';
import type { Verdict } from './verdict.js';

export const MANIFEST_VERSION = 1;

export interface TrustManifest {
  version: number;
  name: string;
  source: string;
  sha256: string;
  sizeBytes: number;
  /** Root of the per-tensor SHA-256 Merkle tree (merkle.ts). */
  tensorMerkleRoot: string;
  tensorCount: number;
  policyDigest: string;
  promotedAt: string;
  verdict: Verdict;
  /** The artifact as it lay in the store right after promotion; a change means re-verification. */
  artifact?: StoredFileState;
}



export interface ContainmentRecord {
  sha256: string;
  reason: string;
  containedAt: string;
}

/** What the file looked like when it was scanned: promotion refuses a file that changed since. */
export interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

export async function fileIdentity(path: string): Promise<FileIdentity> {
  const s = await stat(path);
  return { dev: s.dev, ino: s.ino, size: s.size, mtimeMs: s.mtimeMs };
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

export type PromotionResult =
  | { ok: true; path: string; alreadyTrusted: boolean }
  | { ok: false; reason: 'changed' | 'contained' | 'conflict'; message: string };

const HEX = /^[0-9a-f]{64}$/;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Writes a file completely, flushes it, then renames it over `path`. */
async function writeAtomically(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const handle = await open(tmp, 'w', mode);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}


export class TrustedStore {
  readonly stagingDir: string;
  private readonly trustedDir: string;
  private readonly containedDir: string;

  constructor(readonly root: string) {
    this.stagingDir = join(root, 'staging');
    this.trustedDir = join(root, 'sha256');
    this.containedDir = join(root, 'contained');
  }

  async init(): Promise<void> {
    await mkdir(this.stagingDir, { recursive: true, mode: 0o700 });
    await mkdir(this.trustedDir, { recursive: true, mode: 0o755 });
    await mkdir(this.containedDir, { recursive: true, mode: 0o700 });
  }

  /** Where trusted artifacts and their manifests lie (watched for changes). */
  get trustedDirectory(): string {
    return this.trustedDir;
  }

  artifactPath(sha256: string): string {
    if (!HEX.test(sha256)) throw new Error('not a SHA-256 hex digest');
    return join(this.trustedDir, sha256);
  }

  private manifestPath(sha256: string): string {
    return `${this.artifactPath(sha256)}.json`;
  }

  /** The manifest of a trusted artifact, or undefined when the digest is not trusted here. */
  async lookup(sha256: string): Promise<TrustManifest | undefined> {
    if (!HEX.test(sha256)) return undefined;
    let manifest: TrustManifest;
    try {
      manifest = JSON.parse(await readFile(this.manifestPath(sha256), 'utf8')) as TrustManifest;
    } catch {
      return undefined;
    }
    if (manifest.version !== MANIFEST_VERSION || manifest.sha256 !== sha256 || !manifest.verdict?.trusted) return undefined;
    if (!(await exists(this.artifactPath(sha256)))) return undefined;
    return manifest;
  }

  async isContained(sha256: string): Promise<boolean> {
    return HEX.test(sha256) && exists(join(this.containedDir, sha256));
  }

  /** Digests with a manifest in the store. */
  async trustedDigests(): Promise<string[]> {
    const names = await readdir(this.trustedDir);
    return names.filter((n) => n.endsWith('.json') && HEX.test(n.slice(0, -5))).map((n) => n.slice(0, -5));
  }

  /**
   * Moves a staged file into the store under its digest and writes its manifest. The file must
   * still be the one that was scanned; a digest that is contained is never promoted again.
   */
  async promote(stagedPath: string, scanned: FileIdentity, manifest: TrustManifest): Promise<PromotionResult> {
    const target = this.artifactPath(manifest.sha256);
    if (await this.isContained(manifest.sha256)) return { ok: false, reason: 'contained', message: 'the digest is contained (revoked) on this node' };
    let current: FileIdentity;
    try {
      current = await fileIdentity(stagedPath);
    } catch {
      return { ok: false, reason: 'changed', message: 'the staged file is gone' };
    }
    if (!sameIdentity(current, scanned)) return { ok: false, reason: 'changed', message: 'the staged file changed after it was scanned' };
    if (await this.lookup(manifest.sha256)) {
      // Same digest, same bytes: keep the file, record the newer verdict (a newer policy).
      await rm(stagedPath, { force: true });
      await this.writeManifest({ ...manifest, artifact: await storedFileState(target) });
      return { ok: true, path: target, alreadyTrusted: true };
    }
    // The bytes reach the disk before the name does, so a crash cannot leave a short trusted file.
    await fsyncPath(stagedPath);
    await chmod(stagedPath, 0o444);
    await rename(stagedPath, target);
    await this.writeManifest({ ...manifest, artifact: await storedFileState(target) });
    await fsyncPath(this.trustedDir);
    return { ok: true, path: target, alreadyTrusted: false };
  }

  /**
   * Takes a digest out of service: the artifact and its manifest move to contained/<hex>/ with a
   * record of why. Idempotent; also records digests that were never trusted here, so a later
   * promotion of them is refused.
   */
  async contain(sha256: string, reason: string, now: Date): Promise<{ moved: boolean }> {
    this.artifactPath(sha256); // validates the digest
    const dir = join(this.containedDir, sha256);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let moved = false;
    if (await exists(this.artifactPath(sha256))) {
      // The manifest goes first: without it the artifact is no longer trusted, even mid-move.
      if (await exists(this.manifestPath(sha256))) await rename(this.manifestPath(sha256), join(dir, 'manifest.json'));
      await rename(this.artifactPath(sha256), join(dir, 'artifact'));
      await chmod(join(dir, 'artifact'), 0o000);
      moved = true;
    } else if (await exists(this.manifestPath(sha256))) {
      await rename(this.manifestPath(sha256), join(dir, 'manifest.json'));
    }
    const recordPath = join(dir, 'containment.json');
    if (!(await exists(recordPath))) {
      const record: ContainmentRecord = { sha256, reason, containedAt: now.toISOString() };
      await writeAtomically(recordPath, `${JSON.stringify(record, null, 2)}\n`, 0o600);
    }
    await fsyncPath(this.trustedDir);
    return { moved };
  }

  private async writeManifest(manifest: TrustManifest): Promise<void> {
    await writeAtomically(this.manifestPath(manifest.sha256), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);
  }

  /** The artifact's and the manifest's state now (undefined where the file is gone). */
  async fileStates(sha256: string): Promise<{ artifact?: StoredFileState; manifest?: StoredFileState }> {
    const [artifact, manifest] = await Promise.all([storedFileState(this.artifactPath(sha256)), storedFileState(this.manifestPath(sha256))]);
    return { ...(artifact ? { artifact } : {}), ...(manifest ? { manifest } : {}) };
  }

  /**
   * Hashes a trusted artifact in full. Matching, its manifest records the file's state now (the
   * new baseline); not matching, the artifact is left for the caller to remove.
   */
  async reverify(sha256: string): Promise<{ matches: boolean; actual?: string }> {
    const manifest = await this.lookup(sha256);
    if (!manifest) return { matches: false };
    const before = await storedFileState(this.artifactPath(sha256));
    let actual: string;
    try {
      actual = await sha256OfFile(this.artifactPath(sha256));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { matches: false };
      throw error;
    }
    // A write during the hash moves the state: the bytes hashed may not be the bytes there now.
    const after = await storedFileState(this.artifactPath(sha256));
    if (actual !== sha256 || !sameStoredState(before, after)) return { matches: false, actual };
    if (!sameStoredState(manifest.artifact, after)) await this.writeManifest({ ...manifest, artifact: after });
    return { matches: true, actual };
  }

  /** Removes a staged file that was rejected. */
  async discardStaged(path: string): Promise<void> {
    await rm(path, { force: true });
  }

  /**
   * Deletes a trusted artifact the node no longer needs (its Model was deleted). Unlike contain(),
   * it leaves no record: the same digest may be quarantined and trusted again later.
   */
  async remove(sha256: string): Promise<{ removed: boolean }> {
    const existed = await exists(this.artifactPath(sha256));
    // The manifest goes first: without it the artifact is no longer trusted.
    await rm(this.manifestPath(sha256), { force: true });
    await rm(this.artifactPath(sha256), { force: true });
    await fsyncPath(this.trustedDir);
    return { removed: existed };
  }
}
