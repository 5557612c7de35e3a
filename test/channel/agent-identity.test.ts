// The agent channel against the real API server: an agent proves its node with a projected
// ServiceAccount token bound to its Pod. A token bound to node A cannot fetch B's plan or report for
// B; a missing, expired, wrong-audience, unbound or foreign token is refused; every refusal is
// counted and audited. Oversized and malformed messages are refused too.
import { createSign, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { credentials, makeGenericClientConstructor, Metadata } from '@grpc/grpc-js';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import {
  AgentChannelServiceService,
  ConnectResponse,
  type Hello,
  NodePlan,
  RefusalReason,
  type Report,
} from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { MAX_MESSAGE_BYTES, PROTOCOL_VERSION, TOKEN_AUDIENCE } from '../../api/proto/protocol.js';
import { AgentChannelClient } from '../../agents/src/channel/client.js';
import { readState } from '../../hack/control-plane/control-plane.js';
import { createCertificateAuthority, issueServingCertificate } from '../../operator/src/channel/pki.js';
import { AgentChannelServer, type ChannelBackend } from '../../operator/src/channel/server.js';
import { KubeClient } from '../../operator/src/runtime/kube-client.js';
import { sharedKubeconfig, SHARED_CONTROL_PLANE_DIR } from '../support/environment.js';

const SERVER_NAME = 'secai-operator.secai-system.svc';
const suffix = randomBytes(3).toString('hex');
const ns = `chan-${suffix}`;
const nodeA = `chan-a-${suffix}`;
const nodeB = `chan-b-${suffix}`;
const nodeOutside = `chan-x-${suffix}`;

let kube: KubeClient;
let server: AgentChannelServer;
let registry: Registry;
let address: string;
let dir: string;
const auditLines: Record<string, unknown>[] = [];
const received: { node: string; report: Report }[] = [];
const connected: string[] = [];
const pods: Record<string, { name: string; uid: string }> = {};

function planFor(node: string): NodePlan {
  return NodePlan.fromPartial({ nodeName: node, generation: 1, digest: `digest-of-${node}` });
}

const backend: ChannelBackend = {
  isEnrolled: (node) => node === nodeA || node === nodeB,
  agentConnected: (node) => connected.push(node),
  agentDisconnected: () => {},
  report: (node, report) => received.push({ node, report }),
  subscribePlan: (node, onPlan) => {
    onPlan(planFor(node));
    return () => {};
  },
};

async function createPod(name: string, node: string, serviceAccount: string): Promise<void> {
  const pod = await kube.request<{ metadata: { uid: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${ns}/pods`,
    body: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name },
      spec: { nodeName: node, serviceAccountName: serviceAccount, containers: [{ name: 'agent', image: 'secai/agent:test' }] },
    },
  });
  pods[name] = { name, uid: pod.metadata.uid };
}

async function requestToken(serviceAccount: string, opts: { pod?: string; audience?: string } = {}): Promise<string> {
  const pod = opts.pod ? pods[opts.pod] : undefined;
  const response = await kube.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${ns}/serviceaccounts/${serviceAccount}/token`,
    body: {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        audiences: [opts.audience ?? TOKEN_AUDIENCE],
        expirationSeconds: 600,
        ...(pod ? { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid } } : {}),
      },
    },
  });
  return response.status.token;
}

