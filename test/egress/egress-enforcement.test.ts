// Egress enforcement with real nftables in test-created namespaces (DESIGN §5 "Egress", issue 4):
// the node namespace runs a real EgressEnforcer; every destination, allowed or blocked, is an
// address of the upstream namespace this test created.
import { EgressMode, EgressPlan, Protocol, Via } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { readEgressTable } from '../../agents/src/egress/apply-egress.js';
import { EgressFixture, NODE_V4, OTHER_V4, RESOLVER_V4, ROGUE_RESOLVER_V4, UPSTREAM_V4, UPSTREAM_V6 } from './egress-fixture.js';

const ALLOWED_PORT = 8001;
const BLOCKED_PORT = 8002;
const TOR_PORT = 8003;
const UDP_PORT = 9001;
const INBOUND_PORT = 7000;

type RuleInput = { ip?: string; cidr?: string; host?: string; ports?: [number, number?][]; protocol?: Protocol; via?: Via };

function rule({ ip, cidr, host, ports = [], protocol = Protocol.PROTOCOL_TCP, via = Via.VIA_DIRECT }: RuleInput) {
  const destination = ip ? { $case: 'ip' as const, value: ip } : cidr ? { $case: 'cidr' as const, value: cidr } : { $case: 'host' as const, value: host! };
  return { destination, ports: ports.map(([port, endPort = 0]) => ({ port, endPort })), protocol, via, policy: 'test' };
}

function plan(options: { mode?: EgressMode; allow: RuleInput[]; queriesPerMinute?: number; resolvers?: string[]; torTransPort?: number }): unknown {
  return EgressPlan.toJSON(
    EgressPlan.fromPartial({
      mode: options.mode ?? EgressMode.EGRESS_MODE_ENFORCE,
      allow: options.allow.map(rule),
      dns: { resolvers: options.resolvers ?? [RESOLVER_V4], queriesPerMinute: options.queriesPerMinute ?? 600 },
      torTransPort: options.torTransPort ?? 0,
      policies: ['test'],
    }),
  );
}

const baseAllow: RuleInput[] = [
  { ip: UPSTREAM_V4, ports: [[ALLOWED_PORT]] },
  { ip: UPSTREAM_V6, ports: [[ALLOWED_PORT]] },
  { ip: UPSTREAM_V4, ports: [[UDP_PORT]], protocol: Protocol.PROTOCOL_UDP },
];

let fixture: EgressFixture;

beforeAll(async () => {
  fixture = await EgressFixture.start({ tcpPorts: [ALLOWED_PORT, BLOCKED_PORT, TOR_PORT], udpPorts: [UDP_PORT, UDP_PORT + 1] });
}, 60_000);

afterAll(async () => {
  await fixture?.close();
});

async function connect(node = fixture.node, host: string, port: number, timeoutMs = 1500) {
  return node.request({ op: 'connect', host, port, timeoutMs });
}

test('before any table, the namespaces reach each other (the test network works)', async () => {
  await expect(connect(fixture.node, UPSTREAM_V4, BLOCKED_PORT)).resolves.toMatchObject({ ok: true });
});

test('an allowed destination connects; other ports, addresses and protocols are rejected at once and counted', async () => {
  const { report, result } = await fixture.node.request({ op: 'apply', plan: plan({ allow: baseAllow }), inboundTcpPorts: [INBOUND_PORT] });
  expect(result.status).toBe('DUTY_STATUS_OK');
  expect(report.rulesetDigest).toMatch(/^[0-9a-f]{64}$/);
  expect(report.allowEntries).toBe(3);

  await expect(connect(fixture.node, UPSTREAM_V4, ALLOWED_PORT)).resolves.toMatchObject({ ok: true });
  await expect(connect(fixture.node, UPSTREAM_V6, ALLOWED_PORT)).resolves.toMatchObject({ ok: true });
  await expect(fixture.node.request({ op: 'udp', host: UPSTREAM_V4, port: UDP_PORT, timeoutMs: 1000 })).resolves.toMatchObject({ ok: true });

  const blockedPort = await connect(fixture.node, UPSTREAM_V4, BLOCKED_PORT);
  const blockedAddress = await connect(fixture.node, OTHER_V4, ALLOWED_PORT);
  const blockedV6 = await connect(fixture.node, UPSTREAM_V6, BLOCKED_PORT);
  // reject with icmpx admin-prohibited: the local client learns at once instead of retrying SYNs
  // for minutes. IPv4 fails on the first SYN; the kernel acts on the ICMPv6 error only at the first
  // retransmission (~1 s).
  for (const outcome of [blockedPort, blockedAddress]) expect(outcome).toMatchObject({ ok: false, code: 'EHOSTUNREACH', ms: expect.any(Number) });
  expect(Math.max(blockedPort.ms, blockedAddress.ms)).toBeLessThan(500);
  expect(blockedV6).toMatchObject({ ok: false, code: 'EACCES' });
  expect(blockedV6.ms).toBeLessThan(2500);
  await expect(fixture.node.request({ op: 'udp', host: UPSTREAM_V4, port: UDP_PORT + 1, timeoutMs: 500 })).resolves.toMatchObject({ ok: false });

  const after = await fixture.node.request({ op: 'report' });
  expect(Number(after.report.droppedPackets)).toBeGreaterThanOrEqual(4);
  expect(Number(after.report.auditedPackets ?? 0)).toBe(0);
});

