// Tor for real (issue 17): a private Tor network (hack/tor/private-tor-network.ts: three
// authorities, a middle relay and an exit) runs in a test-created namespace; the node namespace
// runs a real NodeAgent whose Tor duty runs Debian's tor as the node's client, configured from the
// plan, and whose egress table redirects via: Tor destinations to it. Topology (no default route
// anywhere, every address a test namespace's own):
//
//   node 10.250.1.2 ── 10.250.1.1 tornet (relays) 10.251.1.1 ── 10.251.1.2 upstream (DNS)
//   node 10.252.1.2 ─────────────────────────────────────────── 10.252.1.1/.3 upstream (TCP)
//
// The node reaches the upstream directly as well, so "never sent direct" is a property of the
// agent, not of the routing: a via: Tor connection that went direct would show the node's address.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressMode, EgressPlan, Protocol, Via } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { startPrivateTorNetwork, type PrivateTorNetwork } from '../../hack/tor/private-tor-network.js';
import { EgressFixture, type NodeSide } from '../egress/egress-fixture.js';
import { NetnsHarness, type NetnsProcess } from '../support/netns.js';

const NODE_TOR = '10.250.1.2';
const RELAYS = '10.250.1.1';
const TORNET_UP = '10.251.1.1';
const UPSTREAM_DNS = '10.251.1.2';
const NODE_DIRECT = '10.252.1.2';
const UPSTREAM = '10.252.1.1';
const UPSTREAM_BY_NAME = '10.252.1.3';
const DIRECT_PORT = 8301;
const TOR_PORT = 8302;
const TRANS_PORT = 9040;
const DNS_PORT = 9053;

let harness: NetnsHarness;
let nodeNamespace: string;
let upstream: NetnsProcess;
let network: PrivateTorNetwork;
let node: NodeSide;
let workDir: string;
/** A second node, for clients that must not share the first one's ports or table. */
let otherNamespace: string;

function plan(network: { dirAuthorities: string[]; relays: string[] }, extraHosts: string[] = []): unknown {
  const rule = (destination: { $case: 'ip' | 'host'; value: string }, port: number, via: Via) => ({ destination, ports: [{ port, endPort: 0 }], protocol: Protocol.PROTOCOL_TCP, via, policy: 'tor-test' });
  return EgressPlan.toJSON(
    EgressPlan.fromPartial({
      mode: EgressMode.EGRESS_MODE_ENFORCE,
      allow: [
        rule({ $case: 'ip', value: UPSTREAM }, DIRECT_PORT, Via.VIA_DIRECT),
        rule({ $case: 'ip', value: UPSTREAM }, TOR_PORT, Via.VIA_TOR),
        rule({ $case: 'host', value: 'mirror.test' }, TOR_PORT, Via.VIA_TOR),
        ...extraHosts.map((host) => rule({ $case: 'host', value: host }, TOR_PORT, Via.VIA_TOR)),
      ],
      // No resolver at all: a name can only be resolved through Tor.
      dns: { resolvers: [], queriesPerMinute: 0 },
      torTransPort: TRANS_PORT,
      torDnsPort: DNS_PORT,
      torNetwork: { dirAuthorities: network.dirAuthorities, relays: network.relays, testingNetwork: true },
      policies: ['tor-test'],
    }),
  );
}

