// EgressPolicy rollouts with simulated agents driven step by step: a changed policy reaches one
// canary first, then waves never more than maxUnavailable nodes released-but-not-enforcing; nodes
// not released keep the previous version; a restart mid-rollout continues it with the same nodes;
// a canary that fails (plan error, or no enforcement within the deadline) stops the rollout, which
// the conditions and an Event say.
import pino from 'pino';
import { startOperator, type OperatorHandle } from '../../operator/src/cmd/operator.js';
import { condition, FleetEnv, OPERATOR_NAMESPACE } from './support/fleet-env.js';
import { SimulatedAgent } from './support/simulated-agent.js';
import { delay, eventually } from './support/wait.js';

const NODES = ['r-0', 'r-1', 'r-2', 'r-3', 'r-4', 'r-5'];
let env: FleetEnv;
let operator: OperatorHandle;
let agents: SimulatedAgent[] = [];

async function start(): Promise<void> {
  operator = await startOperator({
    kubeconfig: env.kubeconfig,
    namespace: OPERATOR_NAMESPACE,
    metricsAddress: '127.0.0.1:0',
    logger: pino({ level: process.env.OPERATOR_LOG_LEVEL ?? 'silent' }),
    informerOptions: { backoff: { initialMs: 100, maxMs: 2000 } },
  });
  agents = NODES.map((n) => new SimulatedAgent(n, operator.intake, { autoApply: false }).connect());
}

beforeAll(async () => {
  env = await FleetEnv.start('rollout');
  for (const n of NODES) await env.createNode(n);
  await start();
  await eventually(() => agents.every((a) => a.latest), 30_000, 'first plans');
  for (const a of agents) a.apply();
}, 90_000);

afterAll(async () => {
  for (const a of agents) a.disconnect();
  await operator?.stop();
  await env?.stop();
}, 60_000);

/** Each version of the policy allows one marker address. */
const marker = (version: number) => `192.0.2.${version}`;
const spec = (version: number, rollout: Record<string, unknown> = {}) => ({
  allow: [{ ip: marker(version), ports: [{ port: 443 }] }],
  rollout: { canary: 1, maxUnavailable: 2, progressDeadlineSeconds: 30, ...rollout },
});
const versionOf = (a: SimulatedAgent) => {
  const ip = a.latest?.egress?.allow.find((r) => r.policy === 'waves')?.destination?.value;
  return ip ? Number(ip.split('.')[3]) : undefined;
};
const on = (version: number) => agents.filter((a) => versionOf(a) === version);
const policy = () => env.get('egresspolicies', 'waves');

/** Holds for a while: nothing else gets released while the test does not report. */
async function steady(version: number, count: number): Promise<SimulatedAgent[]> {
  await eventually(() => on(version).length === count, 15_000, `${count} node(s) on version ${version}`);
  await delay(1500);
  expect(on(version)).toHaveLength(count);
  return on(version);
}