test('inbound: only established traffic and the agent ports are accepted', async () => {
  await fixture.node.request({ op: 'apply', plan: plan({ allow: baseAllow }), inboundTcpPorts: [INBOUND_PORT] });
  const listener = fixture.harness.spawn(fixture.nodeNamespace, process.execPath, [
    new URL('upstream-servers.ts', import.meta.url).pathname,
    '--tcp',
    `${NODE_V4}:${INBOUND_PORT},${NODE_V4}:${INBOUND_PORT + 1}`,
  ]);
  try {
    await listener.waitForOutput(/^ready$/m);
    const dial = (port: number) =>
      fixture.harness.run(fixture.upstreamNamespace, 'timeout', ['2', 'bash', '-c', `exec 3<>/dev/tcp/${NODE_V4}/${port} && head -n1 <&3`]);
    await expect(dial(INBOUND_PORT)).resolves.toMatchObject({ code: 0, stdout: `ok ${INBOUND_PORT}\n` });
    // Dropped silently: the dialler times out.
    await expect(dial(INBOUND_PORT + 1)).resolves.toMatchObject({ code: 124 });
  } finally {
    await listener.kill();
  }
});

test('audit mode lets would-be drops through but counts them', async () => {
  const { report } = await fixture.node.request({ op: 'apply', plan: plan({ mode: EgressMode.EGRESS_MODE_AUDIT, allow: baseAllow }) });
  expect(report.mode).toBe('EGRESS_MODE_AUDIT');
  const before = await fixture.node.request({ op: 'report' });
  await expect(connect(fixture.node, UPSTREAM_V4, BLOCKED_PORT)).resolves.toMatchObject({ ok: true });
  await expect(connect(fixture.node, OTHER_V4, ALLOWED_PORT)).resolves.toMatchObject({ ok: true });
  const after = await fixture.node.request({ op: 'report' });
  // One counted packet per connection: the rest of it is established traffic.
  expect(Number(after.report.auditedPackets) - Number(before.report.auditedPackets ?? 0)).toBe(2);
  expect(Number(after.report.droppedPackets)).toBe(Number(before.report.droppedPackets));
});

test('DNS goes only to the allowed resolvers, at the plan rate; the rest is dropped and counted', async () => {
  const zone = { 'mirror.test': { a: [UPSTREAM_V4], ttl: 60 } };
  await fixture.setZone(zone);
  const queriesPerMinute = 5;
  await fixture.node.request({ op: 'apply', plan: plan({ allow: baseAllow, queriesPerMinute }) });
  const before = await fixture.node.request({ op: 'report' });

  // A dropped datagram fails the local send at once (EPERM) rather than timing out.
  const rogue = await fixture.node.request({ op: 'dnsQuery', resolver: ROGUE_RESOLVER_V4, name: 'mirror.test', type: 1, timeoutMs: 700 });
  expect(rogue).toMatchObject({ ok: false, failure: expect.stringMatching(/EPERM/) });

  // The bucket holds one minute's worth (burst = rate); queries beyond it are dropped.
  const answers: boolean[] = [];
  for (let i = 0; i < queriesPerMinute + 5; i++) {
    const result = await fixture.node.request({ op: 'dnsQuery', resolver: RESOLVER_V4, name: 'mirror.test', type: 1, timeoutMs: 400 });
    answers.push(result.ok === true && result.addresses?.[0]?.address === UPSTREAM_V4);
  }
  const answered = answers.filter(Boolean).length;
  expect(answers[0]).toBe(true);
  expect(answered).toBeGreaterThanOrEqual(queriesPerMinute - 1);
  expect(answered).toBeLessThanOrEqual(queriesPerMinute + 1);

  const after = await fixture.node.request({ op: 'report' });
  const dropped = Number(after.report.droppedPackets) - Number(before.report.droppedPackets);
  // The rogue query and every query over the rate.
  expect(dropped).toBe(1 + answers.length - answered);
  // The log rate limit is separate from counting: every drop is counted.
});

