// The operator in-process against its own real control plane, with simulated agents on the intake:
// SecAINode lifecycle and the not-compliant taint, coalesced reports, plan generations that survive
// a restart, Model roll-ups with revocation and finalized deletion, OCI pull Secrets, VaultPolicy conflicts,
// InferenceServices, EgressPolicy enforcement, Events, metrics and health.
import { createHash } from 'node:crypto';
import pino from 'pino';
import { DutyStatus, type DutyResult } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import type { ChannelBackend } from '../../operator/src/channel/server.js';
import { startOperator, type OperatorHandle } from '../../operator/src/cmd/operator.js';
import { condition, FleetEnv, OPERATOR_NAMESPACE, type KubeObjectLike } from './support/fleet-env.js';
import { SimulatedAgent } from './support/simulated-agent.js';
import { delay, eventually } from './support/wait.js';

let env: FleetEnv;
let operator: OperatorHandle;
const agents: SimulatedAgent[] = [];

async function start(): Promise<OperatorHandle> {
  return startOperator({
    kubeconfig: env.kubeconfig,
    namespace: OPERATOR_NAMESPACE,
    metricsAddress: '127.0.0.1:0',
    logger: pino({ level: process.env.OPERATOR_LOG_LEVEL ?? 'silent' }),
    settings: { statusRefreshMs: 60_000, agentReconnectGraceMs: 2_000 },
    informerOptions: { backoff: { initialMs: 100, maxMs: 2000 } },
  });
}

beforeAll(async () => {
  env = await FleetEnv.start('operator');
  operator = await start();
}, 90_000);

afterAll(async () => {
  for (const a of agents) a.disconnect();
  await operator?.stop();
  await env?.stop();
}, 60_000);

function agent(node: string, opts: { autoApply?: boolean } = {}): SimulatedAgent {
  const a = new SimulatedAgent(node, operator.intake, opts).connect();
  agents.push(a);
  return a;
}

const secaiNode = (name: string) => env.get('secainodes', name);
const tainted = async (name: string) => ((await env.node(name)).spec?.taints ?? []).some((t) => t.key === 'secai.io/not-compliant' && t.effect === 'NoSchedule');
const status = <T = Record<string, unknown>>(obj: KubeObjectLike | undefined) => (obj?.status ?? {}) as T;

