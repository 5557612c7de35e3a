// Label selectors select as metav1.LabelSelector does.
import type { LabelSelector } from '../../../api/gen/crd-types.js';
import { matchesSelector } from './label-selector.js';

const labels = { 'secai.io/pool': 'inference', zone: 'a', gpu: '' };

it.each<[string, LabelSelector | undefined, boolean]>([
  ['no selector selects all', undefined, true],
  ['empty selector selects all', {}, true],
  ['matchLabels equal', { matchLabels: { 'secai.io/pool': 'inference' } }, true],
  ['matchLabels with another value', { matchLabels: { 'secai.io/pool': 'research' } }, false],
  ['matchLabels on a missing key', { matchLabels: { rack: '1' } }, false],
  ['matchLabels with an empty value matches an empty label', { matchLabels: { gpu: '' } }, true],
  ['In with the value', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'b'] }] }, true],
  ['In without the value', { matchExpressions: [{ key: 'zone', operator: 'In', values: ['b'] }] }, false],
  ['In on a missing key', { matchExpressions: [{ key: 'rack', operator: 'In', values: ['1'] }] }, false],
  ['NotIn with the value', { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, false],
  ['NotIn without the value', { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['b'] }] }, true],
  ['NotIn on a missing key', { matchExpressions: [{ key: 'rack', operator: 'NotIn', values: ['1'] }] }, true],
  ['Exists', { matchExpressions: [{ key: 'gpu', operator: 'Exists' }] }, true],
  ['Exists on a missing key', { matchExpressions: [{ key: 'rack', operator: 'Exists' }] }, false],
  ['DoesNotExist', { matchExpressions: [{ key: 'rack', operator: 'DoesNotExist' }] }, true],
  ['DoesNotExist on a present key', { matchExpressions: [{ key: 'zone', operator: 'DoesNotExist' }] }, false],
  [
    'labels and expressions must all hold',
    { matchLabels: { zone: 'a' }, matchExpressions: [{ key: 'secai.io/pool', operator: 'In', values: ['inference'] }, { key: 'rack', operator: 'Exists' }] },
    false,
  ],
  ['an unknown operator selects nothing', { matchExpressions: [{ key: 'zone', operator: 'Gt' as 'In', values: ['1'] }] }, false],
])('%s', (_, selector, expected) => {
  expect(matchesSelector(selector, labels)).toBe(expected);
});
