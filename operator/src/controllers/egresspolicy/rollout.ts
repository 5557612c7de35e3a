// One step of an EgressPolicy rollout, as a pure function: given the persisted record, the fleet and
// how far each node has got, decide which nodes to release next and what state the rollout is in.
//
// A changed policy (a new revision of the parts that shape plans) goes first to `canary` nodes;
// once they all enforce it, to the rest in waves, never more than `maxUnavailable` nodes released
// but not yet enforcing at once. A node that reports a plan error, or has not enforced within
// `progressDeadlineSeconds` of its release, has failed; with `stopOnFailure` the rollout stops there
// and released nodes keep what they have, the others the previous version. A new revision starts a
// new rollout from wherever each node is. When every affected node enforces the target, it becomes
// the stable revision. Nodes are taken in an order fixed per policy (a hash of the policy's UID and
// the node name), so that a restart or another replica continues with the same nodes.
import { createHash } from 'node:crypto';
import type { EgressPolicySpec } from '../../../../api/gen/crd-types.js';
import { effectiveSpec, revisionOf, type RolloutRecord } from '../../fleet/rollout-records.js';
import { matchesSelector, type Labels } from '../../plan/label-selector.js';

export const ROLLOUT_DEFAULTS = { canary: 1, maxUnavailable: '25%', stopOnFailure: true, progressDeadlineSeconds: 120 } as const;

export interface RolloutNode {
  name: string;
  labels: Labels;
}

export interface NodeEnforcement {
  /** The node enforces a plan that carries the revision. */
  enforced: boolean;
  /** Why the node could not apply its plan. */
  error?: string;
}

export interface RolloutInputs {
  policy: { name: string; uid: string; generation: number; spec: EgressPolicySpec };
  record: RolloutRecord | undefined;
  nodes: readonly RolloutNode[];
  enforcement(node: string, revision: string): NodeEnforcement;
  now: number;
}

export interface RolloutEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  note: string;
}

export type NodeRolloutState = 'waiting' | 'inflight' | 'enforced' | 'failed';

export interface RolloutOutcome {
  record: RolloutRecord;
  events: RolloutEvent[];
  /** Counts over the nodes the target revision selects. */
  counts: { matched: number; enforced: number; failed: number; pending: number };
  /** Affected nodes now on the target revision. */
  updated: number;
  failures: { node: string; reason: string }[];
  /** Milliseconds until the next released node reaches its progress deadline. */
  nextDeadlineMs?: number;
}

export const RolloutEventReason = {
  Started: 'RolloutStarted',
  Released: 'NodesReleased',
  CanaryFailed: 'CanaryFailed',
  Stopped: 'RolloutStopped',
  Complete: 'RolloutComplete',
} as const;

/** maxUnavailable as a count of `total` nodes: a percentage rounds down, and at least one node moves. */
export function resolveMaxUnavailable(value: number | string | undefined, total: number): number {
  const v = value ?? ROLLOUT_DEFAULTS.maxUnavailable;
  const n = typeof v === 'number' ? v : /^\d+%$/.test(v) ? Math.floor((total * Number(v.slice(0, -1))) / 100) : Number(v);
  return Math.max(1, Number.isFinite(n) ? n : 1);
}

function orderKey(uid: string, node: string): string {
  return createHash('sha256').update(`${uid}/${node}`).digest('hex');
}