describe('SecAINode lifecycle and the not-compliant taint', () => {
  it('enrols a matching Node, taints it until its agent reports the plan applied, and releases it when it leaves', async () => {
    await env.createNode('life-1');
    await env.createNode('bystander', { 'kubernetes.io/os': 'linux' });
    const enrolled = await eventually(() => secaiNode('life-1'), 15_000, 'the SecAINode');
    expect(enrolled.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'Node', name: 'life-1' });
    await eventually(() => tainted('life-1'), 15_000, 'the taint');
    expect(await secaiNode('bystander')).toBeUndefined();
    expect(await tainted('bystander')).toBe(false);
    const before = await eventually(async () => {
      const n = await secaiNode('life-1');
      return condition(n, 'Compliant')?.reason === 'NeverReported' && (n?.status as { plan?: { generation: number } })?.plan ? n : undefined;
    }, 15_000, 'a first status');
    expect(condition(before, 'Ready')?.reason).toBe('AgentDisconnected');

    agent('life-1');
    const compliant = await eventually(async () => {
      const n = await secaiNode('life-1');
      return condition(n, 'Compliant')?.status === 'True' ? n : undefined;
    }, 15_000, 'compliance');
    const s = status<{ plan: { generation: number; appliedGeneration: number; digest: string; appliedDigest: string }; agent: { connected: boolean; version: string } }>(compliant);
    expect(s.plan.appliedGeneration).toBe(s.plan.generation);
    expect(s.plan.appliedDigest).toBe(s.plan.digest);
    expect(s.agent).toMatchObject({ connected: true, version: '0.1.0-test' });
    expect(condition(compliant, 'Ready')?.status).toBe('True');
    await eventually(async () => !(await tainted('life-1')), 15_000, 'the taint to go');
    expect(await env.eventReasons('life-1', ['Enrolled', 'Compliant'])).toEqual(expect.arrayContaining(['Enrolled', 'Compliant']));

    // An egress duty that fails makes it non-compliant again: tainted, with the reason in the condition.
    const a = agents.find((x) => x.node === 'life-1')!;
    const withEgress = (over: Partial<DutyResult>) => {
      const r = a.reportFor();
      return { ...r, duties: r.duties.map((d) => (d.duty === 'egress' ? { ...d, ...over } : d)) };
    };
    a.send(withEgress({ status: DutyStatus.DUTY_STATUS_FAILED, reason: 'NftFailed', message: 'nft: syntax error in ruleset' }));
    const failed = await eventually(async () => {
      const n = await secaiNode('life-1');
      return condition(n, 'Compliant')?.reason === 'EgressNotEnforced' ? n : undefined;
    }, 15_000, 'EgressNotEnforced');
    expect(condition(failed, 'Compliant')?.message).toContain('NftFailed');
    await eventually(() => tainted('life-1'), 15_000, 'the taint to return');
    a.apply();
    await eventually(async () => !(await tainted('life-1')), 15_000, 'the taint to go again');

    // Drift the node has not repaired yet: Compliant=False with EgressDrift, a Warning, the taint back.
    const detected = Date.now() - 2000;
    const drift = { kind: 'table-missing', detail: 'the inet secai table is gone', detectedUnixMillis: detected, repairedUnixMillis: 0 };
    a.send(withEgress({ status: DutyStatus.DUTY_STATUS_DRIFTED, reason: 'Drift', drifts: 1, lastDrift: drift }));
    const drifted = await eventually(async () => {
      const n = await secaiNode('life-1');
      return condition(n, 'Compliant')?.reason === 'EgressDrift' ? n : undefined;
    }, 15_000, 'EgressDrift');
    expect(condition(drifted, 'Compliant')).toMatchObject({ status: 'False', message: expect.stringContaining('table-missing') });
    expect(status<{ duties: { duty: string; state: string }[] }>(drifted).duties.find((d) => d.duty === 'egress')).toMatchObject({ state: 'Drifted', lastDrift: { kind: 'table-missing' } });
    await eventually(() => tainted('life-1'), 15_000, 'the taint while drifted');
    // Repaired and read back: compliant again, untainted, and an Event of each.
    a.send(withEgress({ drifts: 1, lastDrift: { ...drift, repairedUnixMillis: Date.now() } }));
    await eventually(async () => condition(await secaiNode('life-1'), 'Compliant')?.status === 'True', 15_000, 'Compliant after the repair');
    await eventually(async () => !(await tainted('life-1')), 15_000, 'the taint to go after the repair');
    expect(await env.eventReasons('life-1', ['EgressDrift', 'EgressDriftRepaired'])).toEqual(expect.arrayContaining(['EgressDrift', 'EgressDriftRepaired']));

    // A drift repaired before the operator saw it still leaves its record: both Events again.
    const fast = { kind: 'rule-changed', detail: 'a rule was added', detectedUnixMillis: Date.now() - 50, repairedUnixMillis: Date.now() };
    const warned = (await env.events('life-1')).filter((e) => e.reason === 'EgressDrift').length;
    a.send(withEgress({ drifts: 2, lastDrift: fast }));
    await eventually(async () => (await env.events('life-1')).filter((e) => e.reason === 'EgressDrift').length > warned, 15_000, 'the Warning of a fast repair');
    expect(await env.eventReasons('life-1', ['EgressDriftRepaired', 'EgressDriftRepaired'])).toEqual(expect.arrayContaining(['EgressDriftRepaired']));
    await eventually(async () => condition(await secaiNode('life-1'), 'Compliant')?.status === 'True', 15_000, 'Compliant after a fast repair');
    expect(await tainted('life-1')).toBe(false);

    // What the agent says of its boot state, however good, never makes it attested: only a quote
    // the operator verified does (test/operator/attestation.test.ts).
    const fresh = a.reportFor();
    a.send({ ...fresh, attestation: { ...fresh.attestation!, mismatchedPcrs: [] } });
    const selfReported = await eventually(async () => {
      const n = await secaiNode('life-1');
      return status<{ attestation?: { pcrDigest?: string } }>(n).attestation?.pcrDigest === 'c'.repeat(64) ? n : undefined;
    }, 15_000, 'the self-reported boot state in status');
    expect(condition(selfReported, 'Attested')).toMatchObject({ status: 'Unknown', reason: 'NotEnrolled' });

    // Leaving the fleet: the SecAINode goes and the taint is taken off the Node that remains.
    a.send({ ...a.reportFor(), planError: 'boom' });
    await eventually(() => tainted('life-1'), 15_000, 'tainted before leaving');
    await env.labelNode('life-1', { 'secai.io/node': null });
    await eventually(async () => (await secaiNode('life-1')) === undefined, 15_000, 'the SecAINode to go');
    await eventually(async () => !(await tainted('life-1')), 15_000, 'the taint to be removed off-fleet');
    expect(operator.intake.isEnrolled('life-1')).toBe(false);

    await env.labelNode('life-1', { 'secai.io/node': 'true' });
    await eventually(() => secaiNode('life-1'), 15_000, 're-enrolment');
    await env.admin.request({ method: 'DELETE', path: '/api/v1/nodes/life-1' });
    await eventually(async () => (await secaiNode('life-1')) === undefined, 15_000, 'the SecAINode to go with its Node');
  }, 90_000);
});

