import { applyOverrides, DEFAULT_QUARANTINE_POLICY, policyDigest } from './policy.js';

const overrides = (o: Partial<{ maxSizeBytes: number; smokeTest: boolean; smokeTestMaxScore: number }>) => ({ maxSizeBytes: 0, smokeTest: false, smokeTestMaxScore: 0, ...o });

it.each([
  ['no overrides', undefined, DEFAULT_QUARANTINE_POLICY.maxSizeBytes, false, 0.3],
  ['a smaller size limit', overrides({ maxSizeBytes: 1000 }), 1000, false, 0.3],
  ['a larger size limit is ignored', overrides({ maxSizeBytes: 2 ** 50 }), DEFAULT_QUARANTINE_POLICY.maxSizeBytes, false, 0.3],
  ['the smoke test with a lower score', overrides({ smokeTest: true, smokeTestMaxScore: 0.1 }), DEFAULT_QUARANTINE_POLICY.maxSizeBytes, true, 0.1],
  ['the smoke test with a higher score is capped', overrides({ smokeTest: true, smokeTestMaxScore: 0.9 }), DEFAULT_QUARANTINE_POLICY.maxSizeBytes, true, 0.3],
] as const)('%s', (_name, o, maxSize, smoke, score) => {
  const p = applyOverrides(DEFAULT_QUARANTINE_POLICY, o);
  expect(p.maxSizeBytes).toBe(maxSize);
  expect(p.smokeTest).toEqual({ enabled: smoke, maxScore: score });
});

it('cannot turn off a smoke test the node requires', () => {
  const node = { ...DEFAULT_QUARANTINE_POLICY, smokeTest: { enabled: true, maxScore: 0.2 } };
  expect(applyOverrides(node, overrides({ smokeTest: false })).smokeTest).toEqual({ enabled: true, maxScore: 0.2 });
});

it('has a digest that is stable and changes with the policy', () => {
  const d = policyDigest(DEFAULT_QUARANTINE_POLICY);
  expect(d).toMatch(/^[0-9a-f]{64}$/);
  expect(policyDigest(structuredClone(DEFAULT_QUARANTINE_POLICY))).toBe(d);
  expect(policyDigest({ ...DEFAULT_QUARANTINE_POLICY, blockedDigests: [{ sha256: 'b'.repeat(64), reason: 'x' }] })).not.toBe(d);
  const a = { ...DEFAULT_QUARANTINE_POLICY, blockedDigests: [{ sha256: '1'.repeat(64), reason: 'x' }, { sha256: '2'.repeat(64), reason: 'y' }] };
  expect(policyDigest({ ...a, blockedDigests: [...a.blockedDigests].reverse() })).toBe(policyDigest(a));
});