test('the rules stay in force after the process that applied them is killed', async () => {
  // The fixture's node keeps healing its own plan in this namespace (drift repair): it holds the
  // same plan and inbound ports as the applier, so the two agents do not fight over the table.
  await fixture.node.request({ op: 'apply', plan: plan({ allow: baseAllow }) });
  const applier = await fixture.startNodeSide();
  try {
    const { result } = await applier.request({ op: 'apply', plan: plan({ allow: baseAllow }), inboundTcpPorts: [INBOUND_PORT] });
    expect(result.status).toBe('DUTY_STATUS_OK');
  } finally {
    await applier.process.kill('SIGKILL');
  }
  expect((await applier.process.exited).signal).toBe('SIGKILL');

  await expect(connect(fixture.node, UPSTREAM_V4, ALLOWED_PORT)).resolves.toMatchObject({ ok: true });
  await expect(connect(fixture.node, UPSTREAM_V4, BLOCKED_PORT)).resolves.toMatchObject({ ok: false, code: 'EHOSTUNREACH' });
  await expect(connect(fixture.node, OTHER_V4, ALLOWED_PORT)).resolves.toMatchObject({ ok: false, code: 'EHOSTUNREACH' });
  const listing = await readEgressTable(fixture.nftTarget());
  expect(listing.table.chains.map((chain) => chain.name)).toContain('output');
});

test('replacing the table under live traffic drops no allowed connection', async () => {
  await fixture.node.request({ op: 'apply', plan: plan({ allow: baseAllow }) });
  // Bounded in count and time; each attempt is a full round trip (the server's greeting).
  const loop = fixture.node.request({ op: 'connectLoop', host: UPSTREAM_V4, port: ALLOWED_PORT, count: 2000, intervalMs: 1, timeoutMs: 2000, maxMs: 20_000 }, 30_000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const variants: RuleInput[][] = [
    [...baseAllow, { cidr: '10.200.0.64/26', ports: [[443, 450]] }],
    [...baseAllow, { ip: OTHER_V4, ports: [[9000]] }],
    baseAllow,
  ];
  const firstReplacement = Date.now();
  for (let i = 0; i < 6; i++) {
    const { result: applied } = await fixture.node.request({ op: 'apply', plan: plan({ allow: variants[i % variants.length]! }) });
    expect(applied.status).toBe('DUTY_STATUS_OK');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const lastReplacement = Date.now();
  const result = await loop;
  // The loop really ran across every replacement.
  expect(result.startedAt).toBeLessThan(firstReplacement);
  expect(result.endedAt).toBeGreaterThan(lastReplacement);
  expect(result.attempts).toBeGreaterThanOrEqual(200);
  expect(result.failures).toEqual([]);
}, 40_000);

test('via: Tor entries are redirected to the TransPort the plan names', async () => {
  const transPort = 9040;
  const tor = fixture.harness.spawn(fixture.nodeNamespace, process.execPath, [new URL('upstream-servers.ts', import.meta.url).pathname, '--tcp', `127.0.0.1:${transPort}`]);
  try {
    await tor.waitForOutput(/^ready$/m);
    const { result } = await fixture.node.request({
      op: 'apply',
      plan: plan({ allow: [...baseAllow, { ip: UPSTREAM_V4, ports: [[TOR_PORT]], via: Via.VIA_TOR }], torTransPort: transPort }),
    });
    expect(result.status).toBe('DUTY_STATUS_OK');
    // The stand-in for Tor answers, not the upstream server on TOR_PORT.
    await expect(connect(fixture.node, UPSTREAM_V4, TOR_PORT)).resolves.toMatchObject({ ok: true, greeting: `ok ${transPort}` });
    await expect(connect(fixture.node, UPSTREAM_V4, ALLOWED_PORT)).resolves.toMatchObject({ ok: true, greeting: `ok ${ALLOWED_PORT}` });

    // Without a TransPort the Tor entry allows nothing (fail closed).
    await fixture.node.request({ op: 'apply', plan: plan({ allow: [...baseAllow, { ip: UPSTREAM_V4, ports: [[TOR_PORT]], via: Via.VIA_TOR }] }) });
    await expect(connect(fixture.node, UPSTREAM_V4, TOR_PORT)).resolves.toMatchObject({ ok: false, code: 'EHOSTUNREACH' });
  } finally {
    await tor.kill();
  }
});

test('the agent exports its egress metrics', async () => {
  await fixture.node.request({ op: 'apply', plan: plan({ allow: baseAllow }) });
  await connect(fixture.node, UPSTREAM_V4, BLOCKED_PORT);
  await fixture.node.request({ op: 'report' });
  const { text } = await fixture.node.request({ op: 'metrics' });
  expect(text).toMatch(/secai_agent_egress_apply_duration_seconds_count [1-9]/);
  expect(text).toMatch(/secai_agent_egress_dropped_packets_total [1-9]/);
  expect(text).toMatch(/secai_agent_egress_allow_entries 3/);
  expect(text).toContain('secai_agent_egress_apply_failures_total{reason="nft"} 0');
});
