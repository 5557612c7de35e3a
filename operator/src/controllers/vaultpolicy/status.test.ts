// A VaultPolicy's counts and conditions: applied where it wins, shadowed where another wins.
import { computeVaultStatus, type VaultNodeView } from './status.js';

const v = (node: string, appliedPolicy?: string, compliant?: boolean, reasons?: string[], reportedPolicy = appliedPolicy): VaultNodeView => ({
  node,
  ...(appliedPolicy ? { appliedPolicy } : {}),
  ...(compliant !== undefined ? { reported: { encrypted: true, sealed: true, locked: false, compliant, policy: reportedPolicy, ...(reasons ? { reasons } : {}) } } : {}),
});

it.each<[string, VaultNodeView[], Record<string, number>, string, string]>([
  ['no node matches', [], { matched: 0, applied: 0 }, 'NoMatchingNodes', 'NotShadowed'],
  ['every applied node complies', [v('a', 'p', true), v('b', 'p', true)], { matched: 2, applied: 2, compliant: 2, unknown: 0 }, 'AllNodesCompliant', 'NotShadowed'],
  ['a node has not reported', [v('a', 'p', true), v('b', 'p')], { applied: 2, compliant: 1, unknown: 1 }, 'AwaitingReports', 'NotShadowed'],
  ['a report about another policy counts as unknown', [v('a', 'p', true, undefined, 'old')], { applied: 1, compliant: 0, unknown: 1 }, 'AwaitingReports', 'NotShadowed'],
  ['a node does not comply', [v('a', 'p', false, ['CipherMismatch']), v('b', 'p', true)], { compliant: 1, nonCompliant: 1 }, 'NodesNotCompliant', 'NotShadowed'],
  ['shadowed on one node', [v('a', 'p', true), v('b', 'winner', true)], { matched: 2, applied: 1 }, 'AllNodesCompliant', 'ShadowedByHigherPriority'],
  ['shadowed everywhere', [v('a', 'winner', true)], { matched: 1, applied: 0 }, 'ShadowedEverywhere', 'ShadowedByHigherPriority'],
])('%s', (_, matched, counts, ready, shadow) => {
  const s = computeVaultStatus({ policy: 'p', generation: 1, matched, existing: undefined, now: 0 });
  expect(s.nodes).toMatchObject(counts);
  expect(s.conditions?.find((c) => c.type === 'Ready')?.reason).toBe(ready);
  expect(s.conditions?.find((c) => c.type === 'Shadowed')?.reason).toBe(shadow);
});

it('counts non-compliance reasons, most frequent first', () => {
  const s = computeVaultStatus({
    policy: 'p',
    generation: 1,
    matched: [v('a', 'p', false, ['Tpm2NotSealed', 'CipherMismatch']), v('b', 'p', false, ['Tpm2NotSealed']), v('c', 'p', false)],
    existing: undefined,
    now: 0,
  });
  expect(s.nonCompliantReasons).toEqual([
    { reason: 'Tpm2NotSealed', nodes: 2 },
    { reason: 'CipherMismatch', nodes: 1 },
    { reason: 'Unspecified', nodes: 1 },
  ]);
});
