// What the agent sends the sandboxed scanner (a job on stdin) and what it reads back (an outcome
// on stdout). The outcome comes from a process that parsed hostile bytes, so the parent accepts
// only this exact shape with bounded values; anything else is ScannerOutputInvalid.
import type { SignaturePolicy } from './signature.js';
import { SHA256_HEX, type BlockedDigest, type Pin } from './stage-checks.js';
import { Reason, Stage, type StageName, type StageResult } from './verdict.js';

export const SCANNER_PROTOCOL_VERSION = 2;
export const MAX_JOB_BYTES = 16 * 1024 * 1024;
export const MAX_OUTCOME_BYTES = 1024 * 1024;
/** Where the artifact is mounted read-only inside the sandbox. */
export const SANDBOX_ARTIFACT_PATH = '/quarantine/artifact';

/** The verdict job: the one pass and the Integrity, Signature, Format and StaticScan stages. */
export interface ScanJob {
  version: number;
  artifactPath: string;
  pin: Pin;
  blockedDigests: BlockedDigest[];
  requireSignature: boolean;
  signature?: { bundleJson: string; policy: SignaturePolicy };
  /**
   * The artifact is still being downloaded into its staging file, which will hold `sizeBytes`:
   * after the job's line, stdin carries how many leading bytes are written, one decimal number a
   * line, and ends once the download is complete (scanner-main.ts).
   */
  follow?: { sizeBytes: number };
}

/** The manifest job, for an artifact that passed every check: its per-tensor hash tree. */
export interface TensorTreeJob {
  version: number;
  artifactPath: string;
}

/** What goes to the scanner on stdin: a job and which kind it is. */
export type ScannerJob = ({ kind: 'verdict' } & ScanJob) | ({ kind: 'tensor-tree' } & TensorTreeJob);

/** Facts the manifest records. */
export interface ScanFacts {
  sha256: string;
  sizeBytes: number;
  tensorCount?: number;
  scanMs: number;
}

export interface ScanOutcome {
  version: number;
  /** Integrity, Signature, Format and StaticScan, in that order. */
  stages: StageResult[];
  facts: ScanFacts;
}

export type TensorTreeOutcome =
  | { version: number; status: 'ok'; sizeBytes: number; tensorCount: number; tensorMerkleRoot: string; treeMs: number }
  /** The file no longer is what the verdict pass read: it changed, or its header or layout no longer holds. */
  | { version: number; status: 'changed'; message: string };

export const SCANNER_STAGES: readonly StageName[] = [Stage.Integrity, Stage.Signature, Stage.Format, Stage.StaticScan];
const REASONS = new Set<string>(Object.values(Reason));
const MAX_MESSAGE = 1024;
const MAX_DETAILS = 16;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function validStage(v: unknown, expected: StageName): v is StageResult {
  if (!isRecord(v)) return false;
  const keys = Object.keys(v);
  if (!keys.every((k) => ['stage', 'status', 'reason', 'message', 'details'].includes(k))) return false;
  if (v.stage !== expected || !['passed', 'failed', 'skipped'].includes(v.status as string)) return false;
  if (typeof v.reason !== 'string' || !REASONS.has(v.reason)) return false;
  if ((v.status === 'passed') !== (v.reason === Reason.Passed)) return false;
  if (typeof v.message !== 'string' || v.message.length > MAX_MESSAGE) return false;
  if (v.details !== undefined) {
    if (!isRecord(v.details) || Object.keys(v.details).length > MAX_DETAILS) return false;
    for (const [k, d] of Object.entries(v.details)) {
      if (k.length > 64) return false;
      if (!(d === null || typeof d === 'boolean' || (typeof d === 'number' && Number.isFinite(d)) || (typeof d === 'string' && d.length <= 256))) return false;
    }
  }
  return true;
}

/** The JSON value of a printed outcome, or undefined when it is too long or not JSON. */
function parseBounded(text: string): unknown {
  if (text.length > MAX_OUTCOME_BYTES) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The outcome if `text` is exactly a valid one, else undefined. */
export function parseScanOutcome(text: string): ScanOutcome | undefined {
  const v = parseBounded(text);
  if (!isRecord(v) || v.version !== SCANNER_PROTOCOL_VERSION || !Array.isArray(v.stages) || !isRecord(v.facts)) return undefined;
  if (v.stages.length !== SCANNER_STAGES.length || !v.stages.every((s, i) => validStage(s, SCANNER_STAGES[i]!))) return undefined;
  const f = v.facts;
  if (typeof f.sha256 !== 'string' || !SHA256_HEX.test(f.sha256)) return undefined;
  if (!Number.isSafeInteger(f.sizeBytes) || (f.sizeBytes as number) < 0) return undefined;
  if (f.tensorCount !== undefined && !Number.isSafeInteger(f.tensorCount)) return undefined;
  if (typeof f.scanMs !== 'number' || !Number.isFinite(f.scanMs)) return undefined;
  const facts: ScanFacts = { sha256: f.sha256, sizeBytes: f.sizeBytes as number, scanMs: f.scanMs };
  if (f.tensorCount !== undefined) facts.tensorCount = f.tensorCount as number;
  return { version: SCANNER_PROTOCOL_VERSION, stages: v.stages as StageResult[], facts };
}

/** The tree outcome if `text` is exactly a valid one, else undefined. */
export function parseTensorTreeOutcome(text: string): TensorTreeOutcome | undefined {
  const v = parseBounded(text);
  if (!isRecord(v) || v.version !== SCANNER_PROTOCOL_VERSION) return undefined;
  if (v.status === 'changed') {
    if (Object.keys(v).length !== 3 || typeof v.message !== 'string' || v.message.length > MAX_MESSAGE) return undefined;
    return { version: SCANNER_PROTOCOL_VERSION, status: 'changed', message: v.message };
  }
  if (v.status !== 'ok' || Object.keys(v).length !== 6) return undefined;
  if (!Number.isSafeInteger(v.sizeBytes) || (v.sizeBytes as number) < 0) return undefined;
  if (!Number.isSafeInteger(v.tensorCount) || (v.tensorCount as number) < 0) return undefined;
  if (typeof v.tensorMerkleRoot !== 'string' || !SHA256_HEX.test(v.tensorMerkleRoot)) return undefined;
  if (typeof v.treeMs !== 'number' || !Number.isFinite(v.treeMs)) return undefined;
  return { version: SCANNER_PROTOCOL_VERSION, status: 'ok', sizeBytes: v.sizeBytes as number, tensorCount: v.tensorCount as number, tensorMerkleRoot: v.tensorMerkleRoot, treeMs: v.treeMs };
}