it('releases to one canary, then in waves bounded by maxUnavailable, keeping unreleased nodes on the previous version', async () => {
  await env.apply('egresspolicies', { kind: 'EgressPolicy', metadata: { name: 'waves' }, spec: spec(1) });
  // A new policy: the canary gets it, nobody else does until the canary enforces it.
  const [canary] = await steady(1, 1);
  expect(agents.filter((a) => a !== canary).every((a) => versionOf(a) === undefined)).toBe(true);
  expect((await policy())?.status?.rollout).toMatchObject({ state: 'Progressing', updated: 1 });
  canary!.apply();
  // Then two at a time: released but not yet enforcing never exceeds maxUnavailable.
  const wave = (await steady(1, 3)).filter((a) => a !== canary);
  wave[0]!.apply();
  await steady(1, 4);
  for (const a of on(1)) a.apply();
  await steady(1, 6);
  for (const a of agents) a.apply();
  const complete = await eventually(async () => {
    const p = await policy();
    return condition(p, 'Ready')?.status === 'True' ? p : undefined;
  }, 15_000, 'the first rollout to complete');
  expect(complete.status).toMatchObject({ rollout: { state: 'Complete', updated: 6 }, nodes: { matched: 6, enforced: 6, failed: 0, pending: 0 } });

  // A change: the canary gets version 2 while the other five keep version 1.
  await env.apply('egresspolicies', { kind: 'EgressPolicy', metadata: { name: 'waves' }, spec: spec(2) });
  const [canary2] = await steady(2, 1);
  expect(on(1)).toHaveLength(5);
  canary2!.apply();
  const released = await steady(2, 3);
  expect(on(1)).toHaveLength(3);
  const waiting = on(1).map((a) => a.node).sort();

  // The operator restarts mid-rollout: the record keeps released nodes on 2 and the others on 1.
  for (const a of agents) a.disconnect();
  await operator.stop();
  await start();
  await eventually(() => agents.every((a) => a.latest), 30_000, 'plans after the restart');
  await delay(1500);
  expect(on(2).map((a) => a.node).sort()).toEqual(released.map((a) => a.node).sort());
  expect(on(1).map((a) => a.node).sort()).toEqual(waiting);
  for (const a of on(2)) a.apply();
  await steady(2, 5);
  for (const a of agents) a.apply();
  await steady(2, 6);
  for (const a of agents) a.apply();
  await eventually(async () => ((await policy())?.status?.rollout as { state?: string } | undefined)?.state === 'Complete', 15_000, 'the second rollout to complete');
  const events = await env.eventReasons('waves', ['RolloutStarted', 'RolloutStarted', 'RolloutComplete', 'RolloutComplete']);
  expect(events.filter((r) => r === 'RolloutStarted')).toHaveLength(2);
  expect(events.filter((r) => r === 'RolloutComplete')).toHaveLength(2);
}, 120_000);

it('stops at a canary that reports a plan error, and says so', async () => {
  for (const a of agents) a.autoApply = false;
  await env.apply('egresspolicies', { kind: 'EgressPolicy', metadata: { name: 'waves' }, spec: spec(3) });
  const [canary] = await eventually(() => (on(3).length === 1 ? on(3) : undefined), 15_000, 'the canary');
  for (const a of agents) a.autoApply = a !== canary;
  // Its agent could not apply the plan.
  canary!.send({ ...canary!.reportFor(), planError: 'nft: Could not process rule: No such file or directory' });
  const stopped = await eventually(async () => {
    const p = await policy();
    return (p?.status?.rollout as { state?: string })?.state === 'Stopped' ? p : undefined;
  }, 15_000, 'the rollout to stop');
  expect(condition(stopped, 'Ready')).toMatchObject({ status: 'False', reason: 'RolloutStopped' });
  expect(condition(stopped, 'Progressing')).toMatchObject({ status: 'False', reason: 'RolloutStopped' });
  expect(condition(stopped, 'Ready')?.message).toContain(`canary node ${canary!.node} failed: nft: Could not process rule`);
  await delay(1500);
  expect(on(3)).toEqual([canary]);
  expect(on(2)).toHaveLength(5);
  const events = await env.events('waves');
  expect(events.find((e) => e.reason === 'CanaryFailed')).toMatchObject({ type: 'Warning', note: expect.stringContaining(canary!.node) });
}, 60_000);

it('stops at a canary that has not enforced within progressDeadlineSeconds', async () => {
  for (const a of agents) a.autoApply = false;
  const started = Date.now();
  await env.apply('egresspolicies', { kind: 'EgressPolicy', metadata: { name: 'waves' }, spec: spec(4, { progressDeadlineSeconds: 5 }) });
  // This time the canary says nothing at all (and its earlier error is about an earlier plan).
  const [canary] = await eventually(() => (on(4).length === 1 ? on(4) : undefined), 15_000, 'the canary');
  for (const a of agents) a.autoApply = a !== canary;
  // The previous test left this policy's rollout Stopped: wait for the stop of this revision.
  const stopped = await eventually(async () => {
    const p = await policy();
    const stop = (p?.status?.rollout as { state?: string })?.state === 'Stopped' && condition(p, 'Ready')?.message?.includes('not enforced within');
    return stop ? p : undefined;
  }, 20_000, 'the rollout to stop at the deadline');
  expect(Date.now() - started).toBeGreaterThanOrEqual(4000);
  expect(condition(stopped, 'Ready')?.message).toContain('not enforced within 5s');
  expect(on(4)).toEqual([canary]);
  expect(stopped.status?.nodes).toMatchObject({ matched: 6, failed: 1 });
}, 60_000);
