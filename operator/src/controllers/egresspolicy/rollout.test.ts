// stepRollout decides, from the record and node progress, which nodes to release and the rollout's
// state: canary first, waves bounded by maxUnavailable, failure handling, completion.
import type { EgressPolicySpec } from '../../../../api/gen/crd-types.js';
import { effectiveSpec, revisionOf, type RolloutRecord } from '../../fleet/rollout-records.js';
import { resolveMaxUnavailable, stepRollout, type NodeEnforcement, type RolloutInputs } from './rollout.js';

const T0 = 1_000_000;
const nodes = ['a', 'b', 'c', 'd', 'e', 'f'].map((name) => ({ name, labels: { pool: name < 'e' ? 'x' : 'y' } }));
const spec = (ip: string, rollout: EgressPolicySpec['rollout'] = { canary: 1, maxUnavailable: 2, progressDeadlineSeconds: 60 }, selector?: EgressPolicySpec['nodeSelector']): EgressPolicySpec => ({
  allow: [{ ip }],
  rollout,
  ...(selector ? { nodeSelector: selector } : {}),
});

/** Progress of each node per revision: 'ok' enforced, a string an error, absent still working. */
type Progress = Record<string, Record<string, 'ok' | string>>;

function step(specs: EgressPolicySpec, record: RolloutRecord | undefined, progress: Progress = {}, now = T0, fleet = nodes) {
  const inputs: RolloutInputs = {
    policy: { name: 'p', uid: 'uid-1', generation: 1, spec: specs },
    record,
    nodes: fleet,
    enforcement: (node, revision): NodeEnforcement => {
      const p = progress[revision]?.[node];
      return p === 'ok' ? { enforced: true } : p ? { enforced: false, error: p } : { enforced: false };
    },
    now,
  };
  return stepRollout(inputs);
}

const rev = (s: EgressPolicySpec) => revisionOf(effectiveSpec(s));
const onTarget = (r: RolloutRecord) => Object.entries(r.released).filter(([, v]) => v.revision === r.target).map(([n]) => n).sort();
const allOk = (revision: string) => ({ [revision]: Object.fromEntries(nodes.map((n) => [n.name, 'ok'])) });

it.each<[number | string | undefined, number, number]>([
  [2, 10, 2],
  ['25%', 10, 2],
  ['25%', 3, 1],
  ['100%', 6, 6],
  ['0%', 5, 1],
  [undefined, 8, 2],
  ['3', 10, 3],
])('maxUnavailable %s of %d nodes is %d', (value, total, expected) => {
  expect(resolveMaxUnavailable(value, total)).toBe(expected);
});

it('releases a new policy to one canary first, and to no one else while the canary works', () => {
  const s = spec('192.0.2.1');
  const first = step(s, undefined);
  expect(first.record).toMatchObject({ state: 'Progressing', target: rev(s) });
  expect(first.record.stable).toBeUndefined();
  expect(onTarget(first.record)).toHaveLength(1);
  expect(first.events.map((e) => e.reason)).toEqual(['RolloutStarted', 'NodesReleased']);
  const again = step(s, first.record, {}, T0 + 1000);
  expect(onTarget(again.record)).toEqual(onTarget(first.record));
  expect(again.events).toEqual([]);
  expect(again.nextDeadlineMs).toBe(59_001);
});

it('then releases waves, never more than maxUnavailable nodes released and not yet enforcing', () => {
  const s = spec('192.0.2.1');
  const r = rev(s);
  const first = step(s, undefined);
  const [canary] = onTarget(first.record);
  const wave = step(s, first.record, { [r]: { [canary!]: 'ok' } });
  expect(onTarget(wave.record)).toHaveLength(3);
  const inflight = onTarget(wave.record).filter((n) => n !== canary);
  const refill = step(s, wave.record, { [r]: { [canary!]: 'ok', [inflight[0]!]: 'ok' } });
  expect(onTarget(refill.record)).toHaveLength(4);
  const done = step(s, refill.record, allOk(r));
  expect(onTarget(done.record)).toHaveLength(6);
  const complete = step(s, done.record, allOk(r));
  expect(complete.record).toMatchObject({ state: 'Complete', stable: r, released: {} });
  expect(complete.events.map((e) => e.reason)).toEqual(['RolloutComplete']);
  expect(complete.counts).toEqual({ matched: 6, enforced: 6, failed: 0, pending: 0 });
});

