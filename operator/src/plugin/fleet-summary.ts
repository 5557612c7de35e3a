// `kubectl secai status` and `kubectl secai why`: the fleet and one node in words, for people who do
// not read YAML. Pure functions of the custom resources and Events, so that what the plugin prints
// is tested without a cluster.
import type { Condition, EgressPolicy, InferenceService, Model, SecAINode, VaultPolicy } from '../../../api/gen/crd-types.js';

export const NODE_CONDITIONS = ['Ready', 'Compliant', 'Attested', 'AuditVerified'] as const;
type NodeCondition = (typeof NODE_CONDITIONS)[number];

export interface FleetObjects {
  nodes: SecAINode[];
  models: Model[];
  egressPolicies: EgressPolicy[];
  vaultPolicies: VaultPolicy[];
  inferenceServices: InferenceService[];
}

export interface FleetSummary {
  nodes: {
    total: number;
    conditions: Record<NodeCondition, { True: number; False: number; Unknown: number }>;
    /** Each node with a condition that is not True, and why. */
    failing: { name: string; problems: { condition: string; status: string; reason: string; message: string }[] }[];
  };
  models: { name: string; phase: string; trusted: number; desired: number; rejected: number; rejection?: { node: string; stage: string; reason: string } }[];
  policies: { kind: string; name: string; ready: string; reason: string; detail: string }[];
  rollouts: { policy: string; state: string; generation: number; updated: number; message?: string }[];
}

export interface KubeEvent {
  type: string;
  reason: string;
  note?: string;
  eventTime?: string;
  deprecatedLastTimestamp?: string;
  metadata?: { creationTimestamp?: string };
  regarding?: { kind?: string; name?: string };
}

const byName = <T extends { metadata: { name?: string } }>(a: T, b: T) => ((a.metadata.name ?? '') < (b.metadata.name ?? '') ? -1 : 1);
const conditionOf = (conditions: readonly Condition[] | undefined, type: string) => conditions?.find((c) => c.type === type);