describe('report intake', () => {
  it('is what the agent channel calls', async () => {
    const backend: ChannelBackend = operator.intake;
    await env.createNode('channel-1');
    await eventually(() => backend.isEnrolled('channel-1'), 15_000, 'enrolment');
    expect(backend.isEnrolled('not-a-node')).toBe(false);
    const plans: number[] = [];
    const unsubscribe = backend.subscribePlan('channel-1', (plan) => plans.push(plan.generation));
    await eventually(() => plans.length > 0, 15_000, 'the current plan on subscription');
    unsubscribe();
    await env.admin.request({ method: 'DELETE', path: '/api/v1/nodes/channel-1' });
  });

  it('coalesces a burst of reports into at most one status write per change', async () => {
    await env.createNode('burst-1');
    const a = agent('burst-1', { autoApply: false });
    await eventually(() => a.latest, 15_000, 'a plan');
    a.apply();
    await eventually(async () => condition(await secaiNode('burst-1'), 'Compliant')?.status === 'True', 15_000, 'compliance');
    await delay(500);

    const writes = await watchWrites('burst-1');
    try {
      // 1,000 reports whose only difference is counters: nothing to write before the refresh interval.
      for (let i = 0; i < 1000; i++) {
        const r = a.reportFor();
        a.send({ ...r, egress: { ...r.egress!, droppedPackets: i, auditedPackets: 2 * i }, observedUnixMillis: Date.now() });
      }
      await delay(1500);
      expect(writes.count).toBe(0);
      // 1,000 more in which one real change (a model starts being fetched) happens once, early.
      for (let i = 0; i < 1000; i++) {
        const r = a.reportFor();
        a.send({ ...r, models: [{ name: 'burst-model', sha256: 'd'.repeat(64), state: 2, stage: 'fetch', reason: '', message: '' }], egress: { ...r.egress!, droppedPackets: 1000 + i } });
      }
      await eventually(async () => ((status<{ models?: { name: string }[] }>(await secaiNode('burst-1')).models ?? []).some((m) => m.name === 'burst-model')), 10_000, 'the change');
      await delay(1500);
      expect(writes.count).toBe(1);
      expect(operator.intake.reports).toBeGreaterThanOrEqual(2000);
    } finally {
      writes.stop();
    }
  }, 60_000);
});

