// What a node reports, bounded and validated into the shapes of SecAINode status. Reports come from
// a node we do not trust: every list is capped and deduplicated, every string truncated and every
// digest checked, so that a status write never fails validation because of what an agent sent.
import type {
  AgentStatus,
  NodeAttestationStatus,
  NodeDutyStatus,
  NodeEgressStatus,
  NodeModelStatus,
  NodeServiceStatus,
  NodeTorStatus,
  NodeVaultStatus,
} from '../../../api/gen/crd-types.js';
import { DUTY_NAMES, DutyReason, isDriftKind, isDutyName, isDutyReason } from '../../../api/proto/duty-results.js';
import {
  DutyStatus,
  EgressMode,
  ModelState,
  SecureBootState,
  ServiceState,
  TorState,
  type Hello,
  type Report,
  type SignedTreeHead,
} from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { rfc3339Seconds } from '../runtime/conditions.js';

/** The SecAINode schema's bounds. */
const LIMITS = { models: 256, services: 64, reasons: 32, capabilities: 32, pcrs: 24, error: 1024 } as const;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface ReportedState {
  appliedGeneration: number;
  appliedDigest?: string;
  /** Why the agent refused the latest plan it was sent. */
  planError?: string;
  /** Each duty's last outcome, in DUTY_NAMES order. */
  duties: NodeDutyStatus[];
  tor?: NodeTorStatus;
  egress?: NodeEgressStatus;
  vault?: NodeVaultStatus;
  attestation?: NodeAttestationStatus;
  models: NodeModelStatus[];
  inference: NodeServiceStatus[];
  /** The signed tree head the report carried, bounded; verified by the audit log controller before status shows it. */
  auditHead?: SignedTreeHead;
  /** When the operator received the report (ms). */
  receivedAt: number;
}

export interface AgentIdentity {
  version?: string;
  protocolVersion?: number;
  capabilities: string[];
}

