// The failure gauges name exactly the failing nodes and models, and nothing else.
import { Registry } from 'prom-client';
import type { SecAINode } from '../../../api/gen/crd-types.js';
import { FleetMetrics } from './metrics.js';

function node(name: string, compliant: 'True' | 'False', models: NonNullable<SecAINode['status']>['models'] = []): SecAINode {
  return {
    apiVersion: 'secai.io/v1alpha1',
    kind: 'SecAINode',
    metadata: { name },
    spec: {},
    status: {
      conditions: [{ type: 'Compliant', status: compliant, reason: compliant === 'True' ? 'PlanEnforced' : 'PlanNotApplied', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }],
      models,
    },
  };
}

async function scrape(nodes: SecAINode[]): Promise<string> {
  const registry = new Registry();
  new FleetMetrics(registry, { secaiNodes: () => nodes, models: () => [], egressPolicies: () => [], vaultPolicies: () => [] });
  return registry.metrics();
}

it('lists each non-compliant node with its reason, and no compliant one', async () => {
  const text = await scrape([node('a', 'True'), node('b', 'False'), node('c', 'False')]);
  const lines = text.split('\n').filter((l) => l.startsWith('secai_node_not_compliant{'));
  expect(lines).toEqual(['secai_node_not_compliant{node="b",reason="PlanNotApplied"} 1', 'secai_node_not_compliant{node="c",reason="PlanNotApplied"} 1']);
});

it('lists each rejected model per node with its stage and reason, and no trusted one', async () => {
  const sha = 'a'.repeat(64);
  const text = await scrape([
    node('a', 'True', [{ name: 'good', sha256: sha, state: 'Trusted' }]),
    node('b', 'True', [
      { name: 'bad', sha256: sha, state: 'Rejected', stage: 'Format', reason: 'ChatTemplateInjection' },
      { name: 'good', sha256: sha, state: 'Trusted' },
    ]),
  ]);
  const lines = text.split('\n').filter((l) => l.startsWith('secai_model_rejected{'));
  expect(lines).toEqual(['secai_model_rejected{model="bad",node="b",stage="Format",reason="ChatTemplateInjection"} 1']);
});

it('forgets a failure once it is resolved', async () => {
  const nodes = [node('b', 'False')];
  const registry = new Registry();
  new FleetMetrics(registry, { secaiNodes: () => nodes, models: () => [], egressPolicies: () => [], vaultPolicies: () => [] });
  expect(await registry.metrics()).toContain('secai_node_not_compliant{node="b"');
  nodes[0] = node('b', 'True');
  expect(await registry.metrics()).not.toContain('secai_node_not_compliant{node="b"');
});