/** Counts MODIFIED events of one SecAINode on a watch of the real API server. */
async function watchWrites(name: string): Promise<{ count: number; stop: () => void }> {
  const abort = new AbortController();
  const current = await secaiNode(name);
  const res = await env.admin.stream({
    path: '/apis/secai.io/v1alpha1/secainodes',
    query: { watch: 1, fieldSelector: `metadata.name=${name}`, resourceVersion: current?.metadata.resourceVersion },
    signal: abort.signal,
  });
  const counter = { count: 0, stop: () => abort.abort() };
  let pending = '';
  res.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    let i: number;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      if (line.includes('"type":"MODIFIED"')) counter.count++;
    }
  });
  res.on('error', () => {});
  return counter;
}

describe('models', () => {
  const sha = 'e'.repeat(64);

  it('rolls up trust, follows revocation, and completes deletion only once nodes confirm removal', async () => {
    for (const n of ['m-1', 'm-2']) await env.createNode(n, { 'secai.io/node': 'true', pool: 'models' });
    await env.createNode('m-3', { 'secai.io/node': 'true', pool: 'other' });
    const a1 = agent('m-1');
    const a2 = agent('m-2');
    agent('m-3');
    a2.rejects.add(sha);
    await env.apply('models', {
      kind: 'Model',
      metadata: { name: 'phi' },
      spec: { source: { url: 'https://models.example/phi.gguf' }, format: 'gguf', sha256: sha, placement: { nodeSelector: { matchLabels: { pool: 'models' } } } },
    });
    const rejected = await eventually(async () => {
      const m = await env.get('models', 'phi');
      const s = status<{ phase?: string; nodes?: { trusted: number } }>(m);
      return s.phase === 'Rejected' && s.nodes?.trusted === 1 ? m : undefined;
    }, 20_000, 'the rejection');
    expect(rejected.metadata.finalizers).toContain('secai.io/model-removal');
    expect(status(rejected)).toMatchObject({ nodes: { desired: 2, trusted: 1, rejected: 1, pending: 0, contained: 0 }, rejection: { node: 'm-2', stage: 'static', reason: 'PickleOpcodes' } });
    expect(a1.latest?.models.map((m) => m.name)).toEqual(['phi']);
    expect(agents.find((x) => x.node === 'm-3')?.latest?.models).toEqual([]);

    a2.rejects.delete(sha);
    a2.apply();
    const trusted = await eventually(async () => {
      const m = await env.get('models', 'phi');
      return status<{ phase?: string }>(m).phase === 'Trusted' ? m : undefined;
    }, 20_000, 'Trusted');
    expect(condition(trusted, 'Ready')).toMatchObject({ status: 'True', reason: 'AllNodesTrusted' });
    expect(await env.eventReasons('phi', ['Rejected', 'Trusted'])).toEqual(expect.arrayContaining(['Rejected', 'Trusted']));

    await env.apply('models', { kind: 'Model', metadata: { name: 'phi' }, spec: { source: { url: 'https://models.example/phi.gguf' }, format: 'gguf', sha256: sha, placement: { nodeSelector: { matchLabels: { pool: 'models' } } }, revoked: true, revokedReason: 'backdoor found' } });
    const revoked = await eventually(async () => {
      const m = await env.get('models', 'phi');
      return status<{ phase?: string; nodes?: { contained: number } }>(m).nodes?.contained === 3 ? m : undefined;
    }, 20_000, 'containment on every node');
    expect(status(revoked)).toMatchObject({ phase: 'Revoked', nodes: { desired: 0, trusted: 0 } });
    for (const a of [a1, a2]) {
      expect(a.latest?.models).toEqual([]);
      expect(a.latest?.revoked).toEqual([{ name: 'phi', sha256: sha, reason: 'backdoor found' }]);
    }

    // m-3's agent goes silent: it keeps reporting the artifact, so the deletion waits for it.
    const a3 = agents.find((x) => x.node === 'm-3')!;
    a3.autoApply = false;
    await env.remove('models', 'phi');
    await eventually(async () => condition(await env.get('models', 'phi'), 'Ready')?.reason === 'Removing', 20_000, 'Removing');
    await delay(1000);
    expect(await env.get('models', 'phi')).toBeDefined();
    a3.apply();
    await eventually(async () => (await env.get('models', 'phi')) === undefined, 20_000, 'the deletion to complete');
  }, 120_000);

  it('keeps a model whose signature material it may not read out of every plan, and says why', async () => {
    await env.createConfigMap('sigs', { 'bundle.json': '{}' }, 'default');
    await env.apply('models', {
      kind: 'Model',
      metadata: { name: 'elsewhere' },
      spec: {
        source: { url: 'https://models.example/e.gguf' },
        format: 'gguf',
        sha256: 'f'.repeat(64),
        placement: {},
        signature: { bundle: { configMapKeyRef: { namespace: 'default', name: 'sigs', key: 'bundle.json' } }, publicKey: { pem: '-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----' } },
      },
    });
    const m = await eventually(async () => {
      const got = await env.get('models', 'elsewhere');
      return condition(got, 'Resolved')?.status === 'False' ? got : undefined;
    }, 20_000, 'Resolved=False');
    expect(condition(m, 'Resolved')?.reason).toBe('OutsideOperatorNamespace');
    expect(condition(m, 'Ready')?.status).toBe('False');
    for (const node of operator.plans.nodes()) expect(operator.plans.current(node)?.plan.models.map((x) => x.name)).not.toContain('elsewhere');
    await env.remove('models', 'elsewhere');
  }, 60_000);
});

