// The agent core: it re-applies the stored plan at start, refuses plans that are not its own or do
// not match their digest, runs each duty's convergence in order (egress first) on every plan and
// then on the duty's own interval, persists, audits drift and reports each duty's structured result.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { DutyStatus, NodePlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DriftKind, DutyReason, type DutyName } from '../../../api/proto/duty-results.js';
import { planDigest } from '../../../api/proto/protocol.js';
import { MemoryAuditSink } from '../audit/audit-sink.js';
import { NodeAgent, type Duty, type DutyContext, type DutyOutcome } from './node-agent.js';
import { PlanStore } from './plan-store.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'agent-core-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function plan(node: string, generation: number, policies: string[] = []): NodePlan {
  const p = NodePlan.fromPartial({ nodeName: node, generation, egress: { policies } });
  return { ...p, digest: planDigest(p) };
}

const ok: DutyOutcome = { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message: 'fine' };

/** A duty at the edge of the unit: it records each convergence and answers what it is told to. */
function recordingDuty(name: DutyName, log: string[], outcome: (p: NodePlan, ctx: DutyContext) => Promise<DutyOutcome> = async () => ok, resyncMs = 60_000): Duty {
  return {
    name,
    resyncMs,
    converge: async (p, ctx) => {
      log.push(`${name}:${p.generation}`);
      return outcome(p, ctx);
    },
    contribute: async () => {},
  };
}

function agent(duties: Duty[], audit = new MemoryAuditSink(), registry = new Registry()) {
  return new NodeAgent({
    nodeName: 'node-a',
    version: 'test',
    capabilities: [],
    store: new PlanStore(dir),
    duties,
    audit,
    auditPublicKey: Buffer.alloc(32),
    logger: pino({ level: 'silent' }),
    registry,
  });
}

it('converges duties in order, persists the plan, and re-applies it at the next start', async () => {
  const log: string[] = [];
  const audit = new MemoryAuditSink();
  const first = agent([recordingDuty('egress', log), recordingDuty('models', log)], audit);
  await first.receivePlan(plan('node-a', 3, ['p1']));
  expect(log).toEqual(['egress:3', 'models:3']);
  expect(audit.events.map((e) => e.type)).toEqual(['plan.applied']);
  await first.stop();

  const second = agent([recordingDuty('egress', log)]);
  await second.start();
  expect(log.at(-1)).toBe('egress:3');
  expect(second.hello()).toMatchObject({ nodeName: 'node-a', appliedPlanGeneration: 3 });
  await second.stop();
});

it.each([
  ['another node', () => plan('node-b', 4), /for node node-b/],
  ['a digest that does not match', () => ({ ...plan('node-a', 4), digest: 'f'.repeat(64) }), /digest/],
  ['an older generation', () => plan('node-a', 1), /older than the applied 2/],
])('refuses a plan for %s and keeps the current one', async (_what, make, why) => {
  const log: string[] = [];
  const audit = new MemoryAuditSink();
  const a = agent([recordingDuty('egress', log)], audit);
  await a.receivePlan(plan('node-a', 2));
  await a.receivePlan(make());
  expect(log).toEqual(['egress:2']);
  expect(a.currentPlan()?.generation).toBe(2);
  expect(audit.events.at(-1)).toMatchObject({ type: 'plan.rejected' });
  expect((await a.buildReport()).planError).toMatch(why);
});

it('reports a failing duty as a structured result while the other duties still converge', async () => {
  const log: string[] = [];
  const failing = recordingDuty('models', log, async () => {
    throw new Error('store unwritable');
  });
  const a = agent([recordingDuty('egress', log), failing, recordingDuty('vault', log)]);
  await a.receivePlan(plan('node-a', 5));
  expect(log).toEqual(['egress:5', 'models:5', 'vault:5']);
  const report = await a.buildReport();
  expect(report.planError).toBe('');
  expect(report.duties.map((d) => [d.duty, d.status, d.reason])).toEqual([
    ['egress', DutyStatus.DUTY_STATUS_OK, 'Converged'],
    ['models', DutyStatus.DUTY_STATUS_FAILED, 'Failed'],
    ['vault', DutyStatus.DUTY_STATUS_OK, 'Converged'],
  ]);
  expect(report.duties[1]).toMatchObject({ message: 'store unwritable', planGeneration: 5, consecutiveFailures: 1 });
});

