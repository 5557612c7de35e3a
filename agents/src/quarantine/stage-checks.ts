// Pure verdicts of the Integrity, Format and StaticScan stages from what the one pass found.
import { MAX_ENTROPY_BITS_PER_BYTE } from './entropy.js';
import type { ScanReport } from './one-pass-scan.js';
import { failed, passed, Reason, Stage, type StageResult } from './verdict.js';
import { findWeightAnomaly } from './weight-stats.js';

export interface Pin {
  /** 64 lowercase hex digits. */
  sha256: string;
  /** Exact size; 0 or absent when not pinned. */
  sizeBytes?: number;
}

export interface BlockedDigest {
  sha256: string;
  reason: string;
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;

export function evaluateIntegrity(found: { sha256: string; sizeBytes: number }, pin: Pin, blocked: readonly BlockedDigest[]): StageResult {
  if (!SHA256_HEX.test(pin.sha256)) return failed(Stage.Integrity, Reason.PinInvalid, 'the pinned SHA-256 is not 64 lowercase hex digits');
  // Blocked whatever the pin says: a revoked artifact stays revoked under any name (SecAI OS hash_pin).
  const block = blocked.find((b) => b.sha256 === found.sha256);
  if (block) return failed(Stage.Integrity, Reason.DigestBlocked, `the artifact is blocked by policy: ${block.reason}`);
  if (pin.sizeBytes && pin.sizeBytes !== found.sizeBytes) {
    return failed(Stage.Integrity, Reason.SizeMismatch, `size mismatch: expected ${pin.sizeBytes} bytes, got ${found.sizeBytes}`);
  }
  if (found.sha256 !== pin.sha256) {
    return failed(Stage.Integrity, Reason.DigestMismatch, `hash mismatch: expected ${pin.sha256.slice(0, 16)}..., got ${found.sha256.slice(0, 16)}...`);
  }
  return passed(Stage.Integrity, 'size and SHA-256 match the pin', { sha256: found.sha256, sizeBytes: found.sizeBytes });
}

export function evaluateFormat(report: ScanReport): StageResult {
  if (report.pickle) return failed(Stage.Format, Reason.PickleDetected, `the file starts like a pickle (${report.pickle}), not a GGUF model`);
  if (report.header.status === 'invalid') return failed(Stage.Format, report.header.reason, report.header.message, { offset: report.header.offset });
  if (report.layout) return failed(Stage.Format, report.layout.reason, report.layout.message);
  if (report.paddingNotZeroAt !== undefined) return failed(Stage.Format, Reason.PaddingNotZero, `alignment padding holds non-zero bytes at offset ${report.paddingNotZeroAt}`);
  return passed(Stage.Format, `GGUF v${report.header.version}, ${report.header.tensorCount} tensors, ${report.header.keyCount} metadata keys`, {
    version: report.header.version,
    tensors: report.header.tensorCount,
    keys: report.header.keyCount,
  });
}

export function evaluateStaticScan(report: ScanReport): StageResult {
  if (report.chatTemplate) return failed(Stage.StaticScan, report.chatTemplate.reason, report.chatTemplate.message, { key: report.chatTemplate.key });
  const match = report.patterns[0];
  if (match) return failed(Stage.StaticScan, match.reason, `byte pattern ${match.rule} at offset ${match.offset}`, { rule: match.rule, offset: match.offset });
  const hot = report.entropy.find((e) => e.bitsPerByte > MAX_ENTROPY_BITS_PER_BYTE);
  if (hot) {
    return failed(Stage.StaticScan, Reason.HighEntropy, `possible hidden payload: the ${hot.name} sample has ${hot.bitsPerByte.toFixed(4)} bits/byte (limit ${MAX_ENTROPY_BITS_PER_BYTE})`, {
      sample: hot.name,
      bitsPerByte: Number(hot.bitsPerByte.toFixed(4)),
    });
  }
  const anomaly = findWeightAnomaly(report.weights);
  if (anomaly) return failed(Stage.StaticScan, anomaly.reason, anomaly.message);
  const maxEntropy = Math.max(0, ...report.entropy.map((e) => e.bitsPerByte));
  return passed(Stage.StaticScan, 'no injection, payload or weight anomaly found', {
    maxEntropy: Number(maxEntropy.toFixed(4)),
    tensorsSampled: report.weights.length,
  });
}