describe('OCI pull Secrets', () => {
  it("puts the pull Secret's credential for the Model's registry into the plan, says why when it cannot, and shows it nowhere", async () => {
    const password = 'registry-password-for-tests';
    const basic = Buffer.from(`robot:${password}`).toString('base64');
    const digest = `sha256:${'3'.repeat(64)}`;
    await env.createNode('o-1', { 'secai.io/node': 'true', pool: 'oci' });
    const a = agent('o-1');
    const apply = (secret: string) =>
      env.apply('models', {
        kind: 'Model',
        metadata: { name: 'private' },
        spec: { source: { oci: { registry: 'registry.example:5000', repository: 'models/m', digest, pullSecretRef: { name: secret } } }, format: 'gguf', sha256: '2'.repeat(64), placement: { nodeSelector: { matchLabels: { pool: 'oci' } } } },
      });
    const resolved = (reason: string) => eventually(async () => {
      const m = await env.get('models', 'private');
      return condition(m, 'Resolved')?.reason === reason ? m : undefined;
    }, 20_000, `Resolved: ${reason}`);
    const dockerConfig = (auths: Record<string, unknown>) => ({ '.dockerconfigjson': JSON.stringify({ auths }) });

    // The Secret arrives after the Model: the Secret's event alone brings the Model into the plan.
    await apply('pull');
    await resolved('PullSecretNotFound');
    expect(a.latest?.models.map((m) => m.name)).not.toContain('private');
    await env.createSecret('pull', dockerConfig({ 'https://registry.example:5000/v2/': { auth: basic } }), OPERATOR_NAMESPACE, 'kubernetes.io/dockerconfigjson');
    const entry = await eventually(() => a.latest?.models.find((m) => m.name === 'private'), 20_000, 'the model in the plan');
    expect(entry.oci).toMatchObject({ registry: 'registry.example:5000', digest, credential: { username: 'robot', password, identityToken: '' } });
    await resolved('Resolved');

    await env.createSecret('opaque', dockerConfig({ 'registry.example:5000': { auth: basic } }));
    await env.createSecret('broken', dockerConfig({ 'registry.example:5000': { auth: Buffer.from('no-colon').toString('base64') } }), OPERATOR_NAMESPACE, 'kubernetes.io/dockerconfigjson');
    await env.createSecret('elsewhere', dockerConfig({ 'other.example': { auth: basic } }), OPERATOR_NAMESPACE, 'kubernetes.io/dockerconfigjson');
    for (const [secret, reason] of [['opaque', 'PullSecretWrongType'], ['broken', 'PullSecretInvalid'], ['elsewhere', 'PullSecretNoEntry']] as const) {
      await apply(secret);
      const m = await resolved(reason);
      expect(condition(m, 'Ready')?.status).toBe('False');
      await eventually(() => a.latest !== undefined && !a.latest.models.some((x) => x.name === 'private'), 20_000, `the model out of the plan (${reason})`);
    }
    expect(await env.eventReasons('private', ['PullSecretNotFound', 'PullSecretWrongType', 'PullSecretInvalid', 'PullSecretNoEntry'])).toEqual(expect.arrayContaining(['PullSecretNotFound', 'PullSecretWrongType', 'PullSecretInvalid', 'PullSecretNoEntry']));
    const shown = JSON.stringify([await env.get('models', 'private'), await env.events('private'), await secaiNode('o-1')]);
    for (const value of [password, basic]) expect(shown).not.toContain(value);
    await env.remove('models', 'private');
  }, 90_000);
});

