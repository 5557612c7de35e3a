// An InferenceService's counts, reasons and conditions over the nodes chosen for it.
import { computeServiceStatus, type ServiceNodeView } from './status.js';

const serving = (node: string): ServiceNodeView => ({ node, reported: { service: 's', model: 'm', state: 'Serving' } });

it.each<[string, ServiceNodeView[], Record<string, number>, string, { reason: string; nodes: number }[] | undefined]>([
  ['no node chosen', [], { selected: 0, ready: 0, notReady: 0 }, 'NoNodesSelected', undefined],
  ['served everywhere', [serving('a'), serving('b')], { selected: 2, ready: 2, notReady: 0 }, 'AllNodesServing', undefined],
  [
    'left out of some plans and starting elsewhere',
    [
      serving('a'),
      { node: 'b', excluded: { name: 's', reason: 'ModelNotTrusted', message: '' } },
      { node: 'c', excluded: { name: 's', reason: 'ModelNotTrusted', message: '' } },
      { node: 'd', reported: { service: 's', model: 'm', state: 'Starting' } },
      { node: 'e', reported: { service: 's', model: 'm', state: 'Failed', reason: 'GpuUnavailable' } },
      { node: 'f' },
    ],
    { selected: 6, ready: 1, notReady: 5 },
    'NotAllNodesServing',
    [
      { reason: 'ModelNotTrusted', nodes: 2 },
      { reason: 'GpuUnavailable', nodes: 1 },
      { reason: 'NotReported', nodes: 1 },
      { reason: 'Starting', nodes: 1 },
    ],
  ],
])('%s', (_, nodes, counts, reason, reasons) => {
  const s = computeServiceStatus({ generation: 3, nodes, token: { ok: true }, existing: undefined, now: 0 });
  expect(s.nodes).toEqual(counts);
  expect(s.conditions?.find((c) => c.type === 'Ready')?.reason).toBe(reason);
  expect(s.notReadyReasons).toEqual(reasons);
});

it('reports a token that does not resolve', () => {
  const s = computeServiceStatus({ generation: 1, nodes: [], token: { ok: false, reason: 'SecretNotFound', message: 'no Secret' }, existing: undefined, now: 0 });
  expect(s.conditions?.find((c) => c.type === 'AuthTokenResolved')).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
});
