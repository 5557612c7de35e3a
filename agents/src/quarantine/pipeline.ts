// The quarantine pipeline, one for both faces: the agent calls quarantineModel for each plan model
// it does not trust yet; the secai-quarantine command calls verifyArtifact. Stages, in verdict
// order: Fetch, Sandbox (the sandboxed one pass: Integrity, Signature, Format, StaticScan),
// SmokeTest, Promotion (a second sandboxed job computes the manifest's per-tensor hash tree, then
// the rename). The first failing stage is the verdict; every outcome is audited. This process
// never parses the artifact: it fetches, moves files and reads the scanner's outcomes. The Sandbox
// pass over an OCI layer runs while the layer downloads (followDownload).
import { randomBytes } from 'node:crypto';
import { copyFile, lstat, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { ModelPlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { AuditSink } from '../audit/audit-sink.js';
import { fetchToStaging, type FetchOptions } from './fetch.js';
import { pullOciModel, type BlobFollower, type OciModelSource } from './oci-source.js';
import { applyOverrides, policyDigest, type QuarantinePolicy } from './policy.js';
import { SCANNER_PROTOCOL_VERSION, type ScanFacts, type ScanJob } from './scanner-protocol.js';
import type { ScannerSandbox } from './scanner-sandbox.js';
import { signaturePolicyOf, type ModelSigningMethod } from './model-signature.js';
import { MAX_BUNDLE_BYTES, type SignaturePolicy } from './signature.js';
import { runSmokeTest, type SmokeTestModel } from './smoke-test.js';
import type { Pin } from './stage-checks.js';
import { fileIdentity, MANIFEST_VERSION, type FileIdentity, type TrustedStore, type TrustManifest } from './trusted-store.js';
import { composeVerdict, failed, notRequested, passed, Reason, Stage, type StageName, type StageResult, type Verdict } from './verdict.js';

export type OpenSmokeTestModel = (modelPath: string, sha256: string) => Promise<SmokeTestModel & { close(): Promise<void> }>;

export interface QuarantineMetrics {
  verdicts: Counter<'stage' | 'reason'>;
  scannedBytes: Counter;
  seconds: Histogram<'result'>;
}

export function createQuarantineMetrics(registry: Registry): QuarantineMetrics {
  const registers = [registry];
  return {
    verdicts: new Counter({ name: 'secai_agent_quarantine_verdicts_total', help: 'Quarantine verdicts by first failing stage and reason (stage "" and reason Passed when trusted).', labelNames: ['stage', 'reason'] as const, registers }),
    scannedBytes: new Counter({ name: 'secai_agent_quarantine_scanned_bytes_total', help: 'Bytes read by the sandboxed one-pass scanner.', registers }),
    seconds: new Histogram({ name: 'secai_agent_quarantine_duration_seconds', help: 'Time from fetch to verdict.', labelNames: ['result'] as const, buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800], registers }),
  };
}

export interface SignatureInput {
  /** The bundle JSON, or a URL to fetch it from (bounded, through the same fetch limits). */
  bundleJson?: string;
  bundleUrl?: string;
  policy: SignaturePolicy;
}

export type ArtifactSource =
  /** Fetched over http(s) into staging; removed unless promoted. */
  | { kind: 'url'; url: string; allowInsecureHttp: boolean }
  /** A local file scanned where it is and never moved (the command-line face). */
  | { kind: 'file'; path: string }
  /** A node-local import: moved into staging like a download. */
  | { kind: 'import'; path: string }
  /** The GGUF layer of an OCI artifact, pulled into staging by manifest digest. */
  | { kind: 'oci'; oci: OciModelSource };

export interface VerifyDeps {
  sandbox: ScannerSandbox;
  /** Where fetched and imported artifacts are staged (same filesystem as the trusted store). */
  stagingDir: string;
  openSmokeTestModel?: OpenSmokeTestModel;
  allowDestination?: (url: URL) => boolean;
  /**
   * Whether an OCI layer is scanned while it downloads (followDownload, the default) or after it.
   * On the project's 2-core machine with other suites running (an interleaved A/B), following
   * measured 0.21-0.24x openssl with tmpfs staging against 0.15-0.20x for the pass after the
   * download; with disk staging the two were within noise of each other (0.13-0.20x).
   */
  followDownloads?: boolean;
  /** Extra https trust anchors (a private mirror; tests). */
  ca?: string | Buffer;
}

export interface VerifyResult {
  /** Stage results up to SmokeTest (Promotion is the caller's). */
  results: StageResult[];
  facts?: ScanFacts;
  staged?: { path: string; identity: FileIdentity; owned: boolean };
}

function fetchOptions(policy: QuarantinePolicy, maxBytes: number, allowInsecureHttp: boolean, deps: VerifyDeps): FetchOptions {
  const options: FetchOptions = { ...policy.fetch, maxBytes, allowInsecureHttp };
  if (deps.allowDestination) options.allowDestination = deps.allowDestination;
  if (deps.ca) options.ca = deps.ca;
  return options;
}

/** Why a file cannot be moved out of the inbox: another file system, or an inbox the agent may not write. */
const CANNOT_MOVE = new Set(['EXDEV', 'EROFS', 'EPERM', 'EACCES']);

async function acquire(source: ArtifactSource, pin: Pin, policy: QuarantinePolicy, deps: VerifyDeps, follower?: BlobFollower): Promise<{ stage: StageResult; path?: string; sizeBytes?: number; owned: boolean }> {
  const maxBytes = pin.sizeBytes ? Math.min(policy.maxSizeBytes, pin.sizeBytes) : policy.maxSizeBytes;
  if (source.kind === 'url' || source.kind === 'oci') {
    const { stage, file } =
      source.kind === 'url'
        ? await fetchToStaging(source.url, deps.stagingDir, fetchOptions(policy, maxBytes, source.allowInsecureHttp, deps))
        : await pullOciModel(source.oci, pin.sha256, deps.stagingDir, fetchOptions(policy, maxBytes, source.oci.plainHttp, deps), undefined, follower);
    return { stage, ...(file ? { path: file.path, sizeBytes: file.sizeBytes } : {}), owned: true };
  }
  let stat;
  try {
    stat = await lstat(source.path);
  } catch {
    return { stage: failed(Stage.Fetch, Reason.NotFound, `${source.path} does not exist`), owned: false };
  }
  if (!stat.isFile()) return { stage: failed(Stage.Fetch, Reason.NotRegularFile, `${source.path} is not a regular file (symlinks and devices are refused)`), owned: false };
  if (stat.size > maxBytes) return { stage: failed(Stage.Fetch, Reason.TooLarge, `${stat.size} bytes, more than the limit of ${maxBytes}`), owned: false };
  if (source.kind === 'file') return { stage: passed(Stage.Fetch, 'local file', { sizeBytes: stat.size }), path: source.path, sizeBytes: stat.size, owned: false };
  // The inbox is consumed where the agent may write it (host mode); the chart mounts it read-only,
  // and then the file stays and its copy is what is verified and promoted.
  const staged = join(deps.stagingDir, `import-${randomBytes(12).toString('hex')}`);
  let consumed = true;
  try {
    await rename(source.path, staged);
  } catch (e) {
    if (!CANNOT_MOVE.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
    await copyFile(source.path, staged);
    try {
      await unlink(source.path);
    } catch (error) {
      if (!CANNOT_MOVE.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
      consumed = false;
    }
  }
  const how = consumed ? 'imported from the node inbox' : 'copied from the node inbox (read-only, left in place)';
  return { stage: passed(Stage.Fetch, how, { sizeBytes: stat.size }), path: staged, sizeBytes: stat.size, owned: true };
}

async function loadBundle(signature: SignatureInput, policy: QuarantinePolicy, deps: VerifyDeps): Promise<{ bundleJson: string } | { failure: StageResult }> {
  if (signature.bundleJson !== undefined) return { bundleJson: signature.bundleJson };
  if (!signature.bundleUrl) return { failure: failed(Stage.Signature, Reason.BundleInvalid, 'the signature has neither a bundle nor a bundle URL') };
  const { stage, file } = await fetchToStaging(signature.bundleUrl, deps.stagingDir, fetchOptions(policy, MAX_BUNDLE_BYTES, false, deps));
  if (!file) return { failure: failed(Stage.Signature, Reason.BundleInvalid, `cannot fetch the bundle: ${stage.message}`) };
  try {
    return { bundleJson: await readFile(file.path, 'utf8') };
  } finally {
    await unlink(file.path).catch(() => undefined);
  }
}

/**
 * The sandboxed verdict pass over an OCI layer while it downloads: started once the staging file
 * exists (its size is the manifest's), fed the leading bytes written as they land. `done` is its
 * outcome once the download has passed (every byte written, the blob digest matched): the scanner
 * finishes only when told the download ended; undefined when it never started (another layout).
 * `stop` ends it when the download failed.
 */
function followDownload(sandbox: ScannerSandbox, job: ScanJob, policy: QuarantinePolicy) {
  const progress = new PassThrough();
  const controller = new AbortController();
  let scanning: ReturnType<NonNullable<ScannerSandbox['scanFollowing']>> | undefined;
  const follower: BlobFollower = {
    onBlob(path, sizeBytes) {
      scanning = sandbox.scanFollowing!(path, { ...job, artifactPath: path, follow: { sizeBytes } }, { progress, signal: controller.signal, timeoutMs: policy.fetch.timeoutMs });
    },
    onProgress(writtenBytes) {
      progress.write(`${writtenBytes}\n`);
    },
  };
  return {
    follower,
    async done() {
      progress.end();
      return scanning;
    },
    async stop() {
      controller.abort();
      progress.destroy();
      await scanning;
    },
  };
}

/**
 * Fetch, sandboxed scan and smoke test: everything but promotion. A staged file the caller owns is
 * left in place for it to promote or discard.
 */
export async function verifyArtifact(input: { source: ArtifactSource; pin: Pin; signature?: SignatureInput; policy: QuarantinePolicy }, deps: VerifyDeps): Promise<VerifyResult> {
  const { source, pin, policy } = input;
  const results: StageResult[] = [];
  const job: ScanJob = { version: SCANNER_PROTOCOL_VERSION, artifactPath: '', pin, blockedDigests: policy.blockedDigests, requireSignature: policy.requireSignature };
  let signatureFailure: StageResult | undefined;
  const withBundle = async () => {
    if (!input.signature) return;
    const bundle = await loadBundle(input.signature, policy, deps);
    if ('failure' in bundle) signatureFailure = bundle.failure;
    else job.signature = { bundleJson: bundle.bundleJson, policy: input.signature.policy };
  };
  // An OCI layer is scanned as it is downloaded (followDownload): the job is complete before.
  const follow = source.kind === 'oci' && deps.followDownloads !== false && deps.sandbox.scanFollowing ? followDownload(deps.sandbox, job, policy) : undefined;
  if (follow) await withBundle();
  const fetched = await acquire(source, pin, policy, deps, follow?.follower);
  results.push(fetched.stage);
  if (!fetched.path || fetched.stage.status === 'failed') {
    await follow?.stop();
    return { results };
  }
  const staged = { path: fetched.path, identity: await fileIdentity(fetched.path), owned: fetched.owned };
  let scanned = await follow?.done();
  if (scanned?.outcome) {
    // The scanner read the file while it was written: it must still be the file the fetch wrote and
    // hashed, and the scanner must have hashed the same bytes.
    const now = await fileIdentity(staged.path);
    const same = now.ino === staged.identity.ino && now.dev === staged.identity.dev && now.size === staged.identity.size && now.mtimeMs === staged.identity.mtimeMs;
    const integrityFailed = scanned.outcome.stages.some((s) => s.stage === Stage.Integrity && s.status === 'failed');
    if (!same || (!integrityFailed && scanned.outcome.facts.sha256 !== pin.sha256)) {
      results.push(scanned.sandbox, failed(Stage.Integrity, Reason.ArtifactChanged, same ? 'the scanner read other bytes than the download wrote' : 'the staged file changed while it was scanned'));
      return { results, staged };
    }
  }
  if (!scanned) {
    if (!follow) await withBundle();
    scanned = await deps.sandbox.scan(staged.path, { ...job, artifactPath: staged.path }, fetched.sizeBytes ?? 0);
  }
  const { sandbox, outcome } = scanned;
  results.push(sandbox);
  if (!outcome) return { results, staged };
  // A cosign signature of the OCI manifest was verified at Fetch, before the pull: it is the Signature stage.
  const cosignSigned = source.kind === 'oci' && source.oci.cosignPublicKeyPem !== undefined && !input.signature;
  const signatureStage = (s: StageResult) => (cosignSigned && (s.status !== 'failed' || s.reason === Reason.SignatureRequired) ? passed(Stage.Signature, 'the OCI manifest is cosign-signed by the Model\'s key (verified at Fetch)') : s);
  results.push(...outcome.stages.map((s) => (s.stage === Stage.Signature ? (signatureFailure ?? signatureStage(s)) : s)));
  if (results.some((r) => r.status === 'failed')) return { results, facts: outcome.facts, staged };

  if (!policy.smokeTest.enabled) {
    results.push(notRequested(Stage.SmokeTest, 'the smoke test is off for this model'));
  } else if (!deps.openSmokeTestModel) {
    results.push(failed(Stage.SmokeTest, Reason.SmokeModelFailed, 'the smoke test is required but no inference sandbox is available'));
  } else {
    let model: (SmokeTestModel & { close(): Promise<void> }) | undefined;
    try {
      model = await deps.openSmokeTestModel(staged.path, outcome.facts.sha256);
      results.push(await runSmokeTest(model, policy.smokeTest.maxScore));
    } catch (e) {
      results.push(failed(Stage.SmokeTest, Reason.SmokeModelFailed, `the model could not be run in the inference sandbox: ${(e as Error).message.slice(0, 200)}`));
    } finally {
      await model?.close().catch(() => undefined);
    }
  }
  return { results, facts: outcome.facts, staged };
}

/**
 * The manifest's per-tensor hash tree, from a sandboxed job of its own: only an artifact that passed
 * every check gets one, so the verdict pass does not pay for a second SHA-256 stream. The job reads
 * the staged file again; promotion then checks the file is still the one the verdict pass read
 * (same inode, size and mtime), and the tree must describe the same size and tensor count.
 */
async function tensorTreeOf(path: string, facts: ScanFacts, sandbox: ScannerSandbox): Promise<{ tensorMerkleRoot: string; tensorCount: number } | { failure: StageResult }> {
  const { sandbox: stage, outcome } = await sandbox.tensorTree(path, facts.sizeBytes);
  if (!outcome) return { failure: failed(Stage.Promotion, Reason.PromotionFailed, `the tensor hash tree job failed: ${stage.message}`, { sandboxReason: stage.reason }) };
  if (outcome.status === 'changed') return { failure: failed(Stage.Promotion, Reason.ArtifactChanged, `the artifact changed after its verdict: ${outcome.message}`) };
  if (outcome.sizeBytes !== facts.sizeBytes || outcome.tensorCount !== facts.tensorCount) {
    return { failure: failed(Stage.Promotion, Reason.ArtifactChanged, `the artifact changed after its verdict: the tree job saw ${outcome.sizeBytes} bytes and ${outcome.tensorCount} tensors`) };
  }
  return { tensorMerkleRoot: outcome.tensorMerkleRoot, tensorCount: outcome.tensorCount };
}

export interface QuarantineDeps extends Omit<VerifyDeps, 'stagingDir'> {
  store: TrustedStore;
  audit: AuditSink;
  clock: () => Date;
  logger: Logger;
  metrics?: QuarantineMetrics;
}

export interface QuarantineResult {
  verdict: Verdict;
  manifest?: TrustManifest;
  policyDigest: string;
}

function planSource(plan: ModelPlan): ArtifactSource {
  if (plan.oci) {
    const cosign = plan.signature?.ociCosign ? { cosignPublicKeyPem: plan.signature.publicKeyPem } : {};
    const c = plan.oci.credential;
    const credential = c ? { credential: { username: c.username, password: c.password, identityToken: c.identityToken } } : {};
    return { kind: 'oci', oci: { registry: plan.oci.registry, repository: plan.oci.repository, digest: plan.oci.digest, plainHttp: plan.allowInsecureHttp, ...cosign, ...credential } };
  }
  const { url, allowInsecureHttp } = plan;
  return url.startsWith('file://') ? { kind: 'import', path: fileURLToPath(url) } : { kind: 'url', url, allowInsecureHttp };
}

function planSignature(plan: ModelPlan): SignatureInput | { failure: StageResult } | undefined {
  const sig = plan.signature;
  if (!sig) return undefined;
  // cosign's signature of an OCI manifest is found and verified at Fetch (planSource), not by the scanner.
  if (sig.ociCosign) {
    if (!plan.oci || !sig.publicKeyPem || sig.keyless || sig.modelSigning || sig.bundleJson.length > 0 || sig.bundleUrl) {
      return { failure: failed(Stage.Signature, Reason.SignaturePolicyInvalid, 'a cosign signature in the registry needs an OCI source and a public key, and nothing else') };
    }
    return undefined;
  }
  const chain = sig.modelSigning?.certificateChainPem.length ? Buffer.from(sig.modelSigning.certificateChainPem).toString('utf8') : undefined;
  if ([sig.publicKeyPem !== '', sig.keyless !== undefined, chain !== undefined].filter(Boolean).length !== 1) {
    return { failure: failed(Stage.Signature, Reason.SignaturePolicyInvalid, 'the signature names none or more than one of a public key, a keyless identity and a certificate chain') };
  }
  let method: ModelSigningMethod;
  if (sig.publicKeyPem) method = { kind: 'key', publicKeyPem: sig.publicKeyPem };
  else if (sig.keyless) method = { kind: 'sigstore', issuer: sig.keyless.issuer, subjectPattern: sig.keyless.subjectPattern, trustedRootJson: Buffer.from(sig.keyless.trustedRootJson).toString('utf8') };
  else method = { kind: 'certificate', certificateChainPem: chain! };
  const policy = signaturePolicyOf(method, sig.modelSigning && (sig.modelSigning.file ? { file: sig.modelSigning.file } : {}));
  if (!policy) return { failure: failed(Stage.Signature, Reason.SignaturePolicyInvalid, 'a certificate chain verifies OpenSSF model signatures only') };
  const input: SignatureInput = { policy };
  if (sig.bundleJson.length > 0) input.bundleJson = Buffer.from(sig.bundleJson).toString('utf8');
  else if (sig.bundleUrl) input.bundleUrl = sig.bundleUrl;
  return input;
}

/** The agent's face: quarantine one plan model and promote it into the trusted store if it passes. */
export async function quarantineModel(plan: ModelPlan, nodePolicy: QuarantinePolicy, deps: QuarantineDeps): Promise<QuarantineResult> {
  const started = performance.now();
  const policy = applyOverrides(nodePolicy, plan.quarantine);
  const digest = policyDigest(policy);
  const log = deps.logger.child({ model: plan.name, sha256: plan.sha256 });
  // Already trusted under this very policy (an agent restart, a re-sent plan): nothing to redo.
  const existing = await deps.store.lookup(plan.sha256).catch(() => undefined);
  if (existing && existing.policyDigest === digest) return { verdict: existing.verdict, manifest: existing, policyDigest: digest };
  let results: StageResult[] = [];
  let facts: ScanFacts | undefined;
  let staged: VerifyResult['staged'];
  let manifest: TrustManifest | undefined;
  let current: StageName = Stage.Fetch;
  try {
    if (plan.format !== 'gguf') {
      results.push(failed(Stage.Format, Reason.FormatNotAllowed, `format ${plan.format || '(none)'} is not accepted (gguf only)`));
    } else {
      const signature = planSignature(plan);
      const input = { source: planSource(plan), pin: { sha256: plan.sha256, sizeBytes: plan.sizeBytes }, policy };
      const verified = await verifyArtifact(signature && 'failure' in signature ? input : { ...input, ...(signature ? { signature } : {}) }, { ...deps, stagingDir: deps.store.stagingDir });
      results = verified.results;
      if (signature && 'failure' in signature) results = results.map((r) => (r.stage === Stage.Signature && r.status !== 'failed' ? signature.failure : r));
      facts = verified.facts;
      staged = verified.staged;
      current = Stage.Promotion;
      if (staged && facts && !results.some((r) => r.status === 'failed')) {
        const tree = await tensorTreeOf(staged.path, facts, deps.sandbox);
        if ('failure' in tree) {
          results.push(tree.failure);
        } else {
          const promoted = passed(Stage.Promotion, 'promoted into the trusted store');
          manifest = {
            version: MANIFEST_VERSION,
            name: plan.name,
            source: plan.oci ? `oci://${plan.oci.registry}/${plan.oci.repository}@${plan.oci.digest}` : plan.url,
            sha256: facts.sha256,
            sizeBytes: facts.sizeBytes,
            tensorMerkleRoot: tree.tensorMerkleRoot,
            tensorCount: tree.tensorCount,
            policyDigest: digest,
            promotedAt: deps.clock().toISOString(),
            verdict: composeVerdict([...results, promoted], { sha256: facts.sha256, sizeBytes: facts.sizeBytes }),
          };
          const outcome = await deps.store.promote(staged.path, staged.identity, manifest);
          if (outcome.ok) {
            results.push(outcome.alreadyTrusted ? passed(Stage.Promotion, 'already in the trusted store') : promoted);
            staged = undefined;
          } else {
            manifest = undefined;
            results.push(failed(Stage.Promotion, outcome.reason === 'changed' ? Reason.ArtifactChanged : Reason.StoreConflict, outcome.message));
          }
        }
      }
    }
  } catch (e) {
    // An unexpected error (disk full, a bug) rejects the model at the stage it reached; the agent goes on.
    const reason = current === Stage.Promotion ? Reason.PromotionFailed : Reason.TransferFailed;
    results.push(failed(current, reason, `internal error: ${(e as Error).message.slice(0, 200)}`));
    manifest = undefined;
    log.error({ err: e }, 'quarantine failed unexpectedly');
  }
  const verdict = composeVerdict(results, facts ? { sha256: facts.sha256, sizeBytes: facts.sizeBytes } : {});
  if (staged?.owned) await deps.store.discardStaged(staged.path).catch(() => undefined);

  await deps.audit.record({
    type: verdict.trusted ? 'model.promoted' : 'model.rejected',
    subject: plan.sha256,
    data: {
      name: plan.name,
      stage: verdict.stage ?? null,
      reason: verdict.reason ?? 'Passed',
      sizeBytes: facts?.sizeBytes ?? null,
      tensorMerkleRoot: manifest?.tensorMerkleRoot ?? null,
      policyDigest: digest,
    },
  });
  deps.metrics?.verdicts.inc({ stage: verdict.stage ?? '', reason: verdict.reason ?? Reason.Passed });
  if (facts) deps.metrics?.scannedBytes.inc(facts.sizeBytes);
  deps.metrics?.seconds.observe({ result: verdict.trusted ? 'trusted' : 'rejected' }, (performance.now() - started) / 1000);
  log.info({ trusted: verdict.trusted, stage: verdict.stage, reason: verdict.reason, ms: Math.round(performance.now() - started) }, 'quarantine verdict');
  return manifest ? { verdict, manifest, policyDigest: digest } : { verdict, policyDigest: digest };
}

export interface ReverifyResult {
  ok: boolean;
  /** Why not, as a stage and reason of the re-run. */
  stage?: StageName;
  reason?: string;
  message: string;
}

/**
 * Re-runs the sandboxed scan over a trusted artifact and compares digest and tensor hash tree with
 * its manifest. A failure contains the artifact. (The caller audits successes.)
 */
export async function reverifyTrusted(sha256: string, nodePolicy: QuarantinePolicy, deps: QuarantineDeps): Promise<ReverifyResult> {
  const manifest = await deps.store.lookup(sha256);
  if (!manifest) return { ok: false, stage: Stage.Integrity, reason: Reason.NotFound, message: 'the digest is not in the trusted store' };
  const path = deps.store.artifactPath(sha256);
  const job: ScanJob = { version: SCANNER_PROTOCOL_VERSION, artifactPath: path, pin: { sha256, sizeBytes: manifest.sizeBytes }, blockedDigests: nodePolicy.blockedDigests, requireSignature: false };
  const { sandbox, outcome } = await deps.sandbox.scan(path, job, manifest.sizeBytes);
  let result: ReverifyResult;
  const failure = !outcome ? sandbox : outcome.stages.find((s) => s.status === 'failed' && s.stage !== Stage.Signature);
  if (failure) {
    result = { ok: false, stage: failure.stage, reason: failure.reason, message: failure.message };
  } else {
    const tree = await deps.sandbox.tensorTree(path, manifest.sizeBytes);
    if (!tree.outcome) result = { ok: false, stage: tree.sandbox.stage, reason: tree.sandbox.reason, message: tree.sandbox.message };
    else if (tree.outcome.status === 'changed') result = { ok: false, stage: Stage.Integrity, reason: Reason.ArtifactChanged, message: tree.outcome.message };
    else if (tree.outcome.tensorMerkleRoot !== manifest.tensorMerkleRoot) result = { ok: false, stage: Stage.Integrity, reason: Reason.ArtifactChanged, message: 'the tensor hash tree differs from the manifest' };
    else result = { ok: true, message: `digest and tensor hash tree match the manifest (${manifest.sizeBytes} bytes)` };
  }
  if (!result.ok) await containModel(sha256, `re-verification failed: ${result.reason}`, deps);
  return result;
}

/** Takes a digest out of service (revocation or a failed re-verification) and audits it. */
export async function containModel(sha256: string, reason: string, deps: Pick<QuarantineDeps, 'store' | 'audit' | 'clock'>): Promise<{ moved: boolean }> {
  const result = await deps.store.contain(sha256, reason, deps.clock());
  await deps.audit.record({ type: 'model.contained', subject: sha256, data: { reason, moved: result.moved } });
  return result;
}
