// The scanner's two jobs, run inside the scanner sandbox (scanner-main.ts): the verdict job (the one
// pass over the artifact, then the Integrity, Signature, Format and StaticScan verdicts) and, for
// an artifact that passed every check, the tensor-tree job (the manifest's per-tensor hash tree).
import { ArtifactChangedError, scanArtifact, type ScanOptions } from './one-pass-scan.js';
import type { SignaturePolicy } from './signature.js';
import { SCANNER_PROTOCOL_VERSION, type ScanJob, type ScanOutcome, type TensorTreeJob, type TensorTreeOutcome } from './scanner-protocol.js';
import { evaluateFormat, evaluateIntegrity, evaluateStaticScan } from './stage-checks.js';
import { computeTensorTree, type TensorTreeOptions } from './tensor-tree.js';
import { failed, notRequested, Reason, Stage, type StageResult } from './verdict.js';

type VerifySignature = (bundleJson: string, digestHex: string) => StageResult;

/** A cosign bundle over the digest or an OpenSSF model signature, each with its own libraries. */
function loadSignatureVerifier(policy: SignaturePolicy): Promise<VerifySignature> {
  if (policy.kind === 'model-signing') return import('./model-signature.js').then((m) => (bundle, digest) => m.verifyModelSignatureOffline(bundle, digest, policy));
  return import('./signature.js').then((m) => (bundle, digest) => m.verifySignatureOffline(bundle, digest, policy));
}

export async function runScanJob(job: ScanJob, options: ScanOptions = {}): Promise<ScanOutcome> {
  const started = performance.now();
  // The sigstore libraries take tens of milliseconds to load: they load while the pass runs, on a
  // thread the SHA-256 stream does not need, and not at all for a model without a signature.
  const verifier = job.signature ? loadSignatureVerifier(job.signature.policy) : undefined;
  verifier?.catch(() => undefined);
  let report;
  try {
    report = await scanArtifact(job.artifactPath, options);
  } catch (e) {
    if (!(e instanceof ArtifactChangedError)) throw e;
    const changed = failed(Stage.Integrity, Reason.ArtifactChanged, e.message);
    const unreached = (stage: typeof Stage.Signature | typeof Stage.Format | typeof Stage.StaticScan): StageResult => ({ stage, status: 'skipped', reason: Reason.NotReached, message: 'not reached: Integrity failed' });
    return { version: SCANNER_PROTOCOL_VERSION, stages: [changed, unreached(Stage.Signature), unreached(Stage.Format), unreached(Stage.StaticScan)], facts: { sha256: '0'.repeat(64), sizeBytes: 0, scanMs: Math.round(performance.now() - started) } };
  }
  const integrity = evaluateIntegrity(report, job.pin, job.blockedDigests);
  let signature: StageResult;
  if (job.signature) signature = (await verifier!)(job.signature.bundleJson, report.sha256);
  else if (job.requireSignature) signature = failed(Stage.Signature, Reason.SignatureRequired, 'policy requires a signature and the model has none');
  else signature = notRequested(Stage.Signature, 'the model has no signature to verify');
  const facts: ScanOutcome['facts'] = { sha256: report.sha256, sizeBytes: report.sizeBytes, scanMs: Math.round(performance.now() - started) };
  if (report.header.status === 'ok') facts.tensorCount = report.header.tensorCount;
  return { version: SCANNER_PROTOCOL_VERSION, stages: [integrity, signature, evaluateFormat(report), evaluateStaticScan(report)], facts };
}

export async function runTensorTreeJob(job: TensorTreeJob, options: TensorTreeOptions = {}): Promise<TensorTreeOutcome> {
  try {
    const tree = await computeTensorTree(job.artifactPath, options);
    return { version: SCANNER_PROTOCOL_VERSION, status: 'ok', sizeBytes: tree.sizeBytes, tensorCount: tree.tensorCount, tensorMerkleRoot: tree.tensorMerkleRoot, treeMs: tree.durationMs };
  } catch (e) {
    if (!(e instanceof ArtifactChangedError)) throw e;
    return { version: SCANNER_PROTOCOL_VERSION, status: 'changed', message: e.message.slice(0, 1000) };
  }
}
