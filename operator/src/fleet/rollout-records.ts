// The persisted state of each EgressPolicy rollout: the versions of the policy still in force
// somewhere and which nodes have been released to which. It lives in a ConfigMap in the operator's
// namespace (gzip-compressed JSON), so that a restarted operator, or another replica taking over,
// keeps unreleased nodes on the previous version instead of pushing the change everywhere at once.
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { canonicalJson } from '../../../api/canonical-json.js';
import type { EgressPolicy, EgressPolicySpec } from '../../../api/gen/crd-types.js';
import type { EgressPolicyVersion } from '../plan/egress.js';
import type { Informer } from '../runtime/informer.js';
import type { ConfigMap } from './caches.js';
import { MANAGED_BY_LABEL, ROLLOUT_POLICY_ANNOTATION, ROLLOUT_RECORD_LABEL } from './names.js';

/** The parts of a policy spec that shape plans (spec.rollout only shapes the rollout itself). */
export type EffectiveEgressSpec = Omit<EgressPolicySpec, 'rollout'>;

export type RolloutState = 'Progressing' | 'Complete' | 'Stopped';

export interface RolloutRecord {
  policy: string;
  policyUid: string;
  /** Revision → the effective spec, for every revision some node is on. */
  revisions: Record<string, EffectiveEgressSpec>;
  /** The revision of every node not in `released`; absent before the first rollout completes. */
  stable?: string;
  target: string;
  targetGeneration: number;
  /** Node → the revision released to it, and when (ms). */
  released: Record<string, { revision: string; at: number }>;
  state: RolloutState;
  message: string;
  startedAt: number;
}

const RECORD_KEY = 'record.json.gz';
/** A ConfigMap holds at most 1 MiB; keep a margin for metadata. */
export const MAX_RECORD_BYTES = 900 * 1024;
/** Bound on decompression, against a corrupted or hostile record. */
const MAX_RECORD_JSON_BYTES = 32 * 1024 * 1024;

export function effectiveSpec(spec: EgressPolicySpec): EffectiveEgressSpec {
  const { rollout: _rollout, ...effective } = spec;
  return effective;
}

export function revisionOf(spec: EffectiveEgressSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 16);
}

export function recordConfigMapName(policy: string): string {
  const readable = `egress-rollout.${policy}`;
  return readable.length <= 253 ? readable : `egress-rollout.${createHash('sha256').update(policy).digest('hex').slice(0, 32)}`;
}

export function encodeRecord(record: RolloutRecord): string {
  const compressed = gzipSync(Buffer.from(canonicalJson(record), 'utf8'));
  if (compressed.length > MAX_RECORD_BYTES) {
    throw new Error(`rollout record of ${record.policy} is ${compressed.length} bytes compressed, over ${MAX_RECORD_BYTES}`);
  }
  return compressed.toString('base64');
}

export function decodeRecord(cm: ConfigMap): RolloutRecord | undefined {
  const data = cm.binaryData?.[RECORD_KEY];
  if (!data) return undefined;
  try {
    const record = JSON.parse(gunzipSync(Buffer.from(data, 'base64'), { maxOutputLength: MAX_RECORD_JSON_BYTES }).toString('utf8')) as RolloutRecord;
    if (typeof record.policy !== 'string' || typeof record.target !== 'string' || typeof record.revisions !== 'object' || typeof record.released !== 'object') {
      return undefined;
    }
    return record;
  } catch {
    return undefined;
  }
}

export function recordConfigMap(record: RolloutRecord, namespace: string, owner: EgressPolicy): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: recordConfigMapName(record.policy),
      namespace,
      labels: { ...MANAGED_BY_LABEL, [ROLLOUT_RECORD_LABEL]: 'true' },
      annotations: { [ROLLOUT_POLICY_ANNOTATION]: record.policy },
      // Garbage collection removes the record with its policy in clusters that run it; the
      // EgressPolicy controller removes it otherwise.
      ownerReferences: [{ apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid }],
    },
    binaryData: { [RECORD_KEY]: encodeRecord(record) },
  };
}

