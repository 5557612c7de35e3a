import { parseScanOutcome, parseTensorTreeOutcome, SCANNER_PROTOCOL_VERSION, SCANNER_STAGES } from './scanner-protocol.js';

const valid = () => ({
  version: SCANNER_PROTOCOL_VERSION,
  stages: SCANNER_STAGES.map((stage) => ({ stage, status: 'passed', reason: 'Passed', message: 'ok', details: { n: 1 } })),
  facts: { sha256: 'a'.repeat(64), sizeBytes: 10, scanMs: 5, tensorCount: 2 },
});

it('accepts a well-formed outcome', () => {
  expect(parseScanOutcome(JSON.stringify(valid()))).toEqual(valid());
});

it.each([
  ['not JSON', () => 'not json'],
  ['another version', () => JSON.stringify({ ...valid(), version: SCANNER_PROTOCOL_VERSION - 1 })],
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

const tree = () => ({ version: SCANNER_PROTOCOL_VERSION, status: 'ok', sizeBytes: 10, tensorCount: 2, tensorMerkleRoot: 'b'.repeat(64), treeMs: 3 });

it('accepts a well-formed tensor tree outcome, and a changed file', () => {
  expect(parseTensorTreeOutcome(JSON.stringify(tree()))).toEqual(tree());
  const changed = { version: SCANNER_PROTOCOL_VERSION, status: 'changed', message: 'the file changed' };
  expect(parseTensorTreeOutcome(JSON.stringify(changed))).toEqual(changed);
});

it.each([
  ['not JSON', () => '{'],
  ['another version', () => JSON.stringify({ ...tree(), version: SCANNER_PROTOCOL_VERSION - 1 })],
  ['an unknown status', () => JSON.stringify({ ...tree(), status: 'maybe' })],
  ['a bad root', () => JSON.stringify({ ...tree(), tensorMerkleRoot: 'g'.repeat(64) })],
  ['a fractional count', () => JSON.stringify({ ...tree(), tensorCount: 1.5 })],
  ['an extra field', () => JSON.stringify({ ...tree(), note: 'x' })],
  ['a missing field', () => JSON.stringify({ ...tree(), treeMs: undefined })],
  ['a huge message', () => JSON.stringify({ version: SCANNER_PROTOCOL_VERSION, status: 'changed', message: 'x'.repeat(5000) })],
])('rejects a tree outcome with %s', (_name, text) => {
  expect(parseTensorTreeOutcome(text())).toBeUndefined();
});
