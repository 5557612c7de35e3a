// A Model's phase, counts and conditions from what nodes report.
import type { Model, NodeModelStatus } from '../../../../api/gen/crd-types.js';
import { computeModelStatus, type ModelNodeView } from './status.js';

const SHA = 'a'.repeat(64);
const model = (over: Partial<Model['spec']> = {}): Model => ({
  apiVersion: 'secai.io/v1alpha1',
  kind: 'Model',
  metadata: { name: 'm', generation: 2 },
  spec: { source: { url: 'https://x.example/m.gguf' }, format: 'gguf', sha256: SHA, ...over },
});
const view = (node: string, desired: boolean, state?: NodeModelStatus['state'], sha = SHA): ModelNodeView => ({
  node,
  desired,
  ...(state ? { reported: { name: 'm', sha256: sha, state, ...(state === 'Rejected' ? { stage: 'static', reason: 'PickleOpcodes' } : {}) } } : {}),
});

it.each<[string, Model, ModelNodeView[], string, Record<string, number>, string]>([
  ['no node must hold it', model(), [view('a', false)], 'Pending', { desired: 0, trusted: 0, pending: 0 }, 'NoNodesSelected'],
  ['nodes have not started', model(), [view('a', true), view('b', true, 'Pending')], 'Pending', { desired: 2, pending: 2 }, 'Pending'],
  ['one node is fetching', model(), [view('a', true, 'Fetching'), view('b', true)], 'Distributing', { desired: 2, pending: 2 }, 'Distributing'],
  ['some nodes trust it', model(), [view('a', true, 'Trusted'), view('b', true, 'Scanning')], 'Distributing', { desired: 2, trusted: 1, pending: 1 }, 'Distributing'],
  ['every node trusts it', model(), [view('a', true, 'Trusted'), view('b', true, 'Trusted'), view('c', false)], 'Trusted', { desired: 2, trusted: 2, pending: 0 }, 'AllNodesTrusted'],
  ['a node rejected it', model(), [view('b', true, 'Rejected'), view('a', true, 'Trusted')], 'Rejected', { desired: 2, trusted: 1, rejected: 1 }, 'Rejected'],
  ['a node holds another artifact under the name', model(), [view('a', true, 'Trusted', 'b'.repeat(64))], 'Pending', { desired: 1, trusted: 0, pending: 1 }, 'Pending'],
  ['it is revoked', model({ revoked: true, revokedReason: 'bad' }), [view('a', false, 'Contained'), view('b', false, 'Trusted')], 'Revoked', { desired: 0, contained: 1, trusted: 1 }, 'Revoked'],
])('%s → %s', (_, m, nodes, phase, counts, reason) => {
  const s = computeModelStatus({ model: m, nodes, existing: undefined, now: 0 });
  expect(s.phase).toBe(phase);
  expect(s.nodes).toMatchObject(counts);
  expect(s.conditions?.find((c) => c.type === 'Ready')?.reason).toBe(reason);
  expect(s.observedGeneration).toBe(2);
});

it('names the first rejecting node, its stage and reason', () => {
  const s = computeModelStatus({ model: model(), nodes: [view('z', true, 'Rejected'), view('b', true, 'Rejected')], existing: undefined, now: 0 });
  expect(s.rejection).toEqual({ node: 'b', stage: 'static', reason: 'PickleOpcodes' });
});

it('says when signature material does not resolve, and while deletion waits', () => {
  const unresolved = computeModelStatus({ model: model(), nodes: [], unresolved: { reason: 'ConfigMapNotFound', message: 'gone' }, existing: undefined, now: 0 });
  expect(unresolved.conditions?.map((c) => [c.type, c.status, c.reason])).toEqual([
    ['Ready', 'False', 'ConfigMapNotFound'],
    ['Resolved', 'False', 'ConfigMapNotFound'],
  ]);
  const removing = computeModelStatus({ model: model(), nodes: [view('a', false, 'Trusted')], removingFrom: ['a'], existing: undefined, now: 0 });
  expect(removing.conditions?.[0]).toMatchObject({ reason: 'Removing', message: expect.stringContaining('1 node') });
});
