// The operator verifies every node's audit log (issue 7, point 4), against the real API server, with
// agents holding real audit logs on real files behind the real channel (TLS, Pod-bound tokens). A
// healthy log stays verified across many heads; an agent that comes back with a modified, deleted,
// truncated, emptied or forked history, or with another key, is caught: AuditVerified=False with
// the failure as its reason, an Event, and the metrics. The verified head lives in SecAINode status,
// so an operator restarted while the log was cut still catches it; a failure stays until an
// administrator re-baselines the node.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { TOKEN_AUDIENCE } from '../../api/proto/protocol.js';
import { AuditDuty } from '../../agents/src/agent/duties/audit-duty.js';
import { NodeAgent } from '../../agents/src/agent/node-agent.js';
import { PlanStore } from '../../agents/src/agent/plan-store.js';
import { AuditLog } from '../../agents/src/audit/audit-log.js';
import { AgentChannelClient } from '../../agents/src/channel/client.js';
import { startOperator, type OperatorHandle } from '../../operator/src/cmd/operator.js';
import { AUDIT_REBASELINE_ANNOTATION } from '../../operator/src/fleet/names.js';
import { AuditAgent, auditEvent, rewriteLog, type ChannelEndpoint } from './support/audit-agent.js';
import { condition, FleetEnv, OPERATOR_NAMESPACE, type KubeObjectLike } from './support/fleet-env.js';
import { delay, eventually } from './support/wait.js';

const SERVER_NAME = `secai-operator.${OPERATOR_NAMESPACE}.svc`;
let env: FleetEnv;
let operator: OperatorHandle;
let dir: string;
let endpoint: ChannelEndpoint;
const agents: { stop(): Promise<void> }[] = [];

async function start(): Promise<OperatorHandle> {
  return startOperator({
    kubeconfig: env.kubeconfig,
    namespace: OPERATOR_NAMESPACE,
    metricsAddress: '127.0.0.1:0',
    logger: pino({ level: process.env.OPERATOR_LOG_LEVEL ?? 'silent' }),
    settings: { statusRefreshMs: 60_000, agentReconnectGraceMs: 2_000 },
    informerOptions: { backoff: { initialMs: 100, maxMs: 2000 } },
    channel: {
      listen: [`unix://${join(dir, 'channel.sock')}`],
      dnsNames: [SERVER_NAME],
      tlsSecret: 'secai-channel-tls',
      caConfigMap: 'secai-agent-ca',
      agentServiceAccount: 'secai-agent',
      heartbeatSeconds: 2,
      version: 'test',
    },
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'secai-audit-op-'));
  env = await FleetEnv.start('audit');
  await env.admin.request({ method: 'POST', path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/serviceaccounts`, body: { metadata: { name: 'secai-agent' } } });
  operator = await start();
  await operator.leading;
  const ca = await eventually(async () => {
    const cm = await env.admin.raw<{ data?: Record<string, string> }>({ method: 'GET', path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/configmaps/secai-agent-ca` });
    return cm.status === 200 ? cm.body.data?.['ca.crt'] : undefined;
  }, 30_000, 'the agent CA bundle');
  writeFileSync(join(dir, 'ca.crt'), ca);
  endpoint = { address: operator.channelAddresses()[0]!, caFile: join(dir, 'ca.crt'), serverName: SERVER_NAME };
}, 90_000);