export function summarizeFleet(objects: FleetObjects): FleetSummary {
  const conditions = Object.fromEntries(NODE_CONDITIONS.map((c) => [c, { True: 0, False: 0, Unknown: 0 }])) as FleetSummary['nodes']['conditions'];
  const failing: FleetSummary['nodes']['failing'] = [];
  for (const node of [...objects.nodes].sort(byName)) {
    const problems: FleetSummary['nodes']['failing'][number]['problems'] = [];
    for (const type of NODE_CONDITIONS) {
      const c = conditionOf(node.status?.conditions, type);
      const status = c?.status ?? 'Unknown';
      conditions[type][status] += 1;
      if (status !== 'True') problems.push({ condition: type, status, reason: c?.reason ?? 'NotReported', message: c?.message ?? 'no status yet' });
    }
    if (problems.length > 0) failing.push({ name: node.metadata.name ?? '', problems });
  }
  const models = [...objects.models].sort(byName).map((m) => ({
    name: m.metadata.name ?? '',
    phase: m.status?.phase ?? 'Pending',
    trusted: m.status?.nodes?.trusted ?? 0,
    desired: m.status?.nodes?.desired ?? 0,
    rejected: m.status?.nodes?.rejected ?? 0,
    ...(m.status?.rejection ? { rejection: { node: m.status.rejection.node, stage: m.status.rejection.stage, reason: m.status.rejection.reason } } : {}),
  }));
  const ready = (conditions: readonly Condition[] | undefined) => conditionOf(conditions, 'Ready');
  const policies: FleetSummary['policies'] = [
    ...[...objects.egressPolicies].sort(byName).map((p) => {
      const n = p.status?.nodes;
      return { kind: 'EgressPolicy', name: p.metadata.name ?? '', ready: ready(p.status?.conditions)?.status ?? 'Unknown', reason: ready(p.status?.conditions)?.reason ?? 'NotReported', detail: n ? `${n.enforced}/${n.matched} enforced, ${n.failed} failed, ${n.pending} pending` : 'no status yet' };
    }),
    ...[...objects.vaultPolicies].sort(byName).map((p) => {
      const n = p.status?.nodes;
      const reasons = (p.status?.nonCompliantReasons ?? []).map((r) => `${r.reason} on ${r.nodes}`).join(', ');
      return { kind: 'VaultPolicy', name: p.metadata.name ?? '', ready: ready(p.status?.conditions)?.status ?? 'Unknown', reason: ready(p.status?.conditions)?.reason ?? 'NotReported', detail: n ? `${n.compliant}/${n.applied} compliant${reasons ? ` (${reasons})` : ''}` : 'no status yet' };
    }),
    ...[...objects.inferenceServices].sort(byName).map((s) => {
      const n = s.status?.nodes;
      const reasons = (s.status?.notReadyReasons ?? []).map((r) => `${r.reason} on ${r.nodes}`).join(', ');
      return { kind: 'InferenceService', name: s.metadata.name ?? '', ready: ready(s.status?.conditions)?.status ?? 'Unknown', reason: ready(s.status?.conditions)?.reason ?? 'NotReported', detail: n ? `${n.ready}/${n.selected} serving${reasons ? ` (${reasons})` : ''}` : 'no status yet' };
    }),
  ];
  const rollouts = objects.egressPolicies
    .filter((p) => p.status?.rollout && p.status.rollout.state !== 'Complete')
    .sort(byName)
    .map((p) => ({ policy: p.metadata.name ?? '', state: p.status!.rollout!.state, generation: p.status!.rollout!.generation, updated: p.status!.rollout!.updated, ...(p.status!.rollout!.message ? { message: p.status!.rollout!.message } : {}) }));
  return { nodes: { total: objects.nodes.length, conditions, failing }, models, policies, rollouts };
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function renderFleetSummary(s: FleetSummary): string {
  const out: string[] = [];
  out.push(`NODES (${s.nodes.total})`);
  out.push(table(['CONDITION', 'TRUE', 'FALSE', 'UNKNOWN'], NODE_CONDITIONS.map((c) => [c, String(s.nodes.conditions[c].True), String(s.nodes.conditions[c].False), String(s.nodes.conditions[c].Unknown)])));
  if (s.nodes.failing.length > 0) {
    out.push('', 'FAILING NODES');
    out.push(table(['NODE', 'CONDITION', 'REASON', 'MESSAGE'], s.nodes.failing.flatMap((n) => n.problems.map((p) => [n.name, `${p.condition}=${p.status}`, p.reason, p.message]))));
  }
  out.push('', `MODELS (${s.models.length})`);
  if (s.models.length > 0) {
    out.push(table(['MODEL', 'PHASE', 'TRUSTED', 'REJECTED', 'REJECTION'], s.models.map((m) => [m.name, m.phase, `${m.trusted}/${m.desired}`, String(m.rejected), m.rejection ? `${m.rejection.stage}/${m.rejection.reason} on ${m.rejection.node}` : ''])));
  }
  out.push('', `POLICIES AND SERVICES (${s.policies.length})`);
  if (s.policies.length > 0) out.push(table(['KIND', 'NAME', 'READY', 'REASON', 'NODES'], s.policies.map((p) => [p.kind, p.name, p.ready, p.reason, p.detail])));
  out.push('', `ROLLOUTS IN PROGRESS (${s.rollouts.length})`);
  if (s.rollouts.length > 0) out.push(table(['POLICY', 'STATE', 'GENERATION', 'UPDATED', 'MESSAGE'], s.rollouts.map((r) => [r.policy, r.state, String(r.generation), String(r.updated), r.message ?? ''])));
  return `${out.join('\n')}\n`;
}

const eventTime = (e: KubeEvent) => e.eventTime ?? e.deprecatedLastTimestamp ?? e.metadata?.creationTimestamp ?? '';

/**
 * The chain of reasons a node is not compliant, not attested or not verified: each failing
 * condition with what in the status explains it (duties, drift, vault findings, attestation and
 * audit failures), then the Events about the node, oldest first.
 */
export function explainNode(node: SecAINode, events: readonly KubeEvent[]): string {
  const name = node.metadata.name ?? '';
  const s = node.status;
  const out: string[] = [];
  const problems = NODE_CONDITIONS.map((type) => ({ type, c: conditionOf(s?.conditions, type) })).filter(({ c }) => c?.status !== 'True');
  if (problems.length === 0) out.push(`${name} is Ready, Compliant, Attested and AuditVerified.`);
  for (const { type, c } of problems) {
    out.push(`${type}=${c?.status ?? 'Unknown'} because ${c?.reason ?? 'the operator has not written it yet'}${c?.message ? `: ${c.message}` : ''}${c?.lastTransitionTime ? ` (since ${c.lastTransitionTime})` : ''}`);
    if (type === 'Ready' && !s?.agent?.connected) out.push(`  the agent is not connected${s?.agent?.lastSeen ? `; last seen ${s.agent.lastSeen}` : ''}`);
    if (type === 'Compliant') {
      for (const d of s?.duties ?? []) {
        if (d.state === 'OK' && !d.lastDrift) continue;
        if (d.state !== 'OK') out.push(`  duty ${d.duty} is ${d.state} (${d.reason})${d.message ? `: ${d.message}` : ''}`);
        if (d.lastDrift) out.push(`  duty ${d.duty} last drift: ${d.lastDrift.kind} at ${d.lastDrift.detectedAt}${d.lastDrift.repairedAt ? `, repaired ${d.lastDrift.repairedAt}` : ', not repaired'}${d.lastDrift.detail ? ` — ${d.lastDrift.detail}` : ''}`);
      }
      if (s?.plan?.error) out.push(`  the agent refused its plan: ${s.plan.error}`);
      if (s?.plan && s.plan.appliedGeneration !== s.plan.generation) out.push(`  it holds plan generation ${s.plan.appliedGeneration ?? 'none'}; the current one is ${s.plan.generation}`);
      if (s?.vault && !s.vault.compliant) out.push(`  the vault does not satisfy ${s.vault.policy ?? 'its VaultPolicy'}: ${(s.vault.reasons ?? []).join(', ') || 'no reason given'}`);
    }
    if (type === 'Attested' && s?.attestation) {
      const a = s.attestation as typeof s.attestation & { failure?: string };
      out.push(`  Secure Boot ${a.secureBoot}, TPM ${a.tpmPresent ? 'present' : 'absent'}${a.mismatchedPcrs?.length ? `, PCRs ${a.mismatchedPcrs.join(', ')} differ` : ''}${a.failure ? `; ${a.failure}` : ''}`);
    }
    if (type === 'AuditVerified' && s?.audit?.failure) out.push(`  the audit log failed verification: ${s.audit.failure}`);
  }
  if (s?.tor && s.tor.state === 'Unavailable') out.push(`Tor is unavailable (${s.tor.reason ?? 'no reason'}): ${s.tor.message ?? ''}; via: Tor destinations are refused meanwhile`);
  const mine = events.filter((e) => e.regarding?.name === name).sort((a, b) => (eventTime(a) < eventTime(b) ? -1 : 1));
  out.push('', mine.length > 0 ? 'EVENTS (oldest first)' : 'No Events about this node.');
  for (const e of mine) out.push(`  ${eventTime(e)}  ${e.type.padEnd(7)}  ${e.reason}: ${e.note ?? ''}`);
  return `${out.join('\n')}\n`;
}
