import { parseScanOutcome, SCANNER_STAGES } from './scanner-protocol.js';

const valid = () => ({
  version: 1,
  stages: SCANNER_STAGES.map((stage) => ({ stage, status: 'passed', reason: 'Passed', message: 'ok', details: { n: 1 } })),
  facts: { sha256: 'a'.repeat(64), sizeBytes: 10, scanMs: 5, tensorMerkleRoot: 'b'.repeat(64), tensorCount: 2 },
});

it('accepts a well-formed outcome', () => {
  expect(parseScanOutcome(JSON.stringify(valid()))).toEqual(valid());
});

it.each([
  ['not JSON', () => 'not json'],
  ['another version', () => JSON.stringify({ ...valid(), version: 2 })],
  ['a missing stage', () => JSON.stringify({ ...valid(), stages: valid().stages.slice(1) })],
  ['stages out of order', () => JSON.stringify({ ...valid(), stages: [...valid().stages].reverse() })],
  ['an unknown reason', () => { const v = valid(); v.stages[0]!.reason = 'AllGood'; return JSON.stringify(v); }],
  ['passed with a failure reason', () => { const v = valid(); v.stages[0]!.reason = 'BadMagic'; return JSON.stringify(v); }],
  ['an extra field in a stage', () => { const v = valid(); (v.stages[0] as Record<string, unknown>).trusted = true; return JSON.stringify(v); }],
  ['a nested detail', () => { const v = valid(); (v.stages[0]!.details as Record<string, unknown>).x = { y: 1 }; return JSON.stringify(v); }],
  ['a bad digest', () => JSON.stringify({ ...valid(), facts: { ...valid().facts, sha256: 'A'.repeat(64) } })],
  ['a negative size', () => JSON.stringify({ ...valid(), facts: { ...valid().facts, sizeBytes: -1 } })],
  ['a huge message', () => { const v = valid(); v.stages[0]!.message = 'x'.repeat(5000); return JSON.stringify(v); }],
])('rejects %s', (_name, text) => {
  expect(parseScanOutcome(text())).toBeUndefined();
});
