// The node's boot-time firewall. The base ruleset is the agent's own rendering of an empty plan;
// secai-base-firewall loads it into a real kernel (a test network namespace), where it reads back
// equal to what the agent would enforce, refuses traffic both ways, and lets through exactly the
// join endpoints of node.env. A second start leaves the table alone, and a bad endpoint leaves the
// node closed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChecked, runCommand } from '../../agents/src/exec.js';
import { EgressMode } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { renderEgressRuleset } from '../../agents/src/egress/render-egress-ruleset.js';
import { compareEgressTables } from '../../agents/src/egress/egress-table.js';
import { parseNftListing } from '../../agents/src/egress/nft-listing.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { BASE_RULESET_PATH, renderBaseRuleset } from '../../node-image/base-ruleset.js';
import { NetnsHarness, type NetnsProcess } from '../support/netns.js';

const RULESET = join(REPO_ROOT, BASE_RULESET_PATH);
const FIREWALL = join(REPO_ROOT, 'node-image/rootfs/usr/libexec/secai/secai-base-firewall');
const NODE_V4 = '10.201.0.1';
const SERVER_V4 = '10.201.0.2';
const SERVER_V6 = 'fd00:201::2';
const JOIN_PORT = 6443;
const OTHER_PORT = 7000;
const NODE_LISTEN_PORT = 8080;

// Prints `connected`, `timeout` or the error code of one TCP connection attempt.
const CONNECT = `const net = require('node:net');
const [host, port] = process.argv.slice(1);
const socket = net.connect({ host, port: Number(port), timeout: 1500 });
socket.on('connect', () => { console.log('connected'); socket.destroy(); });
socket.on('timeout', () => { console.log('timeout'); socket.destroy(); });
socket.on('error', (error) => console.log(error.code));`;
const LISTEN = `const net = require('node:net');
const ports = process.argv.slice(1).map(Number);
let listening = 0;
for (const port of ports) net.createServer((socket) => socket.end()).listen(port, '::', () => { if (++listening === ports.length) console.log('listening'); });`;

const emptyPlanIntent = renderEgressRuleset({ mode: EgressMode.EGRESS_MODE_ENFORCE, allow: [], dns: undefined, torTransPort: 0, torDnsPort: 0, policies: [] }, new Map(), {
  inboundTcpPorts: [],
}).intent;

let harness: NetnsHarness;
let scratch: string;

beforeAll(async () => {
  harness = await NetnsHarness.create({ prefix: 'sfimg' });
  scratch = mkdtempSync(join(tmpdir(), 'secai-base-firewall-'));
});