it('keeps unreleased nodes on the previous revision when the policy changes', () => {
  const v1 = spec('192.0.2.1');
  const v2 = spec('192.0.2.2');
  const stable = step(v1, step(v1, { ...step(v1, undefined).record, released: Object.fromEntries(nodes.map((n) => [n.name, { revision: rev(v1), at: T0 }])) }, allOk(rev(v1))).record, allOk(rev(v1))).record;
  expect(stable.state).toBe('Complete');
  const change = step(v2, stable);
  expect(change.record.stable).toBe(rev(v1));
  expect(change.record.target).toBe(rev(v2));
  expect(onTarget(change.record)).toHaveLength(1);
  expect(Object.keys(change.record.revisions).sort()).toEqual([rev(v1), rev(v2)].sort());
  expect(change.counts).toMatchObject({ matched: 6, enforced: 0, pending: 6 });
});

it('continues a newer change from wherever each node is', () => {
  const v2 = spec('192.0.2.2', { canary: 2, maxUnavailable: 2 });
  const v3 = spec('192.0.2.3', { canary: 1, maxUnavailable: 2 });
  const first = step(v2, undefined);
  const [x, y] = Object.keys(first.record.released).sort((a, b) => (first.record.released[a]!.at - first.record.released[b]!.at) || 0);
  expect(Object.keys(first.record.released)).toHaveLength(2);
  const next = step(v3, first.record);
  const onV3 = onTarget(next.record);
  expect(onV3).toHaveLength(1);
  // The other v2 canary keeps v2 until released to v3; v2 stays among the revisions while in use.
  const keeper = [x, y].find((n) => !onV3.includes(n!));
  expect(next.record.released[keeper!]?.revision).toBe(rev(v2));
  expect(next.record.revisions[rev(v2)]).toBeDefined();
  expect(next.events[0]?.reason).toBe('RolloutStarted');
});

it.each<[string, (canary: string, r: string) => Progress, number, string]>([
  ['a plan error', (c, r) => ({ [r]: { [c]: 'nft failed' } }), T0 + 1, 'nft failed'],
  ['no enforcement within the deadline', () => ({}), T0 + 60_001, 'not enforced within 60s of its release'],
])('stops at a canary with %s', (_, progress, now, reason) => {
  const s = spec('192.0.2.1');
  const first = step(s, undefined);
  const [canary] = onTarget(first.record);
  const stopped = step(s, first.record, progress(canary!, rev(s)), now);
  expect(stopped.record.state).toBe('Stopped');
  expect(stopped.record.message).toBe(`canary node ${canary} failed: ${reason}`);
  expect(stopped.events).toEqual([{ type: 'Warning', reason: 'CanaryFailed', note: expect.stringContaining(reason) }]);
  expect(stopped.counts.failed).toBe(1);
  const later = step(s, stopped.record, {}, now + 3_600_000);
  expect(onTarget(later.record)).toEqual([canary]);
  expect(later.events).toEqual([]);
});

it('carries on past a failure when stopOnFailure is false, and completes', () => {
  const s = spec('192.0.2.1', { canary: 1, maxUnavailable: 6, stopOnFailure: false });
  const r = rev(s);
  const first = step(s, undefined);
  const [canary] = onTarget(first.record);
  const progress: Progress = { [r]: { [canary!]: 'broken' } };
  const wave = step(s, first.record, progress);
  expect(wave.record.state).toBe('Progressing');
  expect(onTarget(wave.record)).toHaveLength(6);
  const complete = step(s, wave.record, { [r]: { ...allOk(r)[r], [canary!]: 'broken' } });
  expect(complete.record.state).toBe('Complete');
  expect(complete.counts).toMatchObject({ enforced: 5, failed: 1 });
});

it('affects only nodes either version selects, and completes at once when none', () => {
  const s = spec('192.0.2.1', { canary: 1, maxUnavailable: 10 }, { matchLabels: { pool: 'y' } });
  const first = step(s, undefined);
  expect(onTarget(first.record).every((n) => ['e', 'f'].includes(n))).toBe(true);
  expect(first.counts.matched).toBe(2);
  const none = step(spec('192.0.2.1', undefined, { matchLabels: { pool: 'none' } }), undefined);
  expect(none.record.state).toBe('Complete');
  expect(none.events.map((e) => e.reason)).toEqual(['RolloutStarted', 'RolloutComplete']);
});

it('forgets released nodes that left the fleet, and starts over for a recreated policy', () => {
  const s = spec('192.0.2.1');
  const first = step(s, undefined);
  const [canary] = onTarget(first.record);
  const shrunk = step(s, first.record, {}, T0, nodes.filter((n) => n.name !== canary));
  expect(shrunk.record.released[canary!]).toBeUndefined();
  const recreated = stepRollout({
    policy: { name: 'p', uid: 'uid-2', generation: 1, spec: s },
    record: first.record,
    nodes,
    enforcement: () => ({ enforced: false }),
    now: T0,
  });
  expect(recreated.record.policyUid).toBe('uid-2');
  expect(recreated.events[0]?.reason).toBe('RolloutStarted');
});
