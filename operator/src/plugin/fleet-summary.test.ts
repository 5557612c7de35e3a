// What `kubectl secai status` and `why` say, from custom resources and Events.
import type { Condition, EgressPolicy, Model, SecAINode, VaultPolicy } from '../../../api/gen/crd-types.js';
import { explainNode, renderFleetSummary, summarizeFleet } from './fleet-summary.js';

const c = (type: string, status: Condition['status'], reason: string, message = ''): Condition => ({ type, status, reason, message, lastTransitionTime: '2026-12-01T10:00:00Z' });
const healthy = (name: string): SecAINode => ({
  apiVersion: 'secai.io/v1alpha1',
  kind: 'SecAINode',
  metadata: { name },
  spec: {},
  status: { agent: { connected: true }, conditions: [c('Ready', 'True', 'Ready'), c('Compliant', 'True', 'Compliant'), c('Attested', 'True', 'Attested'), c('AuditVerified', 'True', 'Verified')] },
});
const drifting: SecAINode = {
  ...healthy('node-b'),
  status: {
    agent: { connected: true },
    plan: { generation: 4, digest: 'a'.repeat(64), appliedGeneration: 4 },
    duties: [{ duty: 'egress', state: 'Failed', reason: 'RepairFailed', message: 'nft refused the repair', lastDrift: { kind: 'table-missing', detail: 'the inet secai table is gone', detectedAt: '2026-12-01T10:00:00Z' } }],
    vault: { encrypted: true, sealed: false, locked: false, compliant: false, policy: 'fleet-vault', reasons: ['NotSealed'] },
    conditions: [c('Ready', 'False', 'NotCompliant'), c('Compliant', 'False', 'EgressDrift', 'egress: table-missing'), c('Attested', 'True', 'Attested'), c('AuditVerified', 'Unknown', 'AwaitingAuditHead')],
  },
};
const model = (name: string, phase: 'Trusted' | 'Rejected'): Model =>
  ({
    apiVersion: 'secai.io/v1alpha1',
    kind: 'Model',
    metadata: { name },
    status: { phase, nodes: { desired: 2, trusted: phase === 'Trusted' ? 2 : 0, pending: 0, rejected: phase === 'Rejected' ? 2 : 0, contained: 0 }, ...(phase === 'Rejected' ? { rejection: { node: 'node-a', stage: 'Static', reason: 'PickleOpcodes' } } : {}) },
  }) as Model;

it('counts nodes by condition, names each failing node and why, and lists models, policies and rollouts', () => {
  const egress = { apiVersion: 'secai.io/v1alpha1', kind: 'EgressPolicy', metadata: { name: 'site' }, status: { nodes: { matched: 2, enforced: 1, failed: 0, pending: 1 }, rollout: { state: 'Progressing', generation: 3, updated: 1, message: 'canary first' }, conditions: [c('Ready', 'False', 'RolloutProgressing')] } } as EgressPolicy;
  const vault = { apiVersion: 'secai.io/v1alpha1', kind: 'VaultPolicy', metadata: { name: 'fleet-vault' }, status: { nodes: { matched: 2, applied: 2, compliant: 1, nonCompliant: 1, unknown: 0 }, nonCompliantReasons: [{ reason: 'NotSealed', nodes: 1 }], conditions: [c('Ready', 'False', 'NodesNotCompliant')] } } as VaultPolicy;
  const summary = summarizeFleet({ nodes: [drifting, healthy('node-a')], models: [model('b', 'Rejected'), model('a', 'Trusted')], egressPolicies: [egress], vaultPolicies: [vault], inferenceServices: [] });
  expect(summary.nodes.conditions.Compliant).toEqual({ True: 1, False: 1, Unknown: 0 });
  expect(summary.nodes.conditions.AuditVerified).toEqual({ True: 1, False: 0, Unknown: 1 });
  expect(summary.nodes.failing.map((n) => [n.name, n.problems.map((p) => p.reason)])).toEqual([['node-b', ['NotCompliant', 'EgressDrift', 'AwaitingAuditHead']]]);
  expect(summary.models.map((m) => m.name)).toEqual(['a', 'b']);
  expect(summary.models[1]!.rejection).toEqual({ node: 'node-a', stage: 'Static', reason: 'PickleOpcodes' });
  expect(summary.rollouts).toEqual([{ policy: 'site', state: 'Progressing', generation: 3, updated: 1, message: 'canary first' }]);
  const text = renderFleetSummary(summary);
  expect(text).toMatch(/^Compliant\s+1\s+1\s+0$/m);
  expect(text).toMatch(/^node-b\s+Compliant=False\s+EgressDrift\s+egress: table-missing$/m);
  expect(text).toMatch(/^b\s+Rejected\s+0\/2\s+2\s+Static\/PickleOpcodes on node-a$/m);
  expect(text).toMatch(/^VaultPolicy\s+fleet-vault\s+False\s+NodesNotCompliant\s+1\/2 compliant \(NotSealed on 1\)$/m);
});

it('explains a node from its conditions, duties, drift and vault, then its Events oldest first', () => {
  const text = explainNode(drifting, [
    { type: 'Normal', reason: 'EgressDriftRepaired', note: 'repaired', eventTime: '2026-12-01T09:00:01.000000Z', regarding: { name: 'node-b' } },
    { type: 'Warning', reason: 'EgressDrift', note: 'egress: table-missing', eventTime: '2026-12-01T09:00:00.000000Z', regarding: { name: 'node-b' } },
    { type: 'Warning', reason: 'Other', note: 'not this node', eventTime: '2026-12-01T08:00:00.000000Z', regarding: { name: 'node-a' } },
  ]);
  expect(text).toContain('Compliant=False because EgressDrift: egress: table-missing (since 2026-12-01T10:00:00Z)');
  expect(text).toContain('duty egress is Failed (RepairFailed): nft refused the repair');
  expect(text).toContain('duty egress last drift: table-missing at 2026-12-01T10:00:00Z, not repaired — the inet secai table is gone');
  expect(text).toContain('the vault does not satisfy fleet-vault: NotSealed');
  expect(text).not.toContain('not this node');
  expect(text.indexOf('EgressDrift: egress')).toBeLessThan(text.indexOf('EgressDriftRepaired'));
  expect(explainNode(healthy('node-a'), [])).toContain('node-a is Ready, Compliant, Attested and AuditVerified.');
});