/** A token signed with the control plane's own service-account key, with chosen expiry. */
function forgeToken(podName: string, node: string, expiresInSeconds: number): string {
  const state = readState(SHARED_CONTROL_PLANE_DIR);
  if (!state) throw new Error('no shared control plane state');
  const key = readFileSync(join(state.dir, 'pki', 'sa.key'), 'utf8');
  const now = Math.floor(Date.now() / 1000);
  const pod = pods[podName];
  const claims = {
    iss: `https://127.0.0.1:${state.apiPort}`,
    aud: [TOKEN_AUDIENCE],
    sub: `system:serviceaccount:${ns}:secai-agent`,
    iat: now - 1200,
    nbf: now - 1200,
    exp: now + expiresInSeconds,
    'kubernetes.io': {
      namespace: ns,
      serviceaccount: { name: 'secai-agent', uid: serviceAccountUid },
      pod: { name: pod?.name, uid: pod?.uid },
      node: { name: node, uid: nodeUids[node] },
    },
  };
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const signingInput = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(claims)}`;
  const signature = createSign('RSA-SHA256').update(signingInput).sign(key).toString('base64url');
  return `${signingInput}.${signature}`;
}

let serviceAccountUid = '';
const nodeUids: Record<string, string> = {};

interface Outcome {
  welcome: boolean;
  refusal?: RefusalReason;
  plans: NodePlan[];
}

/** Runs a real agent channel client until it is welcomed or refused. */
async function connectAs(claimedNode: string, token: string | undefined, hello: Partial<Hello> = {}, report?: Report): Promise<Outcome> {
  const tokenFile = join(dir, `token-${randomBytes(4).toString('hex')}`);
  writeFileSync(tokenFile, token ?? '');
  const plans: NodePlan[] = [];
  const logs: Record<string, unknown>[] = [];
  const client = new AgentChannelClient({
    address,
    caFile: join(dir, 'ca.crt'),
    serverName: SERVER_NAME,
    tokenFile,
    hello: () => ({
      nodeName: claimedNode,
      agentVersion: 'test',
      protocolVersion: PROTOCOL_VERSION,
      capabilities: [],
      auditPublicKey: Buffer.alloc(32),
      appliedPlanGeneration: 0,
      appliedPlanDigest: '',
      ...hello,
    }),
    onPlan: async (plan) => {
      plans.push(plan);
    },
    onCommand: async (command) => ({ id: command.id, error: 'unsupported', body: undefined }),
    logger: pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (logs.push(JSON.parse(String(c))), cb()) })),
    initialBackoffMs: 60_000,
  });
  client.start();
  const deadline = Date.now() + 15_000;
  try {
    while (Date.now() < deadline) {
      if (client.state === 'connected' && plans.length > 0) {
        if (report) {
          client.sendReport(report);
          await new Promise((r) => setTimeout(r, 300));
        }
        return { welcome: true, plans };
      }
      const refusal = client.refusal();
      if (refusal) return { welcome: false, refusal: refusal.reason, plans };
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no outcome for ${claimedNode}: ${JSON.stringify(logs)}`);
  } finally {
    client.stop();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'secai-channel-'));
  kube = await KubeClient.fromKubeconfigFile(sharedKubeconfig());
  await kube.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: ns } } });
  for (const sa of ['secai-agent', 'intruder']) {
    const created = await kube.request<{ metadata: { uid: string } }>({
      method: 'POST',
      path: `/api/v1/namespaces/${ns}/serviceaccounts`,
      body: { metadata: { name: sa } },
    });
    if (sa === 'secai-agent') serviceAccountUid = created.metadata.uid;
  }
  for (const node of [nodeA, nodeB, nodeOutside]) {
    const created = await kube.request<{ metadata: { uid: string } }>({
      method: 'POST',
      path: '/api/v1/nodes',
      body: { metadata: { name: node, labels: { 'secai.io/node': 'true' } } },
    });
    nodeUids[node] = created.metadata.uid;
  }
  await createPod('agent-a', nodeA, 'secai-agent');
  await createPod('agent-b', nodeB, 'secai-agent');
  await createPod('agent-x', nodeOutside, 'secai-agent');
  await createPod('intruder-a', nodeA, 'intruder');

  const ca = createCertificateAuthority('secai-fleet-test', 1);
  const serving = issueServingCertificate(ca, [SERVER_NAME], 1);
  writeFileSync(join(dir, 'ca.crt'), ca.certPem);
  registry = new Registry();
  const logger = pino(
    { level: 'info' },
    new Writable({
      write: (chunk, _enc, cb) => {
        const line = JSON.parse(String(chunk)) as Record<string, unknown>;
        if (line.audit) auditLines.push(line);
        cb();
      },
    }),
  );
  server = new AgentChannelServer({
    client: kube,
    identity: { audience: TOKEN_AUDIENCE, serviceAccount: { namespace: ns, name: 'secai-agent' } },
    backend,
    tls: serving,
    listen: [`unix://${join(dir, 'channel.sock')}`],
    heartbeatSeconds: 2,
    operatorVersion: 'test',
    logger,
    registry,
  });
  [address] = (await server.start()) as [string];
});

