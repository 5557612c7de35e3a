// Conditions follow metav1.Condition: lastTransitionTime changes only with the status.
import { conditionTransition, rfc3339Seconds, setCondition, setConditions } from './conditions.js';

const T0 = Date.UTC(2026, 0, 1, 10, 0, 0, 700);
const T1 = T0 + 60_000;

it('stamps a new condition with the time truncated to seconds', () => {
  const [c] = setCondition(undefined, { type: 'Ready', status: 'True', reason: 'Ready', message: 'ok', observedGeneration: 3 }, T0);
  expect(c).toEqual({
    type: 'Ready',
    status: 'True',
    reason: 'Ready',
    message: 'ok',
    observedGeneration: 3,
    lastTransitionTime: '2026-01-01T10:00:00Z',
  });
});

it.each([
  ['same status, new reason and message', 'True', 'StillReady', '2026-01-01T10:00:00Z'],
  ['status changes', 'False', 'Broken', rfc3339Seconds(T1)],
] as const)('%s → lastTransitionTime %s', (_, status, reason, expected) => {
  const before = setCondition(undefined, { type: 'Ready', status: 'True', reason: 'Ready', message: 'ok' }, T0);
  const [after] = setCondition(before, { type: 'Ready', status, reason, message: 'changed' }, T1);
  expect(after?.lastTransitionTime).toBe(expected);
  expect(after?.reason).toBe(reason);
  expect(after?.message).toBe('changed');
});

it('keeps the order of existing conditions and appends new types', () => {
  const conditions = setConditions(
    undefined,
    [
      { type: 'Ready', status: 'True', reason: 'A', message: '' },
      { type: 'Compliant', status: 'False', reason: 'B', message: '' },
    ],
    T0,
  );
  const updated = setCondition(conditions, { type: 'Ready', status: 'False', reason: 'C', message: '' }, T1);
  expect(updated.map((c) => c.type)).toEqual(['Ready', 'Compliant']);
  expect(conditions[0]?.status).toBe('True');
});

it('bounds the message at the API server limit', () => {
  const [c] = setCondition(undefined, { type: 'Ready', status: 'True', reason: 'R', message: 'x'.repeat(40_000) }, T0);
  expect(c?.message.length).toBe(32_768);
});

it('reports a transition on a status or reason change only', () => {
  const a = setCondition(undefined, { type: 'Ready', status: 'True', reason: 'R', message: 'one' }, T0);
  const sameButMessage = setCondition(a, { type: 'Ready', status: 'True', reason: 'R', message: 'two' }, T1);
  const newReason = setCondition(a, { type: 'Ready', status: 'True', reason: 'Q', message: 'two' }, T1);
  expect(conditionTransition(a, sameButMessage, 'Ready')).toBeUndefined();
  expect(conditionTransition(a, newReason, 'Ready')?.reason).toBe('Q');
  expect(conditionTransition(undefined, a, 'Ready')?.status).toBe('True');
  expect(conditionTransition(a, a, 'Missing')).toBeUndefined();
});