describe('policies and services', () => {
  it('applies the winning VaultPolicy, reports the shadowed one, and counts compliance', async () => {
    await env.createNode('v-1', { 'secai.io/node': 'true', pool: 'vault' });
    const a = agent('v-1');
    await env.apply('vaultpolicies', { kind: 'VaultPolicy', metadata: { name: 'baseline' }, spec: { nodeSelector: { matchLabels: { pool: 'vault' } }, luks: {} } });
    await env.apply('vaultpolicies', { kind: 'VaultPolicy', metadata: { name: 'strict' }, spec: { nodeSelector: { matchLabels: { pool: 'vault' } }, priority: 10, luks: { minPbkdfMemoryKiB: 262144 }, tpm2: { mode: 'Required' } } });
    await eventually(() => a.latest?.vault?.policy === 'strict', 20_000, 'the winner in the plan');
    const baseline = await eventually(async () => {
      const p = await env.get('vaultpolicies', 'baseline');
      return condition(p, 'Shadowed')?.status === 'True' ? p : undefined;
    }, 20_000, 'baseline shadowed');
    expect(status(baseline)).toMatchObject({ nodes: { matched: 1, applied: 0 } });
    expect(condition(baseline, 'Shadowed')?.message).toContain('strict');
    const strict = await eventually(async () => {
      const p = await env.get('vaultpolicies', 'strict');
      return condition(p, 'Ready')?.status === 'True' ? p : undefined;
    }, 20_000, 'strict ready');
    expect(status(strict)).toMatchObject({ nodes: { matched: 1, applied: 1, compliant: 1, nonCompliant: 0, unknown: 0 } });

    a.shape = (r) => ({ ...r, vault: { ...r.vault!, compliant: false, reasons: ['PbkdfMemoryTooLow'] } });
    a.apply();
    const failing = await eventually(async () => {
      const p = await env.get('vaultpolicies', 'strict');
      return condition(p, 'Ready')?.reason === 'NodesNotCompliant' ? p : undefined;
    }, 20_000, 'non-compliance');
    expect(status(failing)).toMatchObject({ nodes: { compliant: 0, nonCompliant: 1 }, nonCompliantReasons: [{ reason: 'PbkdfMemoryTooLow', nodes: 1 }] });
    await eventually(async () => condition(await secaiNode('v-1'), 'Compliant')?.reason === 'VaultNotCompliant', 20_000, 'the node non-compliant');
    await eventually(() => tainted('v-1'), 20_000, 'tainted for its vault');
    for (const p of ['baseline', 'strict']) await env.remove('vaultpolicies', p);
  }, 90_000);

  it('serves a model only where the node trusts it, with the digest of the token and never the token', async () => {
    const token = 'bearer-token-for-tests';
    await env.createSecret('chat-token', { token: `${token}\n` });
    await env.createNode('s-1', { 'secai.io/node': 'true', pool: 'serve' });
    const a = agent('s-1');
    await env.apply('models', { kind: 'Model', metadata: { name: 'chat-model' }, spec: { source: { url: 'https://models.example/c.gguf' }, format: 'gguf', sha256: '1'.repeat(64) } });
    await env.apply('inferenceservices', {
      kind: 'InferenceService',
      metadata: { name: 'chat' },
      spec: { modelRef: { name: 'chat-model' }, placement: { nodeSelector: { matchLabels: { pool: 'serve' } } }, listen: { port: 8100, authTokenSecretRef: { namespace: OPERATOR_NAMESPACE, name: 'chat-token', key: 'token' } } },
    });
    const served = await eventually(async () => {
      const s = await env.get('inferenceservices', 'chat');
      return condition(s, 'Ready')?.status === 'True' ? s : undefined;
    }, 20_000, 'served');
    expect(status(served)).toMatchObject({ nodes: { selected: 1, ready: 1, notReady: 0 } });
    const service = a.latest?.services[0];
    expect(service).toMatchObject({ name: 'chat', model: 'chat-model', port: 8100, authTokenSha256: createHash('sha256').update(token).digest('hex') });
    expect(JSON.stringify(a.plans)).not.toContain(token);
    // The model came to the node because the service needed it, and the service only once trusted.
    const first = a.plans.find((p) => p.models.some((m) => m.name === 'chat-model'));
    expect(first?.services).toEqual([]);

    await env.apply('inferenceservices', {
      kind: 'InferenceService',
      metadata: { name: 'chat' },
      spec: { modelRef: { name: 'chat-model' }, placement: { nodeSelector: { matchLabels: { pool: 'serve' } } }, listen: { port: 8100, authTokenSecretRef: { namespace: 'default', name: 'chat-token', key: 'token' } } },
    });
    const refused = await eventually(async () => {
      const s = await env.get('inferenceservices', 'chat');
      return condition(s, 'AuthTokenResolved')?.status === 'False' ? s : undefined;
    }, 20_000, 'the token refused');
    expect(condition(refused, 'AuthTokenResolved')?.reason).toBe('OutsideOperatorNamespace');
    await eventually(() => a.latest?.services.length === 0, 20_000, 'the service out of the plan');
    await eventually(async () => status<{ notReadyReasons?: { reason: string }[] }>(await env.get('inferenceservices', 'chat')).notReadyReasons?.[0]?.reason === 'AuthTokenUnresolved', 20_000, 'the reason');
    await env.remove('inferenceservices', 'chat');
    await env.remove('models', 'chat-model');
  }, 90_000);

  it('enforces an EgressPolicy fleet-wide and reports it Ready once every node enforces it', async () => {
    for (const a of agents) {
      a.autoApply = true;
      a.shape = (r) => r;
      a.apply();
    }
    await env.apply('egresspolicies', {
      kind: 'EgressPolicy',
      metadata: { name: 'mirror' },
      spec: { allow: [{ host: 'mirror.example.org', ports: [{ port: 443 }] }], rollout: { canary: 1, maxUnavailable: '100%' } },
    });
    const ready = await eventually(async () => {
      const p = await env.get('egresspolicies', 'mirror');
      return condition(p, 'Ready')?.status === 'True' ? p : undefined;
    }, 30_000, 'the policy Ready');
    const fleet = operator.plans.nodes().length;
    expect(status(ready)).toMatchObject({ nodes: { matched: fleet, enforced: fleet, failed: 0, pending: 0 }, rollout: { state: 'Complete' } });
    expect(status<{ allowlistDigest: string }>(ready).allowlistDigest).toMatch(/^[0-9a-f]{64}$/);
    for (const node of operator.plans.nodes()) expect(operator.plans.current(node)?.plan.egress?.policies).toContain('mirror');
    expect(await env.eventReasons('mirror', ['RolloutStarted', 'NodesReleased', 'RolloutComplete'])).toEqual(expect.arrayContaining(['RolloutStarted', 'NodesReleased', 'RolloutComplete']));
  }, 60_000);
});

