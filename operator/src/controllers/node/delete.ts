// A Node that left the fleet (deleted, or no longer matching the fleet selector): its SecAINode
// goes, and so does our taint if the Node is still there. Idempotent: safe to run again.
import { resourcePath } from '../../../../api/crd/paths.js';
import type { NodeControllerContext } from './context.js';
import type { Node } from '../../fleet/caches.js';
import { CONTENT_TYPE, KubeApiError } from '../../runtime/kube-client.js';
import type { ReconcileContext } from '../../runtime/controller.js';
import { taintPatch, taintsFor } from './taint.js';

export async function reconcileRemovedNode(ctx: NodeControllerContext, name: string, rc: ReconcileContext): Promise<void> {
  if (ctx.caches.secaiNodes.get(name)) {
    const res = await ctx.client.raw({ method: 'DELETE', path: resourcePath('secainodes', name) });
    if (res.status !== 404 && (res.status < 200 || res.status >= 300)) {
      throw new KubeApiError(res.status, res.body as never, 'DELETE', resourcePath('secainodes', name));
    }
    rc.log.info('node left the fleet; SecAINode removed');
  }
  ctx.plans.remove(name);
  ctx.intake.forget(name);
  // The Node is out of the cache's selector but may still exist: take our taint off it.
  const got = await ctx.client.raw<Node>({ method: 'GET', path: `/api/v1/nodes/${encodeURIComponent(name)}` });
  if (got.status === 404) return;
  if (got.status !== 200) throw new KubeApiError(got.status, got.body as never, 'GET', `/api/v1/nodes/${name}`);
  const taints = taintsFor(got.body.spec?.taints, true);
  if (!taints) return;
  await ctx.client.request({
    method: 'PATCH',
    path: `/api/v1/nodes/${encodeURIComponent(name)}`,
    body: taintPatch(got.body.metadata.resourceVersion ?? '', taints),
    contentType: CONTENT_TYPE.jsonPatch,
  });
  rc.log.info('not-compliant taint removed from a node outside the fleet');
}