/**
 * The rollout records as the controllers see them: read from the ConfigMap cache, with the
 * EgressPolicy controller's own writes visible at once (before the watch brings them back).
 */
export class RolloutRecords {
  private readonly written = new Map<string, { record: RolloutRecord; resourceVersion: string }>();
  private readonly listeners = new Set<(policy: string) => void>();
  /** Each record decoded once per version of its ConfigMap: every node's plan reads it. */
  private readonly decoded = new Map<string, { resourceVersion: string | undefined; record: RolloutRecord | undefined }>();

  constructor(private readonly configMaps: Informer<ConfigMap>, private readonly namespace: string) {
    configMaps.addHandler({
      onAdd: (cm) => this.cacheChanged(cm),
      onUpdate: (_, cm) => this.cacheChanged(cm),
      onDelete: (cm) => this.cacheChanged(cm),
    });
  }

  private cacheChanged(cm: ConfigMap): void {
    const policy = cm.metadata.annotations?.[ROLLOUT_POLICY_ANNOTATION];
    if (cm.metadata.labels?.[ROLLOUT_RECORD_LABEL] !== 'true' || !policy) return;
    // Our own write coming back through the watch: the listeners heard of it when it was made.
    if (this.written.get(policy)?.resourceVersion === cm.metadata.resourceVersion) return;
    for (const listener of this.listeners) listener(policy);
  }

  onChange(listener: (policy: string) => void): void {
    this.listeners.add(listener);
  }

  get(policy: string): RolloutRecord | undefined {
    const cm = this.configMaps.get(`${this.namespace}/${recordConfigMapName(policy)}`);
    const mine = this.written.get(policy);
    // Our own write wins until the cache holds it or a later version. resourceVersions are etcd
    // revisions here; when one is not a number the comparison is false and the cache wins.
    if (mine && (!cm || Number(cm.metadata.resourceVersion) < Number(mine.resourceVersion))) return mine.record;
    if (mine) this.written.delete(policy);
    if (!cm || cm.metadata.labels?.[ROLLOUT_RECORD_LABEL] !== 'true') {
      this.decoded.delete(policy);
      return undefined;
    }
    const known = this.decoded.get(policy);
    if (known && known.resourceVersion === cm.metadata.resourceVersion && known.resourceVersion !== undefined) return known.record;
    const record = decodeRecord(cm);
    this.decoded.set(policy, { resourceVersion: cm.metadata.resourceVersion, record });
    return record;
  }

  /** Policies that have a record in the cache. */
  policies(): string[] {
    return this.configMaps
      .list()
      .filter((cm) => cm.metadata.labels?.[ROLLOUT_RECORD_LABEL] === 'true')
      .map((cm) => cm.metadata.annotations?.[ROLLOUT_POLICY_ANNOTATION])
      .filter((p): p is string => typeof p === 'string');
  }

  /** Records a write the EgressPolicy controller just made, and tells the listeners. */
  wrote(record: RolloutRecord, resourceVersion: string): void {
    this.written.set(record.policy, { record, resourceVersion });
    for (const listener of this.listeners) listener(record.policy);
  }

  forgetWritten(policy: string): void {
    this.written.delete(policy);
  }

  /**
   * The version of `policy` in force on `node`: the one released to it, else the stable one; none
   * while the policy has not reached the node (a new policy before its rollout gets there).
   */
  versionFor(policy: EgressPolicy, node: string): { version?: EgressPolicyVersion; revision?: string } {
    const name = policy.metadata.name ?? '';
    const record = this.get(name);
    if (!record || record.policyUid !== policy.metadata.uid) return {};
    const revision = record.released[node]?.revision ?? record.stable;
    const spec = revision ? record.revisions[revision] : undefined;
    return spec && revision ? { version: { name, spec }, revision } : {};
  }
}
