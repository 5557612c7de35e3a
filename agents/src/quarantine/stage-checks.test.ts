import { evaluateIntegrity } from './stage-checks.js';
import { Reason } from './verdict.js';

const a = 'a'.repeat(64);
const b = 'b'.repeat(64);

it.each([
  ['a matching pin', { sha256: a, sizeBytes: 10 }, { sha256: a, sizeBytes: 10 }, [], Reason.Passed],
  ['a matching pin without a size', { sha256: a, sizeBytes: 10 }, { sha256: a }, [], Reason.Passed],
  ['another digest', { sha256: b, sizeBytes: 10 }, { sha256: a }, [], Reason.DigestMismatch],
  ['another size', { sha256: a, sizeBytes: 11 }, { sha256: a, sizeBytes: 10 }, [], Reason.SizeMismatch],
  ['a pin in capitals', { sha256: a, sizeBytes: 10 }, { sha256: a.toUpperCase() }, [], Reason.PinInvalid],
  ['a short pin', { sha256: a, sizeBytes: 10 }, { sha256: 'abc' }, [], Reason.PinInvalid],
  ['a blocked digest, even when pinned', { sha256: a, sizeBytes: 10 }, { sha256: a }, [{ sha256: a, reason: 'revoked' }], Reason.DigestBlocked],
  ['a blocked digest under another pin', { sha256: a, sizeBytes: 10 }, { sha256: b }, [{ sha256: a, reason: 'revoked' }], Reason.DigestBlocked],
])('%s', (_name, found, pin, blocked, reason) => {
  expect(evaluateIntegrity(found, pin, blocked).reason).toBe(reason);
});

it('names the expected and found digests in a mismatch', () => {
  expect(evaluateIntegrity({ sha256: b, sizeBytes: 1 }, { sha256: a }, []).message).toBe(`hash mismatch: expected ${a.slice(0, 16)}..., got ${b.slice(0, 16)}...`);
});