describe('metrics and health', () => {
  it('serves controller-runtime and fleet metrics, liveness and readiness', async () => {
    const base = `http://127.0.0.1:${operator.metricsPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      'controller_runtime_reconcile_total{controller="secainode",result="success"}',
      'controller_runtime_reconcile_time_seconds_bucket{le="0.005",controller="model"}',
      'controller_runtime_reconcile_errors_total',
      'workqueue_depth{name="egresspolicy",controller="egresspolicy"}',
      'workqueue_adds_total{name="vaultpolicy",controller="vaultpolicy"}',
      'workqueue_queue_duration_seconds_bucket',
      'workqueue_work_duration_seconds_bucket',
      'workqueue_retries_total',
      'rest_client_requests_total{method="PATCH",code="200"}',
      'secai_nodes{condition="Compliant",status="True"}',
      'secai_models{phase="Trusted"}',
      'secai_policies{kind="EgressPolicy",ready="True"} 1',
      'secai_egress_rollouts{state="Complete"} 1',
      'process_resident_memory_bytes',
    ]) {
      expect(text).toContain(name);
    }
    expect(Number(/secai_plan_propagation_seconds_count (\d+)/.exec(text)?.[1])).toBeGreaterThan(0);
    expect(text).not.toMatch(/secai_[a-z_]+\{[^}]*node=/);
  });
});

describe('restarts', () => {
  it('keeps plan generations and writes nothing when a restarted operator finds the fleet unchanged', async () => {
    const before = new Map((await env.list('secainodes')).map((n) => [n.metadata.name, n]));
    const generations = new Map(
      [...before].map(([name, n]) => {
        const plan = (n.status as { plan?: { generation: number; digest: string } }).plan;
        return [name, { generation: plan?.generation, digest: plan?.digest }];
      }),
    );
    const watch = await env.admin.stream({ path: '/apis/secai.io/v1alpha1/secainodes', query: { watch: 1, resourceVersion: [...before.values()].map((n) => Number(n.metadata.resourceVersion)).sort((x, y) => y - x)[0] } });
    let modified = 0;
    watch.on('data', (c: Buffer) => (modified += c.toString().split('"type":"MODIFIED"').length - 1));
    watch.on('error', () => {});
    for (const a of agents) a.disconnect();
    agents.length = 0;
    await delay(1000);
    const settled = new Map((await env.list('secainodes')).map((n) => [n.metadata.name, n.metadata.resourceVersion]));
    modified = 0;

    await operator.stop();
    operator = await start();
    await eventually(() => [...settled.keys()].every((n) => operator.plans.current(n!)), 30_000, 'plans recomputed');
    await delay(1000);
    const recomputed = new Map([...generations.keys()].map((name) => [name, { generation: operator.plans.current(name!)?.plan.generation, digest: operator.plans.current(name!)?.plan.digest }]));
    expect(recomputed).toEqual(generations);
    expect(modified).toBe(0);
    const after = new Map((await env.list('secainodes')).map((n) => [n.metadata.name, n.metadata.resourceVersion]));
    expect(after).toEqual(settled);
    watch.destroy();
  }, 90_000);
});