afterAll(async () => {
  await harness?.destroy();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function nodeEnv(name: string, text: string): string {
  const path = join(scratch, name);
  writeFileSync(path, text);
  return path;
}

function startFirewall(namespace: string, env: string, ...extra: string[]) {
  return harness.run(namespace, FIREWALL, ['--ruleset', RULESET, '--node-env', env, ...extra]);
}

async function outputChainRules(namespace: string): Promise<string[]> {
  const listing = parseNftListing(await harness.runChecked(namespace, 'nft', ['-j', 'list', 'table', 'inet', 'secai']));
  return listing.table.chains.find((chain) => chain.name === 'output')!.rules;
}

async function connect(namespace: string, host: string, port: number): Promise<string> {
  const result = await harness.run(namespace, process.execPath, ['-e', CONNECT, host, String(port)], { timeoutMs: 10_000 });
  return result.stdout.trim();
}

it('is the agent renderer’s empty Enforce plan, byte for byte (node-image/base-ruleset.ts regenerates it)', () => {
  expect(readFileSync(RULESET, 'utf8')).toBe(renderBaseRuleset());
});

it('passes nft -c', async () => {
  await runChecked(runCommand, 'nft', ['-c', '-f', RULESET]);
});

it('loads into the kernel as exactly the table the agent enforces for an empty plan', async () => {
  const node = await harness.addNamespace('equal');
  const result = await startFirewall(node, nodeEnv('empty.env', ''));
  expect(result.code).toBe(0);
  const listing = parseNftListing(await harness.runChecked(node, 'nft', ['-j', 'list', 'table', 'inet', 'secai']));
  expect(compareEgressTables(emptyPlanIntent, listing.table)).toEqual([]);
});

describe('with a k3s server next door', () => {
  let node: string;
  let server: string;
  let listeners: NetnsProcess[];

  beforeAll(async () => {
    node = await harness.addNamespace('node');
    server = await harness.addNamespace('server');
    await harness.connect(
      { namespace: node, device: 'veth-node', addresses: [`${NODE_V4}/24`, 'fd00:201::1/64'] },
      { namespace: server, device: 'veth-server', addresses: [`${SERVER_V4}/24`, `${SERVER_V6}/64`] },
    );
    listeners = [harness.spawn(server, process.execPath, ['-e', LISTEN, String(JOIN_PORT), String(OTHER_PORT)]), harness.spawn(node, process.execPath, ['-e', LISTEN, String(NODE_LISTEN_PORT)])];
    await Promise.all(listeners.map((listener) => listener.waitForOutput(/listening/)));
  });

  it('before the firewall, everything connects (so the refusals below are the firewall’s doing)', async () => {
    expect(await connect(node, SERVER_V4, OTHER_PORT)).toBe('connected');
    expect(await connect(server, NODE_V4, NODE_LISTEN_PORT)).toBe('connected');
  });

  it('then lets the node reach only its join endpoints, and nothing reach the node', async () => {
    const env = nodeEnv('join.env', `K3S_URL=https://${SERVER_V4}:${JOIN_PORT}\nSECAI_JOIN_ENDPOINTS="[${SERVER_V6}]:${JOIN_PORT}"\n`);
    const result = await startFirewall(node, env);
    expect(result.stderr).toContain('allowed 2 join endpoint(s)');
    expect(result.code).toBe(0);

    expect(await connect(node, SERVER_V4, JOIN_PORT)).toBe('connected');
    expect(await connect(node, SERVER_V6, JOIN_PORT)).toBe('connected');
    // Refused at once (admin-prohibited), not left to time out.
    expect(await connect(node, SERVER_V4, OTHER_PORT)).toBe('EHOSTUNREACH');
    expect(await connect(server, NODE_V4, NODE_LISTEN_PORT)).toBe('timeout');

    const rules = await outputChainRules(node);
    expect(rules.at(-1)).toBe('jump egress_deny');
    expect(rules.filter((rule) => rule.includes('dport 6443'))).toHaveLength(2);
  });

  it('leaves a table that is already loaded alone when started again', async () => {
    await harness.runChecked(node, 'nft', ['add', 'set', 'inet', 'secai', 'agent_marker', '{ type ipv4_addr; }']);
    const result = await startFirewall(node, nodeEnv('again.env', ''));
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('already loaded');
    await harness.runChecked(node, 'nft', ['list', 'set', 'inet', 'secai', 'agent_marker']);
  });
});

it('fails on an invalid join endpoint and leaves the node closed with the base table', async () => {
  const node = await harness.addNamespace('invalid');
  const result = await startFirewall(node, nodeEnv('invalid.env', `SECAI_JOIN_ENDPOINTS=${SERVER_V4}:99999\n`));
  expect(result.code).not.toBe(0);
  expect(result.stderr).toContain(`invalid join endpoint: ${SERVER_V4}:99999`);
  expect(await outputChainRules(node)).toEqual(emptyPlanIntent.chains.find((chain) => chain.name === 'output')!.rules);
});

const CHECK_REFUSALS: { what: string; env: string; message: string }[] = [
  { what: 'a server named by DNS name', env: 'K3S_URL=https://k3s.lab.internal:6443\n', message: 'must name the server by IP address' },
  { what: 'an IPv4 address out of range', env: 'SECAI_JOIN_ENDPOINTS=10.1.2.300:6443\n', message: 'invalid join endpoint' },
  { what: 'an endpoint without a port', env: `SECAI_JOIN_ENDPOINTS=${SERVER_V4}\n`, message: 'invalid join endpoint' },
  { what: 'seventeen endpoints', env: `SECAI_JOIN_ENDPOINTS="${Array.from({ length: 17 }, (_, i) => `10.9.0.${i + 1}:443`).join(' ')}"\n`, message: 'at most 16' },
];

it.each(CHECK_REFUSALS.map((row, index) => ({ ...row, index })))('--check refuses $what and changes nothing', async ({ env, message, index }) => {
  const node = await harness.addNamespace(`check${index}`);
  const result = await startFirewall(node, nodeEnv(`check-${index}.env`, env), '--check');
  expect(result.code).not.toBe(0);
  expect(result.stderr).toContain(message);
  expect((await harness.runChecked(node, 'nft', ['list', 'tables'])).trim()).toBe('');
});

it('--check accepts valid join endpoints without loading anything', async () => {
  const node = await harness.addNamespace('checkok');
  const result = await startFirewall(node, nodeEnv('check-ok.env', `K3S_URL=https://${SERVER_V4}\nSECAI_JOIN_ENDPOINTS="${SERVER_V4}:30443"\n`), '--check');
  expect(result.stdout).toContain('2 join rule(s) are valid');
  expect(result.code).toBe(0);
  expect((await harness.runChecked(node, 'nft', ['list', 'tables'])).trim()).toBe('');
});