it('retries a failing duty with backoff on its own, and reports it converged once it does', async () => {
  let attempts = 0;
  const flaky = recordingDuty('egress', [], async () => {
    attempts++;
    if (attempts < 3) return { status: DutyStatus.DUTY_STATUS_FAILED, reason: DutyReason.NftFailed, message: 'nft refused' };
    return ok;
  });
  const a = agent([flaky]);
  await a.start();
  await a.receivePlan(plan('node-a', 1));
  const deadline = Date.now() + 10_000;
  while (attempts < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(attempts).toBe(3);
  expect(a.dutyResults()[0]).toMatchObject({ status: DutyStatus.DUTY_STATUS_OK, consecutiveFailures: 0 });
  await a.stop();
});

it('re-runs each duty on its resync interval while the plan stands', async () => {
  const log: string[] = [];
  const a = agent([recordingDuty('egress', log, async () => ok, 40)]);
  await a.start();
  await a.receivePlan(plan('node-a', 1));
  await new Promise((r) => setTimeout(r, 300));
  await a.stop();
  expect(log.filter((l) => l === 'egress:1').length).toBeGreaterThanOrEqual(4);
});

it('records a drift once, reports it Drifted before the repair, and repaired when the duty next converges', async () => {
  const audit = new MemoryAuditSink();
  const registry = new Registry();
  let tampered = false;
  let seenDuringRepair: DutyStatus | undefined;
  const a: NodeAgent = agent(
    [
      recordingDuty('egress', [], async (_p, ctx) => {
        if (!tampered) return ok;
        await ctx.drift(DriftKind.TableMissing, 'the inet secai table is gone');
        await ctx.drift(DriftKind.TableMissing, 'the inet secai table is gone');
        seenDuringRepair = a.dutyResults()[0]!.status;
        tampered = false;
        return ok;
      }),
    ],
    audit,
    registry,
  );
  await a.receivePlan(plan('node-a', 1));
  tampered = true;
  await a.wake('egress');
  expect(seenDuringRepair).toBe(DutyStatus.DUTY_STATUS_DRIFTED);
  const result = a.dutyResults()[0]!;
  expect(result).toMatchObject({ status: DutyStatus.DUTY_STATUS_OK, drifts: 1, lastDrift: { kind: 'table-missing', detail: 'the inet secai table is gone' } });
  expect(result.lastDrift!.repairedUnixMillis).toBeGreaterThanOrEqual(result.lastDrift!.detectedUnixMillis);
  expect(audit.events.map((e) => e.type)).toEqual(['plan.applied', 'drift.detected', 'drift.repaired']);
  expect(await registry.getSingleMetricAsString('secai_agent_drift_total')).toContain('secai_agent_drift_total{duty="egress",kind="table-missing"} 1');
});

it('keeps a drift open while its repair fails', async () => {
  let repairs = 0;
  const a = agent([
    recordingDuty('egress', [], async (_p, ctx) => {
      if (repairs++ === 0) return ok;
      await ctx.drift(DriftKind.RuleChanged, 'a rule was added');
      return { status: DutyStatus.DUTY_STATUS_FAILED, reason: DutyReason.RepairFailed, message: 'nft refused the repair' };
    }),
  ]);
  await a.receivePlan(plan('node-a', 1));
  await a.wake('egress');
  await a.wake('egress');
  const result = a.dutyResults()[0]!;
  expect(result).toMatchObject({ status: DutyStatus.DUTY_STATUS_FAILED, reason: 'RepairFailed', drifts: 1, lastDrift: { kind: 'rule-changed', repairedUnixMillis: 0 } });
});

it('collapses plans that arrive while one converges to the newest', async () => {
  const log: string[] = [];
  let release: () => void = () => {};
  const slow = recordingDuty('egress', log, async (p) => {
    if (p.generation === 1) await new Promise<void>((r) => (release = r));
    return ok;
  });
  const a = agent([slow]);
  const done = a.receivePlan(plan('node-a', 1));
  void a.receivePlan(plan('node-a', 2));
  void a.receivePlan(plan('node-a', 3));
  release();
  await done;
  await a.receivePlan(plan('node-a', 3));
  expect(log).toEqual(['egress:1', 'egress:3', 'egress:3']);
});

it('refuses to start from a stored plan that was tampered with', async () => {
  const p = plan('node-a', 7);
  const tampered = NodePlan.encode({ ...p, cordoned: true }).finish();
  writeFileSync(join(dir, 'plan.pb'), tampered);
  await expect(agent([]).start()).rejects.toThrow(/does not match its digest/);
});