export function stepRollout(inputs: RolloutInputs): RolloutOutcome {
  const { policy, now } = inputs;
  const spec = effectiveSpec(policy.spec);
  const target = revisionOf(spec);
  const rollout = { ...ROLLOUT_DEFAULTS, ...(policy.spec.rollout ?? {}) };
  const deadlineMs = rollout.progressDeadlineSeconds * 1000;
  const events: RolloutEvent[] = [];

  const fresh = !inputs.record || inputs.record.policyUid !== policy.uid;
  const record: RolloutRecord = fresh
    ? { policy: policy.name, policyUid: policy.uid, revisions: {}, target, targetGeneration: policy.generation, released: {}, state: 'Progressing', message: '', startedAt: now }
    : structuredClone(inputs.record!);
  const started = fresh || record.target !== target;
  if (started) {
    record.target = target;
    record.state = 'Progressing';
    record.message = '';
    record.startedAt = now;
  }
  record.targetGeneration = policy.generation;
  record.revisions[target] = spec;

  const inFleet = new Set(inputs.nodes.map((n) => n.name));
  for (const node of Object.keys(record.released)) if (!inFleet.has(node)) delete record.released[node];

  const versionOf = (node: string) => record.released[node]?.revision ?? record.stable;
  const selects = (revision: string | undefined, labels: Labels) => {
    const s = revision !== undefined ? record.revisions[revision] : undefined;
    return s !== undefined && matchesSelector(s.nodeSelector, labels);
  };
  const affected = inputs.nodes
    .filter((n) => (versionOf(n.name) === target ? selects(target, n.labels) : selects(target, n.labels) || selects(versionOf(n.name), n.labels)))
    .map((n) => ({ n, key: orderKey(policy.uid, n.name) }))
    .sort((a, b) => (a.key < b.key ? -1 : 1))
    .map(({ n }) => n);

  const failures: { node: string; reason: string }[] = [];
  const stateOf = new Map<string, NodeRolloutState>();
  const classify = (node: string): NodeRolloutState => {
    const known = stateOf.get(node);
    if (known) return known;
    let state: NodeRolloutState;
    if (versionOf(node) !== target) state = 'waiting';
    else {
      const e = inputs.enforcement(node, target);
      const releasedAt = record.released[node]?.at;
      if (e.enforced) state = 'enforced';
      else if (e.error) {
        state = 'failed';
        failures.push({ node, reason: e.error });
      } else if (releasedAt !== undefined && now - releasedAt > deadlineMs) {
        state = 'failed';
        failures.push({ node, reason: `not enforced within ${rollout.progressDeadlineSeconds}s of its release` });
      } else state = 'inflight';
    }
    stateOf.set(node, state);
    return state;
  };
  for (const n of affected) classify(n.name);

  const canaries = affected.slice(0, Math.min(rollout.canary, affected.length));
  const isCanary = new Set(canaries.map((n) => n.name));
  const tolerated = (s: NodeRolloutState) => s === 'enforced' || (s === 'failed' && !rollout.stopOnFailure);
  const released: string[] = [];

  if (started) {
    events.push({
      type: 'Normal',
      reason: RolloutEventReason.Started,
      note: `rolling out generation ${policy.generation} to ${affected.length} node(s): ${canaries.length} canary, then at most ${resolveMaxUnavailable(rollout.maxUnavailable, affected.length)} at a time`,
    });
  }

  const firstFailure = failures[0];
  if (record.state === 'Progressing' && firstFailure && rollout.stopOnFailure) {
    const canary = isCanary.has(firstFailure.node);
    record.state = 'Stopped';
    record.message = `${canary ? 'canary ' : ''}node ${firstFailure.node} failed: ${firstFailure.reason}`.slice(0, 1024);
    events.push({
      type: 'Warning',
      reason: canary ? RolloutEventReason.CanaryFailed : RolloutEventReason.Stopped,
      note: `rollout of generation ${policy.generation} stopped: ${record.message}`,
    });
  }

  if (record.state === 'Progressing') {
    const canariesDone = canaries.every((n) => tolerated(classify(n.name)));
    let candidates: RolloutNode[];
    if (!canariesDone) candidates = canaries.filter((n) => classify(n.name) === 'waiting');
    else {
      const budget = resolveMaxUnavailable(rollout.maxUnavailable, affected.length);
      const unavailable = affected.filter((n) => ['inflight', 'failed'].includes(classify(n.name))).length;
      candidates = affected.filter((n) => classify(n.name) === 'waiting').slice(0, Math.max(0, budget - unavailable));
    }
    for (const n of candidates) {
      record.released[n.name] = { revision: target, at: now };
      stateOf.set(n.name, 'inflight');
      released.push(n.name);
    }
    if (released.length) {
      events.push({
        type: 'Normal',
        reason: RolloutEventReason.Released,
        note: `released generation ${policy.generation} to ${released.length} ${canariesDone ? '' : 'canary '}node(s)`,
      });
    }
    if (affected.every((n) => tolerated(classify(n.name)))) {
      record.state = 'Complete';
      record.message = '';
      record.stable = target;
      record.released = {};
      events.push({ type: 'Normal', reason: RolloutEventReason.Complete, note: `generation ${policy.generation} enforced on ${affected.length} node(s)` });
    } else {
      record.message = canariesDone ? 'rolling out in waves' : 'waiting for the canary nodes';
    }
  }

  // Keep only the revisions some node is on.
  const inUse = new Set([record.target, ...(record.stable ? [record.stable] : []), ...Object.values(record.released).map((r) => r.revision)]);
  for (const revision of Object.keys(record.revisions)) if (!inUse.has(revision)) delete record.revisions[revision];

  // Every node the target selects is affected, so its state is known.
  const matched = inputs.nodes.filter((n) => selects(target, n.labels));
  const matchedStates = matched.map((n) => stateOf.get(n.name) ?? 'waiting');
  const enforced = matchedStates.filter((s) => s === 'enforced').length;
  const failed = matchedStates.filter((s) => s === 'failed').length;
  const deadlines = Object.entries(record.released)
    .filter(([node, r]) => r.revision === target && stateOf.get(node) === 'inflight')
    .map(([, r]) => r.at + deadlineMs + 1 - now);
  return {
    record,
    events,
    counts: { matched: matched.length, enforced, failed, pending: matched.length - enforced - failed },
    updated: affected.filter((n) => versionOf(n.name) === target).length,
    failures,
    ...(deadlines.length ? { nextDeadlineMs: Math.max(0, Math.min(...deadlines)) } : {}),
  };
}
