// When a lab fleet has converged: every node Ready, the model Trusted everywhere, the egress policy
// enforced and the vault policy met on every node, and the model served on every node.
import { resourcePath } from '../../api/crd/paths.js';
import type { EgressPolicy, InferenceService, Model, SecAINode, VaultPolicy } from '../../api/gen/crd-types.js';
import type { KubeClient } from '../../operator/src/runtime/kube-client.js';
import { LAB_MODEL, LAB_SERVICE } from './lab-samples.js';

function condition(node: SecAINode, type: string): string {
  return node.status?.conditions?.find((c) => c.type === type)?.status ?? 'Unknown';
}

/** What is still missing, or an empty list when the fleet has converged. */
export async function convergenceGaps(kube: KubeClient, nodeCount: number): Promise<string[]> {
  const list = async <T>(plural: string) => (await kube.request<{ items: T[] }>({ method: 'GET', path: resourcePath(plural) })).items;
  const gaps: string[] = [];
  const nodes = await list<SecAINode>('secainodes');
  if (nodes.length !== nodeCount) gaps.push(`${nodes.length}/${nodeCount} SecAINodes`);
  for (const node of nodes) {
    for (const type of ['Ready', 'Compliant', 'Attested', 'AuditVerified']) {
      if (condition(node, type) !== 'True') gaps.push(`${node.metadata.name} ${type}=${condition(node, type)}`);
    }
  }
  const model = (await list<Model>('models')).find((m) => m.metadata.name === LAB_MODEL);
  if (model?.status?.phase !== 'Trusted') gaps.push(`model ${LAB_MODEL} ${model?.status?.phase ?? 'absent'}`);
  const egress = (await list<EgressPolicy>('egresspolicies'))[0];
  if ((egress?.status?.nodes?.enforced ?? 0) !== nodeCount) gaps.push(`egress enforced on ${egress?.status?.nodes?.enforced ?? 0}/${nodeCount}`);
  const vault = (await list<VaultPolicy>('vaultpolicies'))[0];
  if ((vault?.status?.nodes?.compliant ?? 0) !== nodeCount) gaps.push(`vault compliant on ${vault?.status?.nodes?.compliant ?? 0}/${nodeCount}`);
  const service = (await list<InferenceService>('inferenceservices')).find((s) => s.metadata.name === LAB_SERVICE);
  if ((service?.status?.nodes?.ready ?? 0) !== nodeCount) gaps.push(`${LAB_SERVICE} serving on ${service?.status?.nodes?.ready ?? 0}/${nodeCount}`);
  return gaps;
}

export async function waitForConvergence(kube: KubeClient, nodeCount: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gaps: string[] = [];
  while (Date.now() < deadline) {
    gaps = await convergenceGaps(kube, nodeCount).catch((err: Error) => [err.message]);
    if (gaps.length === 0) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`the fleet did not converge within ${timeoutMs / 1000} s: ${gaps.join('; ')}`);
}
