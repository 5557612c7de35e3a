// The agent core: it re-applies the stored plan at start, refuses plans that are not its own or do
// not match their digest, applies duties in order, persists, audits and reports.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { NodePlan, type Report } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { planDigest } from '../../../api/proto/protocol.js';
import { MemoryAuditSink } from '../audit/audit-sink.js';
import { NodeAgent, type Duty } from './node-agent.js';
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

/** A duty at the edge of the unit: it records what it was asked to do. */
function recordingDuty(name: string, log: string[], fail?: string): Duty {
  return {
    name,
    apply: async (p) => {
      log.push(`${name}:${p.generation}`);
      if (fail) throw new Error(fail);
    },
    contribute: async (r: Report) => {
      r.planError ||= '';
    },
  };
}

function agent(duties: Duty[], audit = new MemoryAuditSink()) {
  return new NodeAgent({
    nodeName: 'node-a',
    version: 'test',
    capabilities: [],
    store: new PlanStore(dir),
    duties,
    audit,
    auditPublicKey: Buffer.alloc(32),
    logger: pino({ level: 'silent' }),
    registry: new Registry(),
  });
}

it('applies duties in order, persists the plan, and re-applies it at the next start', async () => {
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
  expect(a.appliedPlan()?.generation).toBe(2);
  expect(audit.events.at(-1)).toMatchObject({ type: 'plan.rejected' });
  expect((await a.buildReport()).planError).toMatch(why);
});

it('reports a duty failure while the other duties still enforce the plan', async () => {
  const log: string[] = [];
  const a = agent([recordingDuty('egress', log), recordingDuty('models', log, 'store unwritable'), recordingDuty('vault', log)]);
  await a.receivePlan(plan('node-a', 5));
  expect(log).toEqual(['egress:5', 'models:5', 'vault:5']);
  const report = await a.buildReport();
  expect(report).toMatchObject({ planGeneration: 5, planError: 'models: store unwritable' });
});

it('collapses plans that arrive while one applies to the newest', async () => {
  const log: string[] = [];
  let release: () => void = () => {};
  const slow: Duty = {
    name: 'slow',
    apply: async (p) => {
      log.push(`slow:${p.generation}`);
      if (p.generation === 1) await new Promise<void>((r) => (release = r));
    },
    contribute: async () => {},
  };
  const a = agent([slow]);
  const done = a.receivePlan(plan('node-a', 1));
  void a.receivePlan(plan('node-a', 2));
  void a.receivePlan(plan('node-a', 3));
  release();
  await done;
  await a.receivePlan(plan('node-a', 3));
  expect(log).toEqual(['slow:1', 'slow:3', 'slow:3']);
});

it('refuses to start from a stored plan that was tampered with', async () => {
  const p = plan('node-a', 7);
  const tampered = NodePlan.encode({ ...p, cordoned: true }).finish();
  writeFileSync(join(dir, 'plan.pb'), tampered);
  await expect(agent([]).start()).rejects.toThrow(/does not match its digest/);
});