async function torState(side = node, predicate: (state: { tor: { state: string; reason: string; restarts?: number }; result: { status: string } }) => boolean, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await side.request({ op: 'tor' });
    if (predicate(state)) return state;
    if (Date.now() > deadline) throw new Error(`Tor did not reach the expected state: ${JSON.stringify(state)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const connections = () => [...upstream.stdout().matchAll(/^connection (\d+) from (\S+)$/gm)].map((m) => ({ port: Number(m[1]), from: m[2]! }));
/** The upstream's connection log (from entry `since` on) once it names every port of `ports` (at most 5 s). */
async function loggedConnections(ports: number[], since = 0): Promise<{ port: number; from: string }[]> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !ports.every((p) => connections().slice(since).some((c) => c.port === p))) await new Promise((r) => setTimeout(r, 50));
  return connections().slice(since);
}
const connect = (host: string, port: number, side = node) => side.request({ op: 'connect', host, port, timeoutMs: 20_000 }, 30_000);

/** A via: Tor connection; when it fails, what the node's client and the exit logged, to say why. */
async function torConnect(host: string, port: number) {
  const outcome = await connect(host, port);
  if (!outcome.ok) {
    const client = ((await node.request({ op: 'tor' })).log as string[]).join('\n');
    process.stderr.write(`via: Tor connection to ${host}:${port} failed (${JSON.stringify(outcome)})\nthe node's Tor client logged:\n${client}\nthe exit logged:\n${network.processes.at(-1)!.stdout().slice(-4000)}\n`);
  }
  return outcome;
}

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'tor-egress-'));
  harness = await NetnsHarness.create({ prefix: 'sftor' });
  nodeNamespace = await harness.addNamespace('node');
  const tornet = await harness.addNamespace('tornet');
  const up = await harness.addNamespace('upstream');
  await harness.connect({ namespace: nodeNamespace, device: 'tor0', addresses: [`${NODE_TOR}/24`] }, { namespace: tornet, device: 'node0', addresses: [`${RELAYS}/24`] });
  await harness.connect({ namespace: tornet, device: 'up0', addresses: [`${TORNET_UP}/24`] }, { namespace: up, device: 'tornet0', addresses: [`${UPSTREAM_DNS}/24`] });
  await harness.connect({ namespace: nodeNamespace, device: 'up0', addresses: [`${NODE_DIRECT}/24`] }, { namespace: up, device: 'node0', addresses: [`${UPSTREAM}/24`, `${UPSTREAM_BY_NAME}/24`] });
  // The exit reaches the upstream's service addresses through the upstream's other leg (not a default route).
  await harness.runChecked(tornet, 'ip', ['route', 'add', '10.252.1.0/24', 'via', UPSTREAM_DNS]);
  await harness.assertNoDefaultRoute(tornet);
  otherNamespace = await harness.addNamespace('node2');
  await harness.connect({ namespace: otherNamespace, device: 'tor0', addresses: ['10.250.2.2/24'] }, { namespace: tornet, device: 'node2', addresses: ['10.250.2.1/24'] });
  await harness.runChecked(otherNamespace, 'ip', ['route', 'add', `${RELAYS}/32`, 'via', '10.250.2.1']);
  upstream = harness.spawn(up, process.execPath, [
    new URL('../egress/upstream-servers.ts', import.meta.url).pathname,
    '--tcp', [UPSTREAM, UPSTREAM_BY_NAME].flatMap((a) => [DIRECT_PORT, TOR_PORT].map((p) => `${a}:${p}`)).join(','),
    '--dns', `${UPSTREAM_DNS}:53`,
    '--zone', JSON.stringify({ 'mirror.test': { a: [UPSTREAM_BY_NAME], ttl: 60 }, 'second.test': { a: [UPSTREAM_BY_NAME], ttl: 60 } }),
  ]);
  await upstream.waitForOutput(/^ready$/m);
  network = await startPrivateTorNetwork({ harness, namespace: tornet, address: RELAYS, dir: join(workDir, 'network'), exit: { addresses: [UPSTREAM, UPSTREAM_BY_NAME], ports: [TOR_PORT], resolver: UPSTREAM_DNS } });
  process.stderr.write(`private Tor network: consensus with every relay after ${network.consensusMs} ms\n`);
  node = await EgressFixture.startNodeSide(harness, nodeNamespace);
}, 300_000);

afterAll(async () => {
  await network?.stop();
  await harness?.destroy();
  rmSync(workDir, { recursive: true, force: true });
}, 60_000);

it('reaches a via: Tor destination through the node\'s Tor client; the upstream sees the exit, never the node', async () => {
  const started = Date.now();
  const { result } = await node.request({ op: 'apply', plan: plan(network), tor: {} });
  expect(result.status).toBe('DUTY_STATUS_OK');
  const ready = await torState(node, (s) => s.tor.state === 'TOR_STATE_AVAILABLE');
  process.stderr.write(`node Tor client bootstrapped ${Date.now() - started} ms after the plan\n`);
  expect(ready.result).toMatchObject({ status: 'DUTY_STATUS_OK', reason: 'Converged' });
  await expect(torConnect(UPSTREAM, TOR_PORT)).resolves.toMatchObject({ ok: true, greeting: `ok ${TOR_PORT}` });
  await expect(connect(UPSTREAM, DIRECT_PORT)).resolves.toMatchObject({ ok: true, greeting: `ok ${DIRECT_PORT}` });
  // The upstream logs each connection before it greets, but its log reaches this process through a
  // pipe of its own, which may lag the greeting (the node's answer) on a busy machine.
  const seen = await loggedConnections([TOR_PORT, DIRECT_PORT]);
  expect(seen.filter((c) => c.port === TOR_PORT).map((c) => c.from)).toEqual([TORNET_UP]);
  expect(seen.filter((c) => c.port === DIRECT_PORT).map((c) => c.from)).toEqual([NODE_DIRECT]);
  // Anything else is refused as before, Tor or not.
  await expect(connect(UPSTREAM, 9999)).resolves.toMatchObject({ ok: false, code: 'EHOSTUNREACH' });
}, 240_000);