afterAll(async () => {
  await server?.stop(1000);
  for (const node of [nodeA, nodeB, nodeOutside]) await kube?.raw({ method: 'DELETE', path: `/api/v1/nodes/${node}` });
  kube?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function refusalCount(reason: string): Promise<number> {
  const metric = await registry.getSingleMetric('secai_channel_refusals_total')?.get();
  return metric?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

it('gives an agent its own node plan when its Pod-bound token matches the node it claims', async () => {
  const token = await requestToken('secai-agent', { pod: 'agent-a' });
  const report: Report = { planGeneration: 1, planDigest: 'digest-of-a', planError: '', models: [], services: [], observedUnixMillis: Date.now(), duties: [] };
  const outcome = await connectAs(nodeA, token, {}, report);
  expect(outcome.welcome).toBe(true);
  expect(outcome.plans.map((p) => p.nodeName)).toEqual([nodeA]);
  expect(received.filter((r) => r.node === nodeA).map((r) => r.report.planDigest)).toContain('digest-of-a');
});

it('refuses a token bound to node A that claims node B: no plan of B, no report for B', async () => {
  const before = await refusalCount('REFUSAL_REASON_IDENTITY_MISMATCH');
  const token = await requestToken('secai-agent', { pod: 'agent-a' });
  const report: Report = { planGeneration: 1, planDigest: 'forged', planError: '', models: [], services: [], observedUnixMillis: Date.now(), duties: [] };
  const outcome = await connectAs(nodeB, token, {}, report);
  expect(outcome).toEqual({ welcome: false, refusal: RefusalReason.REFUSAL_REASON_IDENTITY_MISMATCH, plans: [] });
  expect(received.some((r) => r.node === nodeB)).toBe(false);
  expect(await refusalCount('REFUSAL_REASON_IDENTITY_MISMATCH')).toBe(before + 1);
  expect(auditLines.at(-1)).toMatchObject({ audit: 'agent.refused', claimedNode: nodeB, reason: 'REFUSAL_REASON_IDENTITY_MISMATCH' });
  expect(JSON.stringify(auditLines)).not.toContain(token);
});

describe('refuses as unauthenticated, counts and audits', () => {
  const cases: [string, () => Promise<string | undefined>, RegExp][] = [
    ['a missing token', async () => undefined, /no bearer token/],
    ['an expired token', async () => forgeToken('agent-a', nodeA, -60), /token rejected/],
    ['a token for another audience', async () => requestToken('secai-agent', { pod: 'agent-a', audience: 'someone-else' }), /token rejected/],
    ['a token bound to no Pod', async () => requestToken('secai-agent'), /not bound to a Pod/],
    ['a token of another ServiceAccount', async () => requestToken('intruder', { pod: 'intruder-a' }), /belongs to system:serviceaccount/],
    ['garbage', async () => 'not-a-jwt', /token rejected/],
  ];
  it.each(cases)('%s', async (_what, token, why) => {
    const before = await refusalCount('REFUSAL_REASON_UNAUTHENTICATED');
    const outcome = await connectAs(nodeA, await token());
    expect(outcome).toEqual({ welcome: false, refusal: RefusalReason.REFUSAL_REASON_UNAUTHENTICATED, plans: [] });
    expect(await refusalCount('REFUSAL_REASON_UNAUTHENTICATED')).toBe(before + 1);
    expect(String(auditLines.at(-1)?.message)).toMatch(why);
  });

  it('accepts the same forged token when it has not expired (the expiry is what was refused)', async () => {
    expect((await connectAs(nodeA, forgeToken('agent-a', nodeA, 600))).welcome).toBe(true);
  });
});

it('refuses a node outside the fleet and an agent speaking another protocol version', async () => {
  const outside = await connectAs(nodeOutside, await requestToken('secai-agent', { pod: 'agent-x' }));
  expect(outside.refusal).toBe(RefusalReason.REFUSAL_REASON_NOT_ENROLLED);
  const token = await requestToken('secai-agent', { pod: 'agent-a' });
  const old = await connectAs(nodeA, token, { protocolVersion: PROTOCOL_VERSION + 1 });
  expect(old.refusal).toBe(RefusalReason.REFUSAL_REASON_INCOMPATIBLE_VERSION);
});

it('does not let an agent token act on the Kubernetes API (agents hold no API credentials)', async () => {
  const state = readState(SHARED_CONTROL_PLANE_DIR);
  if (!state) throw new Error('no shared control plane');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'lab', server: state.apiServerUrl, caData: readFileSync(join(state.dir, 'pki', 'ca.crt')).toString('base64') }],
    users: [{ name: 'agent', token: await requestToken('secai-agent', { pod: 'agent-a' }) }],
    contexts: [{ name: 'lab', cluster: 'lab', user: 'agent' }],
    currentContext: 'lab',
  });
  const asAgent = await KubeClient.fromKubeConfig(kc);
  try {
    const res = await asAgent.raw({ method: 'GET', path: `/api/v1/namespaces/${ns}/pods` });
    expect(res.status).toBe(401);
  } finally {
    asAgent.close();
  }
});

