// Reconciles one EgressPolicy: advances its rollout (persisting the record before anything acts on
// it), rolls up enforcement into its status, and announces rollout events.
import { API_VERSION } from '../../../../api/crd/common.js';
import { resourcePath } from '../../../../api/crd/paths.js';
import type { EgressPolicy, EgressPolicyStatus } from '../../../../api/gen/crd-types.js';
import { plansPrimed, PRIMING_RETRY_MS } from '../../fleet/context.js';
import type { EgressPolicyControllerContext } from './context.js';
import { FIELD_MANAGER } from '../../fleet/names.js';
import { recordConfigMap, recordConfigMapName, type RolloutRecord } from '../../fleet/rollout-records.js';
import { allowlistDigest } from '../../plan/egress.js';
import { isDeleting } from '../../plan/models.js';
import { semanticallyEqual } from '../../runtime/apply.js';
import type { ReconcileContext, ReconcileResult } from '../../runtime/controller.js';
import { KubeApiError } from '../../runtime/kube-client.js';
import { stepRollout, type NodeEnforcement } from './rollout.js';
import { computeEgressStatus } from './status.js';

/** While a rollout progresses, look again at least this often (node reports also wake it). */
const PROGRESS_POLL_MS = 5_000;

function recordPath(ctx: EgressPolicyControllerContext, policy: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(ctx.namespace)}/configmaps/${encodeURIComponent(recordConfigMapName(policy))}`;
}

/**
 * Whether `node` enforces the plan in which `policy` first appeared at `revision`. A plan error
 * counts against the revision only when reported after that plan went out: an older error is about
 * an older plan (and a node that says nothing fails at the progress deadline).
 */
export function enforcementOf(ctx: EgressPolicyControllerContext, policy: string, node: string, revision: string): NodeEnforcement {
  const since = ctx.plans.current(node)?.egressSince.get(policy);
  if (!since || since.revision !== revision) return { enforced: false };
  const report = ctx.intake.observations(node)?.report;
  if (report && report.receivedAt >= since.at && report.planError) return { enforced: false, error: report.planError };
  const status = ctx.caches.secaiNodes.get(node)?.status?.plan;
  const applied = report?.appliedGeneration ?? status?.appliedGeneration ?? 0;
  const error = report ? report.planError : status?.error;
  return { enforced: applied >= since.generation && !error };
}

export async function reconcileEgressPolicy(ctx: EgressPolicyControllerContext, name: string, rc: ReconcileContext): Promise<ReconcileResult | void> {
  const path = resourcePath('egresspolicies', name);
  const policy = ctx.caches.egressPolicies.get(name);
  if (!policy || isDeleting(policy)) {
    await removeRecord(ctx, name);
    ctx.applier.forget(path);
    return;
  }
  if (!plansPrimed(ctx)) return { requeueAfterMs: PRIMING_RETRY_MS };

  const previous = ctx.rollouts.get(name);
  const outcome = stepRollout({
    policy: { name, uid: policy.metadata.uid ?? '', generation: policy.metadata.generation ?? 0, spec: policy.spec },
    record: previous,
    nodes: ctx.caches.nodes.list().map((n) => ({ name: n.metadata.name ?? '', labels: n.metadata.labels ?? {} })),
    enforcement: (node, revision) => enforcementOf(ctx, name, node, revision),
    now: ctx.clock.now(),
  });
  if (!semanticallyEqual(outcome.record, previous)) await writeRecord(ctx, policy, outcome.record);

  const before = ctx.applier.observedStatus<EgressPolicyStatus>(path, policy);
  const status = computeEgressStatus(
    policy.metadata.generation ?? 0,
    allowlistDigest({ name, spec: policy.spec }),
    outcome,
    before,
    ctx.clock.now(),
  );
  await ctx.applier.applyStatus({ path, apiVersion: API_VERSION, kind: 'EgressPolicy', name }, status, policy);
  for (const event of outcome.events) await ctx.events.record(policy, event.type, event.reason, 'Rollout', event.note);
  if (outcome.events.length) rc.log.info({ events: outcome.events.map((e) => e.reason), state: outcome.record.state }, 'rollout progressed');

  if (outcome.record.state !== 'Progressing') return;
  return { requeueAfterMs: Math.min(PROGRESS_POLL_MS, outcome.nextDeadlineMs ?? PROGRESS_POLL_MS) };
}

async function writeRecord(ctx: EgressPolicyControllerContext, policy: EgressPolicy, record: RolloutRecord): Promise<void> {
  const written = await ctx.client.request<{ metadata: { resourceVersion?: string } }>({
    method: 'PATCH',
    path: recordPath(ctx, record.policy),
    query: { fieldManager: FIELD_MANAGER, force: true },
    body: recordConfigMap(record, ctx.namespace, policy),
    contentType: 'application/apply-patch+yaml',
  });
  ctx.rollouts.wrote(record, written.metadata.resourceVersion ?? '');
}

async function removeRecord(ctx: EgressPolicyControllerContext, policy: string): Promise<void> {
  ctx.rollouts.forgetWritten(policy);
  if (!ctx.caches.configMaps.get(`${ctx.namespace}/${recordConfigMapName(policy)}`)) return;
  const res = await ctx.client.raw({ method: 'DELETE', path: recordPath(ctx, policy) });
  if (res.status !== 404 && (res.status < 200 || res.status >= 300)) throw new KubeApiError(res.status, res.body as never, 'DELETE', recordPath(ctx, policy));
}
