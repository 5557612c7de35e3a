// The quarantine verdict: every stage with its result and a stable reason code. Stage names and
// reason codes are a contract — the agent reports them, the operator copies them into CR status,
// alerts match on them — so they are constants here and never renamed.

/** The stages, in verdict order: the first failing one is the verdict. */
export const Stage = {
  /** Acquire the artifact: URL policy, transfer limits, a private staging file. */
  Fetch: 'Fetch',
  /** The sandboxed child that reads the untrusted bytes ran to completion. */
  Sandbox: 'Sandbox',
  /** Size pin, SHA-256 pin, blocked digests. */
  Integrity: 'Integrity',
  /** Offline sigstore verification over the digest of the one pass. */
  Signature: 'Signature',
  /** GGUF structure: magic, version, bounds, layout (SecAI OS format_gate). */
  Format: 'Format',
  /** Chat template, byte patterns, entropy, weight anomalies (SecAI OS static_scan). */
  StaticScan: 'StaticScan',
  /** Adversarial prompts answered by the model in the inference sandbox. */
  SmokeTest: 'SmokeTest',
  /** Atomic move into the content-addressed trusted store. */
  Promotion: 'Promotion',
} as const;
export type StageName = (typeof Stage)[keyof typeof Stage];

export const STAGE_ORDER: readonly StageName[] = [
  Stage.Fetch,
  Stage.Sandbox,
  Stage.Integrity,
  Stage.Signature,
  Stage.Format,
  Stage.StaticScan,
  Stage.SmokeTest,
  Stage.Promotion,
];

/** Reason codes, CamelCase like Kubernetes condition reasons. */
export const Reason = {
  Passed: 'Passed',
  /** The stage did not run because an earlier one failed. */
  NotReached: 'NotReached',
  /** The stage is not configured for this model (no signature, smoke test off). */
  NotRequested: 'NotRequested',

  // Fetch
  SourceInvalid: 'SourceInvalid',
  SchemeNotAllowed: 'SchemeNotAllowed',
  HostNotAllowed: 'HostNotAllowed',
  RedirectNotAllowed: 'RedirectNotAllowed',
  TooManyRedirects: 'TooManyRedirects',
  HttpStatus: 'HttpStatus',
  FetchTimedOut: 'FetchTimedOut',
  TooLarge: 'TooLarge',
  TransferFailed: 'TransferFailed',
  NotFound: 'NotFound',
  NotRegularFile: 'NotRegularFile',
  /** OCI sources: a blob or manifest whose bytes do not hash to the digest asked for. */
  BlobDigestMismatch: 'BlobDigestMismatch',
  ManifestDigestMismatch: 'ManifestDigestMismatch',
  ManifestTooLarge: 'ManifestTooLarge',
  OciManifestInvalid: 'OciManifestInvalid',
  TooManyLayers: 'TooManyLayers',
  /** OCI sources: no single GGUF layer of a layout the node reads (ModelPack raw weights, Docker model). */
  LayoutUnsupported: 'LayoutUnsupported',
  /** OCI sources: the GGUF layer's digest is not the Model's pinned SHA-256. */
  LayerNotPinned: 'LayerNotPinned',
  /** OCI sources: the Model requires a cosign signature and no sigstore bundle refers to the manifest. */
  OciSignatureMissing: 'OciSignatureMissing',
  /** Modelcar image layers: a tar that cannot be read, too many entries, a path out of the root, a link under models/. */
  ArchiveInvalid: 'ArchiveInvalid',
  ArchiveTooManyEntries: 'ArchiveTooManyEntries',
  ArchivePathEscape: 'ArchivePathEscape',
  ArchiveLinkRefused: 'ArchiveLinkRefused',
  /** OCI sources: the registry (or its token realm) answers 401 and the pull has no credential. */
  RegistryAuthRequired: 'RegistryAuthRequired',
  /** OCI sources: the registry or its token realm refused the credential of the pull Secret. */
  RegistryAuthFailed: 'RegistryAuthFailed',

  // Sandbox
  SandboxUnavailable: 'SandboxUnavailable',
  ScannerCrashed: 'ScannerCrashed',
  ScannerKilled: 'ScannerKilled',
  ScannerTimedOut: 'ScannerTimedOut',
  ScannerOutputInvalid: 'ScannerOutputInvalid',

  // Integrity
  PinInvalid: 'PinInvalid',
  SizeMismatch: 'SizeMismatch',
  DigestMismatch: 'DigestMismatch',
  DigestBlocked: 'DigestBlocked',

  // Signature
  SignatureRequired: 'SignatureRequired',
  SignaturePolicyInvalid: 'SignaturePolicyInvalid',
  BundleInvalid: 'BundleInvalid',
  DigestNotSigned: 'DigestNotSigned',
  SignatureInvalid: 'SignatureInvalid',
  KeyMismatch: 'KeyMismatch',
  CertificateUntrusted: 'CertificateUntrusted',
  IdentityMismatch: 'IdentityMismatch',
  TimestampInvalid: 'TimestampInvalid',
  TransparencyLogInvalid: 'TransparencyLogInvalid',
  AlgorithmUnsupported: 'AlgorithmUnsupported',
  /** An OpenSSF model signature: the statement is not the model_signing predicate. */
  PredicateTypeMismatch: 'PredicateTypeMismatch',
  /** An OpenSSF model signature: the signed manifest is malformed or inconsistent. */
  ManifestInvalid: 'ManifestInvalid',
  /** An OpenSSF model signature: the signed manifest does not name this file. */
  ModelFileNotSigned: 'ModelFileNotSigned',

  // Format
  FormatNotAllowed: 'FormatNotAllowed',
  PickleDetected: 'PickleDetected',
  BadMagic: 'BadMagic',
  UnsupportedVersion: 'UnsupportedVersion',
  HeaderTruncated: 'HeaderTruncated',
  HeaderTooLarge: 'HeaderTooLarge',
  TooManyKeys: 'TooManyKeys',
  TooManyTensors: 'TooManyTensors',
  NoTensors: 'NoTensors',
  KeyInvalid: 'KeyInvalid',
  DuplicateKey: 'DuplicateKey',
  ValueTypeUnknown: 'ValueTypeUnknown',
  ValueInvalid: 'ValueInvalid',
  StringTooLong: 'StringTooLong',
  ArrayTooLong: 'ArrayTooLong',
  AlignmentInvalid: 'AlignmentInvalid',
  TensorNameInvalid: 'TensorNameInvalid',
  DuplicateTensorName: 'DuplicateTensorName',
  TensorRankInvalid: 'TensorRankInvalid',
  TensorDimensionInvalid: 'TensorDimensionInvalid',
  TensorTypeUnknown: 'TensorTypeUnknown',
  TensorShapeInvalid: 'TensorShapeInvalid',
  TensorTooLarge: 'TensorTooLarge',
  TensorMisaligned: 'TensorMisaligned',
  TensorOutOfBounds: 'TensorOutOfBounds',
  TensorOverlap: 'TensorOverlap',
  TensorGap: 'TensorGap',
  DataTruncated: 'DataTruncated',
  TrailingData: 'TrailingData',
  PaddingNotZero: 'PaddingNotZero',

  // StaticScan
  ChatTemplateInjection: 'ChatTemplateInjection',
  ChatTemplateTooLong: 'ChatTemplateTooLong',
  ShellDropper: 'ShellDropper',
  ReverseShell: 'ReverseShell',
  PrivateKey: 'PrivateKey',
  EncodedPowerShell: 'EncodedPowerShell',
  HighEntropy: 'HighEntropy',
  WeightsNonFinite: 'WeightsNonFinite',
  WeightsMeanAnomaly: 'WeightsMeanAnomaly',
  WeightsConstant: 'WeightsConstant',
  WeightsKurtosisAnomaly: 'WeightsKurtosisAnomaly',
  WeightsMostlyZero: 'WeightsMostlyZero',

  // SmokeTest
  SmokeScoreExceeded: 'SmokeScoreExceeded',
  SmokeCriticalFlagged: 'SmokeCriticalFlagged',
  SmokeModelFailed: 'SmokeModelFailed',

  // Promotion
  ArtifactChanged: 'ArtifactChanged',
  StoreConflict: 'StoreConflict',
  PromotionFailed: 'PromotionFailed',
} as const;
export type ReasonCode = (typeof Reason)[keyof typeof Reason];

