// The node's quarantine policy, a Model's stricter-only overrides, and the policy digest recorded in
// every manifest: SHA-256 over the canonical JSON of the effective policy and of every rule and
// threshold the checks apply, so a manifest says exactly under which rules a model was trusted.
import { createHash } from 'node:crypto';
import { canonicalJson } from '../../../api/canonical-json.js';
import type { QuarantineOverrides } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { BYTE_PATTERN_RULES } from './byte-patterns.js';
import { CHAT_TEMPLATE_PATTERNS, MAX_CHAT_TEMPLATE_BYTES } from './chat-template.js';
import { ENTROPY_SAMPLE_BYTES, MAX_ENTROPY_BITS_PER_BYTE } from './entropy.js';
import { DEFAULT_GGUF_LIMITS } from './gguf-parser.js';
import type { BlockedDigest } from './stage-checks.js';
import { WEIGHT_STATS_LIMITS } from './weight-stats.js';

/** Fleet limit on any artifact (the Model CRD's maximum). */
export const MAX_ARTIFACT_BYTES = 64 * 1024 ** 3;
/** SecAI OS smoke_test_max_score bound. */
export const MAX_SMOKE_SCORE = 0.3;

export interface FetchPolicy {
  timeoutMs: number;
  /** Time allowed without a single byte arriving. */
  idleTimeoutMs: number;
  maxRedirects: number;
  /** Redirects stay on the same scheme, host and port unless this is set. */
  allowCrossOriginRedirects: boolean;
}

export interface ScannerPolicy {
  /** Wall-clock limit: base plus per GiB of artifact. */
  timeoutMs: number;
  timeoutMsPerGiB: number;
  cpuSeconds: number;
  cpuSecondsPerGiB: number;
  /** RLIMIT_DATA: writable memory, which V8 code ranges and heaps count against. */
  dataBytes: number;
  /** RLIMIT_AS: address space (V8 reserves a lot of it without using it). */
  addressSpaceBytes: number;
  /** RLIMIT_FSIZE: the scanner writes nothing but its temporary files. */
  fileSizeBytes: number;
}

export interface QuarantinePolicy {
  maxSizeBytes: number;
  requireSignature: boolean;
  blockedDigests: BlockedDigest[];
  smokeTest: { enabled: boolean; maxScore: number };
  fetch: FetchPolicy;
  scanner: ScannerPolicy;
}

export const DEFAULT_QUARANTINE_POLICY: QuarantinePolicy = {
  maxSizeBytes: MAX_ARTIFACT_BYTES,
  requireSignature: false,
  blockedDigests: [],
  smokeTest: { enabled: false, maxScore: MAX_SMOKE_SCORE },
  fetch: { timeoutMs: 2 * 60 * 60 * 1000, idleTimeoutMs: 60_000, maxRedirects: 8, allowCrossOriginRedirects: false },
  scanner: {
    timeoutMs: 60_000,
    timeoutMsPerGiB: 30_000,
    cpuSeconds: 60,
    cpuSecondsPerGiB: 20,
    dataBytes: 2 * 1024 ** 3,
    addressSpaceBytes: 16 * 1024 ** 3,
    fileSizeBytes: 64 * 1024 ** 2,
  },
};

/** Applies a Model's overrides; each can only make the policy stricter. */
export function applyOverrides(policy: QuarantinePolicy, overrides: QuarantineOverrides | undefined): QuarantinePolicy {
  if (!overrides) return policy;
  const maxSizeBytes = overrides.maxSizeBytes > 0 ? Math.min(policy.maxSizeBytes, overrides.maxSizeBytes) : policy.maxSizeBytes;
  const smokeTest = overrides.smokeTest
    ? { enabled: true, maxScore: Math.max(0, Math.min(policy.smokeTest.maxScore, overrides.smokeTestMaxScore)) }
    : policy.smokeTest;
  return { ...policy, maxSizeBytes, smokeTest };
}

/** Everything the verdict depends on besides the artifact, as canonical JSON input. */
function policyMaterial(policy: QuarantinePolicy): unknown {
  return {
    version: 1,
    policy: { ...policy, blockedDigests: [...policy.blockedDigests].sort((a, b) => (a.sha256 < b.sha256 ? -1 : a.sha256 > b.sha256 ? 1 : 0)) },
    gguf: DEFAULT_GGUF_LIMITS,
    chatTemplate: { maxBytes: MAX_CHAT_TEMPLATE_BYTES, patterns: CHAT_TEMPLATE_PATTERNS.map((p) => p.source) },
    bytePatterns: BYTE_PATTERN_RULES.map((r) => ({ rule: r.name, anchors: r.anchors.map((a) => ({ text: a.text, caseInsensitive: a.caseInsensitive, before: a.before, after: a.after, scope: a.scope, requireAll: a.requireAll.map((p) => p.source) })) })),
    entropy: { sampleBytes: ENTROPY_SAMPLE_BYTES, maxBitsPerByte: MAX_ENTROPY_BITS_PER_BYTE },
    weights: WEIGHT_STATS_LIMITS,
  };
}

export function policyDigest(policy: QuarantinePolicy): string {
  return createHash('sha256').update(canonicalJson(policyMaterial(policy))).digest('hex');
}
