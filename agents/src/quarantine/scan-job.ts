// One scan job: the one pass over the artifact, then the Integrity, Signature, Format and
// StaticScan verdicts. Runs inside the scanner sandbox (scanner-main.ts).
import { ArtifactChangedError, scanArtifact, type ScanOptions } from './one-pass-scan.js';
import { SCANNER_PROTOCOL_VERSION, type ScanJob, type ScanOutcome } from './scanner-protocol.js';
import { verifySignatureOffline } from './signature.js';
import { evaluateFormat, evaluateIntegrity, evaluateStaticScan } from './stage-checks.js';
import { failed, notRequested, Reason, Stage, type StageResult } from './verdict.js';

export async function runScanJob(job: ScanJob, options: ScanOptions = {}): Promise<ScanOutcome> {
  const started = performance.now();
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
  if (job.signature) signature = verifySignatureOffline(job.signature.bundleJson, report.sha256, job.signature.policy);
  else if (job.requireSignature) signature = failed(Stage.Signature, Reason.SignatureRequired, 'policy requires a signature and the model has none');
  else signature = notRequested(Stage.Signature, 'the model has no signature to verify');
  const facts: ScanOutcome['facts'] = { sha256: report.sha256, sizeBytes: report.sizeBytes, scanMs: Math.round(performance.now() - started) };
  if (report.tensorMerkleRoot) facts.tensorMerkleRoot = report.tensorMerkleRoot;
  if (report.header.status === 'ok') facts.tensorCount = report.header.tensorCount;
  return { version: SCANNER_PROTOCOL_VERSION, stages: [integrity, signature, evaluateFormat(report), evaluateStaticScan(report)], facts };
}