export type StageStatus = 'passed' | 'failed' | 'skipped';

/** Flat detail values only: counts, names, digests — never model bytes or prompts. */
export type DetailValue = string | number | boolean | null;

export interface StageResult {
  stage: StageName;
  status: StageStatus;
  reason: ReasonCode;
  /** One human-readable line. */
  message: string;
  details?: Record<string, DetailValue>;
}

export interface Verdict {
  trusted: boolean;
  /** The first failing stage and its reason; absent when trusted. */
  stage?: StageName;
  reason?: ReasonCode;
  message?: string;
  /** Every stage in STAGE_ORDER. */
  stages: StageResult[];
  sha256?: string;
  sizeBytes?: number;
}

export function passed(stage: StageName, message = 'passed', details?: Record<string, DetailValue>): StageResult {
  return details ? { stage, status: 'passed', reason: Reason.Passed, message, details } : { stage, status: 'passed', reason: Reason.Passed, message };
}

export function failed(stage: StageName, reason: ReasonCode, message: string, details?: Record<string, DetailValue>): StageResult {
  return details ? { stage, status: 'failed', reason, message, details } : { stage, status: 'failed', reason, message };
}

export function notRequested(stage: StageName, message: string): StageResult {
  return { stage, status: 'skipped', reason: Reason.NotRequested, message };
}

/**
 * Orders the results by STAGE_ORDER, marks every stage after the first failure (and every stage
 * without a result) as not reached, and names the first failure as the verdict.
 */
export function composeVerdict(results: readonly StageResult[], facts: { sha256?: string; sizeBytes?: number } = {}): Verdict {
  const byStage = new Map(results.map((r) => [r.stage, r]));
  const stages: StageResult[] = [];
  let failure: StageResult | undefined;
  for (const stage of STAGE_ORDER) {
    const result = byStage.get(stage);
    if (failure || !result) {
      stages.push({ stage, status: 'skipped', reason: Reason.NotReached, message: failure ? `not reached: ${failure.stage} failed` : 'not reached' });
      continue;
    }
    stages.push(result);
    if (result.status === 'failed') failure = result;
  }
  const trusted = !failure && stages.every((s) => s.status === 'passed' || s.reason === Reason.NotRequested);
  const verdict: Verdict = { trusted, stages, ...facts };
  if (failure) {
    verdict.stage = failure.stage;
    verdict.reason = failure.reason;
    verdict.message = failure.message;
  } else if (!trusted) {
    const missing = stages.find((s) => s.reason === Reason.NotReached);
    verdict.stage = missing?.stage;
    verdict.reason = Reason.NotReached;
    verdict.message = `stage ${missing?.stage} has no result`;
  }
  return verdict;
}