describe('misbehaving agents', () => {
  const RawClient = makeGenericClientConstructor(
    {
      connect: {
        ...AgentChannelServiceService.connect,
        requestSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => ConnectResponse.decode(b),
      },
    },
    'secai.fleet.v1.AgentChannelService',
  );

  async function sendRaw(first: Buffer): Promise<ConnectResponse[]> {
    const ca = readFileSync(join(dir, 'ca.crt'));
    const client = new RawClient(address, credentials.createSsl(ca), {
      'grpc.ssl_target_name_override': SERVER_NAME,
      'grpc.max_send_message_length': 4 * MAX_MESSAGE_BYTES,
    });
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${await requestToken('secai-agent', { pod: 'agent-a' })}`);
    const call = (client as unknown as { connect: (m: Metadata) => NodeJS.ReadWriteStream }).connect(metadata);
    const responses: ConnectResponse[] = [];
    return new Promise((resolve) => {
      call.on('data', (r: ConnectResponse) => responses.push(r));
      call.on('error', () => resolve(responses));
      call.on('end', () => resolve(responses));
      call.write(first);
      setTimeout(() => resolve(responses), 10_000);
    }).finally(() => client.close()) as Promise<ConnectResponse[]>;
  }

  it('refuses an undecodable first message as a protocol violation', async () => {
    const before = await refusalCount('REFUSAL_REASON_PROTOCOL_VIOLATION');
    const responses = await sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    expect(responses.map((r) => r.body?.$case)).toEqual(['refusal']);
    expect(await refusalCount('REFUSAL_REASON_PROTOCOL_VIOLATION')).toBe(before + 1);
    expect(String(auditLines.at(-1)?.message)).toMatch(/undecodable/);
  });

  it('refuses an oversized message', async () => {
    // A Hello whose capabilities field carries more than MAX_MESSAGE_BYTES.
    const big = Buffer.alloc(MAX_MESSAGE_BYTES + 1024, 0x61);
    const field = Buffer.concat([Buffer.from([0x22]), varint(big.length), big]);
    const hello = Buffer.concat([Buffer.from([0x0a]), varint(field.length), field]);
    const responses = await sendRaw(hello);
    expect(responses.map((r) => r.body?.$case)).toEqual(['refusal']);
    expect(String(auditLines.at(-1)?.message)).toMatch(/exceeds/);
  });
});

function varint(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}