afterAll(async () => {
  for (const a of agents) await a.stop();
  await operator?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

/** A fleet Node with an agent Pod on it and a token bound to that Pod; returns the token file. */
async function enrol(node: string): Promise<string> {
  await env.createNode(node);
  const pod = await env.admin.request<{ metadata: { uid: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/pods`,
    body: { metadata: { name: `agent-${node}` }, spec: { nodeName: node, serviceAccountName: 'secai-agent', containers: [{ name: 'agent', image: 'secai/agent:test' }] } },
  });
  const token = await env.admin.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/serviceaccounts/secai-agent/token`,
    body: { spec: { audiences: [TOKEN_AUDIENCE], expirationSeconds: 3600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: `agent-${node}`, uid: pod.metadata.uid } } },
  });
  const tokenFile = join(dir, `token-${node}`);
  writeFileSync(tokenFile, token.status.token);
  await eventually(() => env.get('secainodes', node), 15_000, `the SecAINode of ${node}`);
  return tokenFile;
}

interface AuditStatus {
  treeSize: number;
  rootHash: string;
  verifiedTreeSize?: number;
  verifiedAt?: string;
  keyFingerprint?: string;
  failure?: string;
}
const auditOf = (n: KubeObjectLike | undefined) => n?.status?.audit as AuditStatus | undefined;

async function verifiedAt(node: string, size: number): Promise<KubeObjectLike> {
  return eventually(async () => {
    const n = await env.get('secainodes', node);
    return condition(n, 'AuditVerified')?.status === 'True' && auditOf(n)?.verifiedTreeSize === size ? n : undefined;
  }, 20_000, `${node} verified at ${size} entries`);
}

async function failed(node: string): Promise<KubeObjectLike> {
  return eventually(async () => {
    const n = await env.get('secainodes', node);
    return condition(n, 'AuditVerified')?.status === 'False' ? n : undefined;
  }, 20_000, `${node} to fail verification`);
}

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
}
const failures = (text: string, reason: string) => Number(new RegExp(`^secai_audit_verification_failures_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);

it('keeps a real agent\'s growing log verified across many heads, one consistency proof after another', async () => {
  const node = 'audit-healthy';
  const tokenFile = await enrol(node);
  const stateDir = join(dir, node);
  mkdirSync(stateDir, { recursive: true });
  const log = await AuditLog.open({ dir: join(stateDir, 'audit') });
  const agent = new NodeAgent({
    nodeName: node,
    version: 'audit-test',
    capabilities: [],
    store: new PlanStore(stateDir),
    duties: [new AuditDuty(log)],
    audit: log,
    auditPublicKey: log.publicKey,
    logger: pino({ level: 'silent' }),
    registry: new Registry(),
  });
  const channel = new AgentChannelClient({
    ...endpoint,
    tokenFile,
    hello: () => agent.hello(),
    onPlan: (plan) => agent.receivePlan(plan),
    onCommand: (command) => agent.handleCommand(command),
    logger: pino({ level: 'silent' }),
    initialBackoffMs: 100,
  });
  agent.attach(channel);
  await agent.start();
  channel.start();
  agents.push({ stop: async () => (channel.stop(), await agent.stop()) });

  // Plan changes (each one appends plan.applied) and other acts, each followed by a report.
  const sizes: number[] = [];
  for (let round = 0; round < 12; round++) {
    if (round % 3 === 0) {
      await env.apply('egresspolicies', { kind: 'EgressPolicy', metadata: { name: 'audit-growth' }, spec: { allow: [{ ip: `192.0.2.${round + 1}` }], rollout: { canary: 0, maxUnavailable: '100%' } } });
      await eventually(() => agent.currentPlan()?.egress?.allow.some((r) => r.destination?.value === `192.0.2.${round + 1}`), 20_000, 'the plan');
    }
    for (let i = 0; i < 3; i++) await log.record(auditEvent(100 + round * 3 + i));
    agent.reportSoon();
    const target = log.size;
    const n = await eventually(async () => {
      const got = await env.get('secainodes', node);
      const audit = auditOf(got);
      return audit && audit.verifiedTreeSize !== undefined && audit.verifiedTreeSize >= target && condition(got, 'AuditVerified')?.status === 'True' ? got : undefined;
    }, 20_000, `verification of the head at ${target} entries`);
    const audit = auditOf(n)!;
    expect(audit.failure).toBeUndefined();
    expect(audit.keyFingerprint).toBe(log.keyFingerprint);
    expect(audit.treeSize).toBe(audit.verifiedTreeSize);
    expect(audit.rootHash).toBe((await log.rootAt(audit.treeSize)).toString('hex'));
    sizes.push(audit.verifiedTreeSize!);
  }
  expect(sizes).toEqual([...sizes].sort((a, b) => a - b));
  expect(sizes.at(-1)! - sizes[0]!).toBeGreaterThanOrEqual(33);
  const text = await metrics();
  expect(Number(/^secai_audit_verifications_total\{result="verified"\} (\d+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(12);
  expect(text).not.toMatch(/secai_audit_log_failed\{node="audit-healthy"/);
  expect((await env.events(node)).map((e) => e.reason)).not.toContain('AuditVerificationFailed');
}, 120_000);

describe('an agent that comes back with its history rewritten is caught', () => {
  const history = Array.from({ length: 30 }, (_, i) => auditEvent(i));
  const modified = history.map((e, i) => (i === 5 ? { ...e, data: { ...e.data, digest: 'f'.repeat(64) } } : e));
  const cases: [string, string, (logDir: string) => Promise<void>, string][] = [
    ['a modified entry (re-signed with the node key, grown past the verified size)', 'audit-modified', (d) => rewriteLog(d, [...modified, ...history.slice(0, 5)], 'node-key'), 'ProofInvalid'],
    ['a deleted entry', 'audit-deleted', (d) => rewriteLog(d, [...history.filter((_, i) => i !== 5), ...history.slice(0, 5)], 'node-key'), 'ProofInvalid'],
    ['a truncated log', 'audit-truncated', (d) => rewriteLog(d, history.slice(0, 12), 'node-key'), 'TreeShrank'],
    ['a log deleted entirely (the agent restarts empty with its key)', 'audit-emptied', (d) => rewriteLog(d, [], 'node-key'), 'TreeShrank'],
    ['a forked history (another root for the verified size)', 'audit-forked', (d) => rewriteLog(d, modified, 'node-key'), 'Fork'],
    ['a swapped key over the same history', 'audit-new-key', (d) => rewriteLog(d, history, 'new-key'), 'KeyChanged'],
  ];

  it.each(cases)('%s', async (_what, node, tamper, reason) => {
    const tokenFile = await enrol(node);
    const logDir = join(dir, node, 'audit');
    let agent = await AuditAgent.start(node, logDir, tokenFile, endpoint);
    await agent.append(20);
    await agent.report();
    await verifiedAt(node, 20);
    await agent.append(10);
    await agent.report();
    const good = await verifiedAt(node, 30);
    const before = failures(await metrics(), reason);

    await agent.stop();
    await tamper(logDir);
    agent = await AuditAgent.start(node, logDir, tokenFile, endpoint);
    agents.push(agent);
    const bad = await failed(node);
    expect(condition(bad, 'AuditVerified')).toMatchObject({ status: 'False', reason });
    const audit = auditOf(bad)!;
    expect(audit.failure).toEqual(expect.any(String));
    expect(audit).toMatchObject({ verifiedTreeSize: 30, keyFingerprint: auditOf(good)!.keyFingerprint, verifiedAt: auditOf(good)!.verifiedAt });
    await eventually(async () => (await env.events(node)).some((e) => e.reason === 'AuditVerificationFailed' && e.type === 'Warning' && e.note.startsWith(reason)), 10_000, 'the Event');
    const text = await metrics();
    expect(failures(text, reason)).toBe(before + 1);
    expect(text).toContain(`secai_audit_log_failed{node="${node}",reason="${reason}"} 1`);
    expect(text).toMatch(new RegExp(`secai_nodes\\{condition="AuditVerified",status="False"\\} [1-9]`));

    // Sticky: more growth and reports change nothing.
    await agent.append(3);
    await agent.report();
    await delay(1000);
    expect(condition(await env.get('secainodes', node), 'AuditVerified')).toMatchObject({ status: 'False', reason });
  }, 60_000);
});

it('catches a log truncated while the operator was down, from the head it verified before the restart', async () => {
  const node = 'audit-restart';
  const tokenFile = await enrol(node);
  const logDir = join(dir, node, 'audit');
  let agent = await AuditAgent.start(node, logDir, tokenFile, endpoint);
  await agent.append(25);
  await agent.report();
  await verifiedAt(node, 25);

  await operator.stop();
  await agent.stop();
  await rewriteLog(logDir, Array.from({ length: 10 }, (_, i) => auditEvent(i)), 'node-key');
  operator = await start();
  await operator.leading;
  agent = await AuditAgent.start(node, logDir, tokenFile, endpoint);
  agents.push(agent);
  const bad = await failed(node);
  expect(condition(bad, 'AuditVerified')?.reason).toBe('TreeShrank');
  expect(auditOf(bad)).toMatchObject({ treeSize: 10, verifiedTreeSize: 25 });
}, 90_000);

it('stays failed until an administrator re-baselines the node, then trusts its current head', async () => {
  const node = 'audit-restart';
  const agent = agents.at(-1) as AuditAgent;
  expect(agent.node).toBe(node);
  await env.admin.request({
    method: 'PATCH',
    path: `/apis/secai.io/v1alpha1/secainodes/${node}`,
    body: { metadata: { annotations: { [AUDIT_REBASELINE_ANNOTATION]: 'checked the node, 2026-11-24' } } },
    contentType: 'application/merge-patch+json',
  });
  const size = agent.log.size;
  const rebaselined = await verifiedAt(node, size);
  expect(auditOf(rebaselined)?.failure).toBeUndefined();
  await eventually(async () => {
    const metadata = (await env.get('secainodes', node))?.metadata as { annotations?: Record<string, string> } | undefined;
    return metadata !== undefined && metadata.annotations?.[AUDIT_REBASELINE_ANNOTATION] === undefined;
  }, 10_000, 'the annotation to go');
  expect(await env.eventReasons(node, ['AuditRebaselined'])).toContain('AuditRebaselined');
  // From the new baseline on, the log is checked again.
  await agent.append(4);
  await agent.report();
  await verifiedAt(node, size + 4);
  expect(await metrics()).not.toContain(`secai_audit_log_failed{node="${node}"`);
}, 60_000);

it('asks the node to lock its vault when its VaultPolicy says relockOnIncident', async () => {
  const node = 'audit-vault';
  const tokenFile = await enrol(node);
  await env.labelNode(node, { vault: 'strict' });
  await env.apply('vaultpolicies', { kind: 'VaultPolicy', metadata: { name: 'audit-vault' }, spec: { nodeSelector: { matchLabels: { vault: 'strict' } }, luks: {}, relockOnIncident: true } });
  const logDir = join(dir, node, 'audit');
  let agent = await AuditAgent.start(node, logDir, tokenFile, endpoint);
  await eventually(() => operator.plans.current(node)?.plan.vault?.relockOnIncident, 15_000, 'the vault in the plan');
  await agent.append(8);
  await agent.report();
  await verifiedAt(node, 8);
  await agent.stop();
  await rewriteLog(logDir, [], 'node-key');
  agent = await AuditAgent.start(node, logDir, tokenFile, endpoint);
  agents.push(agent);
  await failed(node);
  await eventually(() => agent.lockRequests.length === 1, 10_000, 'a LockVault command');
  expect(agent.lockRequests[0]).toContain('TreeShrank');
  await eventually(async () => (await env.events(node)).some((e) => e.reason === 'VaultLocked'), 10_000, 'the VaultLocked Event');
}, 60_000);