// Decoded messages have every field, but nothing here relies on that: a wrong type reads as empty.
function text(value: unknown, max: number): string | undefined {
  if (typeof value !== 'string' || !value) return undefined;
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

function digest(value: unknown): string | undefined {
  return typeof value === 'string' && SHA256_HEX.test(value) ? value : undefined;
}

const flag = (value: unknown): boolean => value === true;
const list = <T>(value: readonly T[] | undefined): readonly T[] => (Array.isArray(value) ? value : []);

const MODEL_STATES: Partial<Record<ModelState, NodeModelStatus['state']>> = {
  [ModelState.MODEL_STATE_PENDING]: 'Pending',
  [ModelState.MODEL_STATE_FETCHING]: 'Fetching',
  [ModelState.MODEL_STATE_SCANNING]: 'Scanning',
  [ModelState.MODEL_STATE_TRUSTED]: 'Trusted',
  [ModelState.MODEL_STATE_REJECTED]: 'Rejected',
  [ModelState.MODEL_STATE_CONTAINED]: 'Contained',
};

const SERVICE_STATES: Partial<Record<ServiceState, NodeServiceStatus['state']>> = {
  [ServiceState.SERVICE_STATE_PENDING]: 'Pending',
  [ServiceState.SERVICE_STATE_STARTING]: 'Starting',
  [ServiceState.SERVICE_STATE_SERVING]: 'Serving',
  [ServiceState.SERVICE_STATE_STOPPED]: 'Stopped',
  [ServiceState.SERVICE_STATE_FAILED]: 'Failed',
};

function modelsOf(report: Report): NodeModelStatus[] {
  const byName = new Map<string, NodeModelStatus>();
  for (const m of list(report.models)) {
    if (byName.size >= LIMITS.models) break;
    const sha256 = digest(m.sha256);
    const state = MODEL_STATES[m.state];
    const name = text(m.name, 253);
    if (!sha256 || !state || !name || byName.has(name)) continue;
    byName.set(name, {
      name,
      sha256,
      state,
      ...(text(m.stage, 64) ? { stage: text(m.stage, 64) } : {}),
      ...(text(m.reason, 128) ? { reason: text(m.reason, 128) } : {}),
      ...(text(m.message, 1024) ? { message: text(m.message, 1024) } : {}),
    });
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

function servicesOf(report: Report): NodeServiceStatus[] {
  const byName = new Map<string, NodeServiceStatus>();
  for (const s of list(report.services)) {
    if (byName.size >= LIMITS.services) break;
    const service = text(s.name, 253);
    const model = text(s.model, 253);
    const state = SERVICE_STATES[s.state];
    if (!service || !model || !state || byName.has(service)) continue;
    byName.set(service, {
      service,
      model,
      state,
      ...(text(s.reason, 128) ? { reason: text(s.reason, 128) } : {}),
      ...(text(s.message, 1024) ? { message: text(s.message, 1024) } : {}),
      ...(Number.isInteger(s.gpuLayers) && s.gpuLayers >= -1 && s.gpuLayers <= 1024 ? { gpuLayers: s.gpuLayers } : {}),
    });
  }
  return [...byName.values()].sort((a, b) => (a.service < b.service ? -1 : 1));
}

const DUTY_STATES: Partial<Record<DutyStatus, NodeDutyStatus['state']>> = {
  [DutyStatus.DUTY_STATUS_OK]: 'OK',
  [DutyStatus.DUTY_STATUS_PROGRESSING]: 'Progressing',
  [DutyStatus.DUTY_STATUS_DRIFTED]: 'Drifted',
  [DutyStatus.DUTY_STATUS_FAILED]: 'Failed',
};

const TOR_STATES: Partial<Record<TorState, NodeTorStatus['state']>> = {
  [TorState.TOR_STATE_NOT_CONFIGURED]: 'NotConfigured',
  [TorState.TOR_STATE_AVAILABLE]: 'Available',
  [TorState.TOR_STATE_UNAVAILABLE]: 'Unavailable',
};

function torOf(report: Report): NodeTorStatus | undefined {
  const t = report.tor;
  const state = t ? TOR_STATES[t.state] : undefined;
  if (!t || !state) return undefined;
  const percent = Number.isInteger(t.bootstrapPercent) && t.bootstrapPercent >= 0 && t.bootstrapPercent <= 100 ? t.bootstrapPercent : 0;
  return {
    state,
    bootstrapPercent: percent,
    ...(text(t.reason, 64) ? { reason: text(t.reason, 64) } : {}),
    ...(text(t.message, 1024) ? { message: text(t.message, 1024) } : {}),
    ...(count(t.restarts) > 0 ? { restarts: count(t.restarts) } : {}),
  };
}

/** A timestamp an agent sent, if it is a plausible one (after 2001, before 2100). */
function instant(value: unknown): string | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 1e12 && value < 4.1e12 ? rfc3339Seconds(value) : undefined;
}

function dutiesOf(report: Report): NodeDutyStatus[] {
  const byName = new Map<string, NodeDutyStatus>();
  for (const d of list(report.duties)) {
    if (byName.size >= DUTY_NAMES.length) break;
    const state = DUTY_STATES[d.status];
    if (!isDutyName(d.duty) || !state || byName.has(d.duty)) continue;
    const drift = d.lastDrift;
    const detectedAt = instant(drift?.detectedUnixMillis);
    const repairedAt = instant(drift?.repairedUnixMillis);
    byName.set(d.duty, {
      duty: d.duty,
      state,
      // An unknown code is not trusted to mean success.
      reason: isDutyReason(d.reason) ? d.reason : DutyReason.Failed,
      ...(text(d.message, 1024) ? { message: text(d.message, 1024) } : {}),
      ...(count(d.planGeneration) > 0 ? { planGeneration: count(d.planGeneration) } : {}),
      ...(digest(d.readBackDigest) ? { readBackDigest: d.readBackDigest } : {}),
      ...(instant(d.checkedUnixMillis) ? { checkedAt: instant(d.checkedUnixMillis) } : {}),
      ...(count(d.consecutiveFailures) > 0 ? { consecutiveFailures: Math.min(count(d.consecutiveFailures), 1_000_000) } : {}),
      ...(count(d.drifts) > 0 ? { drifts: count(d.drifts) } : {}),
      ...(drift && isDriftKind(drift.kind) && detectedAt
        ? { lastDrift: { kind: drift.kind, ...(text(drift.detail, 512) ? { detail: text(drift.detail, 512) } : {}), detectedAt, ...(repairedAt ? { repairedAt } : {}) } }
        : {}),
    });
  }
  return DUTY_NAMES.flatMap((name) => (byName.has(name) ? [byName.get(name)!] : []));
}

/** Longer fields than an Ed25519 key, a SHA-256 root or a signature can hold are cut (and then fail verification). */
const MAX_AUDIT_FIELD_BYTES = 128;

/**
 * A copy with memory of its own, for bytes kept as long as a node is known. Buffer.from copies
 * small values into a shared pool (64 KiB in Node 24), and one long-lived slice keeps the whole
 * pool alive: at 1,000 agents the audit keys and heads alone pinned some 10 MB of pools.
 */
export function ownedCopy(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  copy.set(bytes);
  return copy;
}

const boundedBytes = (value: unknown): Buffer => (value instanceof Uint8Array ? ownedCopy(value.subarray(0, MAX_AUDIT_FIELD_BYTES)) : Buffer.alloc(0));

/** A copy of a reported tree head whose byte fields cannot hold more than a well-formed head needs. */
export function boundedTreeHead(head: SignedTreeHead | undefined): SignedTreeHead | undefined {
  if (!head) return undefined;
  const number = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : -1);
  return {
    treeSize: number(head.treeSize),
    rootHash: boundedBytes(head.rootHash),
    timestampUnixMillis: number(head.timestampUnixMillis),
    signature: boundedBytes(head.signature),
  };
}

/** The audit public key of a Hello, bounded like the heads. */
export function boundedAuditKey(hello: Hello): Buffer {
  return boundedBytes(hello.auditPublicKey);
}

export function sanitizeReport(report: Report, receivedAt: number): ReportedState {
  const planError = text(report.planError, LIMITS.error);
  const egress: NodeEgressStatus | undefined = report.egress
    ? {
        ...(report.egress.mode === EgressMode.EGRESS_MODE_ENFORCE ? { mode: 'Enforce' as const } : {}),
        ...(report.egress.mode === EgressMode.EGRESS_MODE_AUDIT ? { mode: 'Audit' as const } : {}),
        ...(digest(report.egress.rulesetDigest) ? { rulesetDigest: report.egress.rulesetDigest } : {}),
        droppedPackets: count(report.egress.droppedPackets),
        auditedPackets: count(report.egress.auditedPackets),
        allowEntries: count(report.egress.allowEntries),
      }
    : undefined;
  const vault: NodeVaultStatus | undefined = report.vault
    ? {
        encrypted: flag(report.vault.encrypted),
        sealed: flag(report.vault.sealed),
        locked: flag(report.vault.locked),
        compliant: flag(report.vault.compliant),
        ...(text(report.vault.policy, 253) ? { policy: text(report.vault.policy, 253) } : {}),
        lockEpoch: count(report.vault.lockEpoch),
        ...(list(report.vault.reasons).length
          ? { reasons: list(report.vault.reasons).slice(0, LIMITS.reasons).map((r) => text(r, 256) ?? '').filter(Boolean) }
          : {}),
      }
    : undefined;
  const a = report.attestation;
  const attestation: NodeAttestationStatus | undefined = a
    ? {
        secureBoot:
          a.secureBoot === SecureBootState.SECURE_BOOT_STATE_ENABLED
            ? 'Enabled'
            : a.secureBoot === SecureBootState.SECURE_BOOT_STATE_DISABLED
              ? 'Disabled'
              : 'Unknown',
        tpmPresent: flag(a.tpmPresent),
        ...(text(a.pcrBank, 16) ? { pcrBank: text(a.pcrBank, 16) } : {}),
        ...(digest(a.pcrDigest) ? { pcrDigest: a.pcrDigest } : {}),
        ...(list(a.mismatchedPcrs).length
          ? { mismatchedPcrs: [...new Set(list(a.mismatchedPcrs).filter((p) => Number.isInteger(p) && p >= 0 && p <= 23))].sort((x, y) => x - y).slice(0, LIMITS.pcrs) }
          : {}),
        ...(count(a.checkedUnixMillis) > 0 && a.checkedUnixMillis < 8.64e15 ? { checkedAt: rfc3339Seconds(a.checkedUnixMillis) } : {}),
      }
    : undefined;
  const auditHead = boundedTreeHead(report.auditHead);
  return {
    appliedGeneration: count(report.planGeneration),
    ...(digest(report.planDigest) ? { appliedDigest: report.planDigest } : {}),
    ...(planError ? { planError } : {}),
    duties: dutiesOf(report),
    ...(torOf(report) ? { tor: torOf(report) } : {}),
    ...(egress ? { egress } : {}),
    ...(vault ? { vault } : {}),
    ...(attestation ? { attestation } : {}),
    models: modelsOf(report),
    inference: servicesOf(report),
    ...(auditHead ? { auditHead } : {}),
    receivedAt,
  };
}

/** The plan an agent's Hello says it enforces, when it names one with a well-formed digest. */
export function appliedPlanOf(hello: Hello): { generation: number; digest: string } | undefined {
  const generation = count(hello.appliedPlanGeneration);
  const appliedDigest = digest(hello.appliedPlanDigest);
  return generation > 0 && appliedDigest ? { generation, digest: appliedDigest } : undefined;
}

export function sanitizeHello(hello: Hello): AgentIdentity {
  return {
    ...(text(hello.agentVersion, 64) ? { version: text(hello.agentVersion, 64) } : {}),
    ...(Number.isInteger(hello.protocolVersion) && hello.protocolVersion >= 0 && hello.protocolVersion <= 1000
      ? { protocolVersion: hello.protocolVersion }
      : {}),
    capabilities: [...new Set(list(hello.capabilities).map((c) => text(c, 64) ?? '').filter(Boolean))].sort().slice(0, LIMITS.capabilities),
  };
}

/** Agent status from what the channel knows now. */
export function agentStatusOf(identity: AgentIdentity | undefined, connected: boolean, lastSeen: string | undefined): AgentStatus {
  return {
    ...(identity?.version ? { version: identity.version } : {}),
    ...(identity?.protocolVersion !== undefined ? { protocolVersion: identity.protocolVersion } : {}),
    connected,
    ...(lastSeen ? { lastSeen } : {}),
    ...(identity?.capabilities.length ? { capabilities: identity.capabilities } : {}),
  };
}