it('resolves via: Tor names through Tor only: the exit asks the upstream\'s resolver, and no DNS query leaves the node', async () => {
  const capture = spawn('ip', ['netns', 'exec', nodeNamespace, 'tcpdump', '-i', 'any', '-n', '-l', 'port 53'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let captured = '';
  capture.stdout.on('data', (chunk: Buffer) => (captured += chunk.toString()));
  let started = '';
  capture.stderr.on('data', (chunk: Buffer) => (started += chunk.toString()));
  try {
    const deadline = Date.now() + 10_000;
    while (!/listening on/.test(started) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    // A plan with a name not resolved before: it is asked for now, while the capture runs.
    const { result } = await node.request({ op: 'apply', plan: plan(network, ['second.test']), tor: {} });
    expect(result.status).toBe('DUTY_STATUS_OK');
    const asked = new RegExp(`^query second\\.test 1 ${TORNET_UP.replaceAll('.', '\\.')}`, 'm');
    const until = Date.now() + 60_000;
    while (!asked.test(upstream.stdout()) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    // The exit asked the upstream's resolver; the node never did.
    expect(upstream.stdout()).toMatch(asked);
    expect(upstream.stdout()).not.toMatch(new RegExp(`^query \\S+ \\d+ ${NODE_DIRECT.replaceAll('.', '\\.')}`, 'm'));
    // The names' address answers through Tor, and only through Tor.
    await expect(torConnect(UPSTREAM_BY_NAME, TOR_PORT)).resolves.toMatchObject({ ok: true, greeting: `ok ${TOR_PORT}` });
    expect(connections().filter((c) => c.port === TOR_PORT && c.from === NODE_DIRECT)).toEqual([]);
  } finally {
    capture.kill('SIGINT');
    await new Promise((r) => capture.once('close', r));
  }
  // Not one packet to or from port 53 on any link of the node.
  expect(captured.trim()).toBe('');
}, 120_000);

it('fails closed when the Tor client is stopped: TorUnavailable, via: Tor refused and never sent direct, then flows again without a new plan', async () => {
  const { torDir } = await node.request({ op: 'tor' });
  const before = connections().length;
  execFileSync('pkill', ['-KILL', '-f', `${torDir}/torrc`]);
  const down = await torState(node, (s) => s.tor.state === 'TOR_STATE_UNAVAILABLE', 10_000);
  expect(down.tor.reason).toMatch(/NotRunning|Starting|Bootstrapping/);
  expect(down.result).toMatchObject({ status: 'DUTY_STATUS_PROGRESSING', reason: 'TorUnavailable' });
  const metrics = (await node.request({ op: 'metrics' })).text as string;
  expect(metrics).toMatch(/^secai_agent_tor_available 0$/m);
  expect(metrics).toMatch(/^secai_agent_tor_configured 1$/m);
  // Refused at the TransPort at once — never a connection from the node's own address.
  const refused = await connect(UPSTREAM, TOR_PORT);
  expect(refused).toMatchObject({ ok: false, code: 'ECONNREFUSED' });
  expect(connections().slice(before)).toEqual([]);
  // The agent restarts its client; the same plan works again.
  await torState(node, (s) => s.tor.state === 'TOR_STATE_AVAILABLE' && Number(s.tor.restarts) >= 1);
  await expect(torConnect(UPSTREAM, TOR_PORT)).resolves.toMatchObject({ ok: true });
  expect((await loggedConnections([TOR_PORT], before)).map((c) => c.from)).toEqual([TORNET_UP]);
}, 240_000);

describe('bad input', () => {
  it('an unreachable authority list: the client never bootstraps, the node says TorUnavailable, nothing goes out', async () => {
    const other = await EgressFixture.startNodeSide(harness, otherNamespace);
    try {
      // The authorities' address answers, but nothing listens on these ports.
      const dead = { dirAuthorities: network.dirAuthorities.map((line) => line.replace(/ 10\.250\.1\.1:\d+ /, ' 10.250.1.1:7999 ').replace(/orport=\d+/, 'orport=7998')), relays: network.relays };
      const { result } = await other.request({ op: 'apply', plan: plan(dead), tor: {} });
      expect(result.status).toBe('DUTY_STATUS_OK');
      await new Promise((r) => setTimeout(r, 8_000));
      const state = await other.request({ op: 'tor' });
      expect(state.tor).toMatchObject({ state: 'TOR_STATE_UNAVAILABLE' });
      expect(state.tor.reason).toMatch(/Bootstrapping|Starting/);
      expect(state.result).toMatchObject({ status: 'DUTY_STATUS_PROGRESSING', reason: 'TorUnavailable' });
    } finally {
      await other.process.kill('SIGKILL');
    }
  }, 120_000);

  it('a Tor client that crashes again and again: Crashing, with its last words', async () => {
    const crashing = join(workDir, 'crashing-tor');
    writeFileSync(crashing, '#!/bin/sh\necho "[err] simulated crash" >&2\nexit 1\n');
    chmodSync(crashing, 0o755);
    const other = await EgressFixture.startNodeSide(harness, otherNamespace);
    try {
      await other.request({ op: 'apply', plan: plan(network), tor: { torPath: crashing } });
      const state = await torState(other, (s) => s.tor.reason === 'Crashing', 60_000);
      expect(state.tor.message).toContain('simulated crash');
      expect(state.result).toMatchObject({ status: 'DUTY_STATUS_PROGRESSING', reason: 'TorUnavailable' });
    } finally {
      await other.process.kill('SIGKILL');
    }
  }, 120_000);
});
