// Apply and read-back against the real kernel, in a test-created namespace: every golden ruleset
// loads and reads back equal to its intent (nft's own spelling of prefixes, ranges, IPv6 and
// concatenations notwithstanding), and any change made behind the agent's back is reported. Both
// read-backs are covered: nft's full listing, and the terse listing with the elements from the
// kernel dump (nft-set-elements), which must read exactly what nft's listing reads, and the agent's
// way: the same with every nft command through its libnftables session (nft-session.ts).
import pino from 'pino';
import { Registry } from 'prom-client';
import { DutyStatus, type EgressPlan, NodePlan } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { runCommand } from '../../agents/src/exec.js';
import { applyEgressTable, harvestEgressCounters, readEgressTable } from '../../agents/src/egress/apply-egress.js';
import { EgressEnforcer } from '../../agents/src/egress/egress-enforcer.js';
import { egressMetrics } from '../../agents/src/egress/egress-metrics.js';
import { compareEgressTables, egressTableDigest } from '../../agents/src/egress/egress-table.js';
import { buildNftSession, NftSession } from '../../agents/src/egress/nft-session.js';
import type { NftTarget } from '../../agents/src/egress/nft-target.js';
import { type RenderedEgressRuleset, renderEgressRuleset, replaceTableTransaction } from '../../agents/src/egress/render-egress-ruleset.js';
import { buildSetElementReader, nativeHelperCacheDir } from '../../agents/src/egress/set-element-reader.js';
import { GOLDEN_CASES, plan } from '../../agents/src/egress/testdata/golden-cases.js';
import { allowlistPlan } from '../bench/nft-apply.js';
import { recordingDutyContext } from '../support/duty-context.js';
import { NetnsHarness } from '../support/netns.js';

let harness: NetnsHarness;
/** Reads back through nft's full listing. */
let target: NftTarget;
/** Reads back through the terse listing and the kernel dump of the elements. */
let dumping: NftTarget;
/** As the agent runs: the kernel dump, and every nft command through one libnftables session. */
let session: NftTarget;

beforeAll(async () => {
  harness = await NetnsHarness.create({ prefix: 'sfegv' });
  const verify = await harness.addNamespace('verify');
  const peer = await harness.addNamespace('peer');
  await harness.connect({ namespace: verify, device: 'peer0', addresses: ['192.0.2.1/24'] }, { namespace: peer, device: 'verify0', addresses: ['192.0.2.2/24'] });
  target = { exec: runCommand, nftPath: 'nft', netns: verify };
  dumping = { ...target, setElementReader: await buildSetElementReader({ exec: runCommand, cacheDir: nativeHelperCacheDir() }) };
  session = { ...dumping, session: new NftSession({ binary: await buildNftSession({ exec: runCommand, cacheDir: nativeHelperCacheDir() }), netns: verify }) };
});

const READ_BACKS: [string, () => NftTarget][] = [
  ["nft's listing", () => target],
  ['the kernel dump', () => dumping],
  ["the agent's nft session", () => session],
];

afterAll(async () => {
  session?.session?.close();
  await harness?.destroy();
});

const nft = (...args: string[]) => harness.runChecked(target.netns!, 'nft', args);

describe.each(GOLDEN_CASES)('golden $name in the kernel', ({ plan: input, resolved, options }) => {
  const rendered = () => renderEgressRuleset(input, resolved ?? new Map(), { inboundTcpPorts: [], ...options });

  test.each(READ_BACKS)('applies, reads back through %s equal to the intent, with the intent digest', async (_, readBack) => {
    const applied = await applyEgressTable(readBack(), rendered());
    expect(applied.mismatches).toEqual([]);
    expect(applied.digest).toBe(egressTableDigest(rendered().intent));
    expect(applied.allowEntries).toBe(rendered().allowEntries);
  });

  test('the kernel dump reads exactly what nft lists', async () => {
    await applyEgressTable(target, rendered());
    const listed = await readEgressTable(target);
    const dumped = await readEgressTable(dumping);
    expect(dumped.table).toEqual(listed.table);
    expect(dumped.elementCounts).toEqual(listed.elementCounts);
    // The same counters; their values may grow between the two reads (the kernel answers the
    // namespace's own IPv6 neighbour traffic with the counted reject).
    expect([...dumped.counters.keys()].sort()).toEqual([...listed.counters.keys()].sort());
    for (const [name, value] of listed.counters) expect(dumped.counters.get(name)?.packets).toBeGreaterThanOrEqual(value.packets);
  });
});

describe.each(READ_BACKS)('drift behind the agent is detected through %s', (_, readBack) => {
  const rendered = renderEgressRuleset(GOLDEN_CASES.find((c) => c.name === 'enforce-mixed')!.plan, GOLDEN_CASES.find((c) => c.name === 'enforce-mixed')!.resolved!, {
    inboundTcpPorts: [8080],
  });

  beforeEach(async () => {
    expect((await applyEgressTable(readBack(), rendered)).mismatches).toEqual([]);
  });

  async function differences(): Promise<string[]> {
    return compareEgressTables(rendered.intent, (await readEgressTable(readBack())).table);
  }

  test('a static set is sized to its elements: nothing can be added without replacing the table', async () => {
    await expect(nft('add', 'element', 'inet', 'secai', 'allow_v4_tcp_port', '{ 192.0.2.200 . 22 }')).rejects.toThrow(/Too many open files/);
  });

  test.each([
    ['an extra element', ['add', 'element', 'inet', 'secai', 'allow_v4', '{ 192.0.2.200 }'], /allow_v4: 0 element\(s\) missing \(\), 1 unexpected \(192\.0\.2\.200\)/],
    ['a removed element', ['delete', 'element', 'inet', 'secai', 'allow_v4', '{ 203.0.113.0/24 }'], /allow_v4: 1 element\(s\) missing \(203\.0\.113\.0\/24\)/],
    ['a widened network', ['add', 'element', 'inet', 'secai', 'allow_v4_tcp', '{ 10.21.0.0/16 }'], /allow_v4_tcp: 1 element\(s\) missing \(10\.20\.0\.0\/16\), 1 unexpected \(10\.20\.0\.0\/15\)/],
    ['a changed port range', ['add', 'element', 'inet', 'secai', 'allow_v4_tcp_range', '{ 198.51.100.7 . 9011-9020 }'], /allow_v4_tcp_range: 0 element\(s\) missing \(\), 1 unexpected \(198\.51\.100\.7 \. 9011-9020\)/],
    ['an extra DNS answer', ['add', 'element', 'inet', 'secai', 'fqdn_v4_tcp_port', '{ 192.0.2.81 . 443 timeout 60s }'], /fqdn_v4_tcp_port: 0 element\(s\) missing \(\), 1 unexpected \(192\.0\.2\.81 \. 443\)/],
    ['another resolver', ['add', 'element', 'inet', 'secai', 'dns_v6', '{ 2001:db8::99 }'], /dns_v6: 0 element\(s\) missing \(\), 1 unexpected \(2001:db8::99\)/],
    ['a foreign map', ['add', 'map', 'inet', 'secai', 'm', '{ type ipv4_addr : verdict; elements = { 192.0.2.9 : accept } }'], /unexpected map m/],
    ['a foreign set', ['add', 'set', 'inet', 'secai', 'extra', '{ type ipv4_addr; elements = { 192.0.2.9 } }'], /unexpected set extra/],
    ['a rule inserted first', ['insert', 'rule', 'inet', 'secai', 'output', 'accept'], /chain output rule 1: expected "ct state invalid drop", found "accept"/],
    ['a changed chain policy', ['add', 'chain', 'inet', 'secai', 'output', '{ type filter hook output priority filter; policy accept; }'], /chain output: expected .*policy drop, found .*policy accept/],
    ['a foreign object', ['add', 'quota', 'inet', 'secai', 'q', '{ over 1 mbytes }'], /unexpected quota q/],
    ['a foreign chain', ['add', 'chain', 'inet', 'secai', 'extra'], /unexpected chain extra/],
  ])('%s', async (_, command, message) => {
    await nft(...command);
    const found = await differences();
    expect(found.join('\n')).toMatch(message);
  });

  test('a changed element of an address . port set', async () => {
    await nft('delete', 'element', 'inet', 'secai', 'allow_v6_tcp_port', '{ 2001:db8::1:0:0:1 . 443 }');
    await nft('add', 'element', 'inet', 'secai', 'allow_v6_tcp_port', '{ 2001:db8::1:0:0:2 . 443 }');
    expect((await differences()).join('\n')).toMatch(/allow_v6_tcp_port: 1 element\(s\) missing \(2001:db8::1:0:0:1 \. 443\), 1 unexpected \(2001:db8::1:0:0:2 \. 443\)/);
  });

  test('a deleted table reads back as nothing in force', async () => {
    await nft('delete', 'table', 'inet', 'secai');
    const found = await differences().catch((error: Error) => [error.message]);
    expect(found.join('\n')).toMatch(/set allow_v4 is missing|No such file or directory/);
  });

  test('equal tables read back equal, and the digest is stable across replacements', async () => {
    const first = await applyEgressTable(readBack(), rendered);
    const second = await applyEgressTable(readBack(), rendered);
    expect(second.mismatches).toEqual([]);
    expect(second.digest).toBe(first.digest);
  });
});

describe('100,000 elements through the kernel dump', () => {
  const entries = 100_000;
  let rendered: RenderedEgressRuleset;
  const set = 'allow_v4_tcp_port';
  // The bench's allowlist: 10.x.y.z, one TCP port each from 1024 upwards.
  const entry = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255} . ${1024 + (i % 1000)}`;
  const differences = async () => compareEgressTables(rendered.intent, (await readEgressTable(dumping, rendered.intent)).table);

  beforeAll(async () => {
    rendered = renderEgressRuleset(allowlistPlan(entries), new Map(), { inboundTcpPorts: [] });
    // Room for one more element than the intent, so that an extra one can be added behind the
    // agent's back; the size difference itself is reported too.
    const roomy = replaceTableTransaction(rendered.definition).replace(`size ${entries}\n`, `size ${entries + 1}\n`);
    await harness.runChecked(target.netns!, 'nft', ['-f', '-'], { input: roomy, timeoutMs: 60_000 });
  }, 60_000);

  test('reads back equal but for the size', async () => {
    expect(await differences()).toEqual([`set ${set}: expected type ipv4_addr . inet_service flags [] size ${entries}, found type ipv4_addr . inet_service flags [] size ${entries + 1}`]);
  });

  test('a missing element is named', async () => {
    await nft('delete', 'element', 'inet', 'secai', set, `{ ${entry(54_321)} }`);
    try {
      expect((await differences())[1]).toBe(`set ${set}: 1 element(s) missing (${entry(54_321)}), 0 unexpected ()`);
    } finally {
      await nft('add', 'element', 'inet', 'secai', set, `{ ${entry(54_321)} }`);
    }
  });

  test('an extra element is named', async () => {
    await nft('add', 'element', 'inet', 'secai', set, '{ 10.200.0.1 . 22 }');
    try {
      expect((await differences())[1]).toBe(`set ${set}: 0 element(s) missing (), 1 unexpected (10.200.0.1 . 22)`);
    } finally {
      await nft('delete', 'element', 'inet', 'secai', set, '{ 10.200.0.1 . 22 }');
    }
  });

  test('a changed element is named: the same address on another port', async () => {
    await nft('delete', 'element', 'inet', 'secai', set, `{ ${entry(99_999)} }`);
    await nft('add', 'element', 'inet', 'secai', set, `{ ${entry(99_999).replace(/ \d+$/, ' 9')} }`);
    try {
      expect((await differences())[1]).toBe(`set ${set}: 1 element(s) missing (${entry(99_999)}), 1 unexpected (${entry(99_999).replace(/ \d+$/, ' 9')})`);
    } finally {
      await nft('delete', 'element', 'inet', 'secai', set, `{ ${entry(99_999).replace(/ \d+$/, ' 9')} }`);
      await nft('add', 'element', 'inet', 'secai', set, `{ ${entry(99_999)} }`);
    }
  });

  test('reads the same as nft lists', async () => {
    const listed = await readEgressTable(target);
    const dumped = await readEgressTable(dumping);
    expect(dumped.table).toEqual(listed.table);
    expect(dumped.elementCounts.get(set)).toBe(entries);
  }, 30_000);
});

test('counters are read and zeroed without listing the sets; a missing table reads as none', async () => {
  const rendered = renderEgressRuleset(plan([{ ip: '192.0.2.10', ports: [[443]] }]), new Map(), { inboundTcpPorts: [] });
  await applyEgressTable(target, rendered);
  // A datagram to the peer namespace is rejected and counted.
  await harness.run(target.netns!, 'timeout', ['2', 'bash', '-c', 'echo > /dev/udp/192.0.2.2/9']);
  const first = await harvestEgressCounters(target);
  expect(first?.dropped.packets).toBe(1);
  const second = await harvestEgressCounters(target);
  expect(second?.dropped.packets).toBe(0);
  await nft('delete', 'table', 'inet', 'secai');
  await expect(harvestEgressCounters(target)).resolves.toBeUndefined();
});

test('an nft failure leaves the previous table in force and is reported and counted', async () => {
  const registry = new Registry();
  const metrics = egressMetrics(registry);
  const logger = pino({ level: 'silent' });
  const audit = new MemoryAuditSink();
  const { ctx } = recordingDutyContext();
  const converge = (e: EgressEnforcer, egress: EgressPlan) => e.converge(NodePlan.fromPartial({ egress }), ctx);
  const enforcer = new EgressEnforcer({ nft: target, inboundTcpPorts: [], logger, metrics, audit, watch: false });
  const good = await converge(enforcer, plan([{ ip: '192.0.2.10', ports: [[443]] }]));
  expect(good).toMatchObject({ status: DutyStatus.DUTY_STATUS_OK, reason: 'Converged' });
  expect(audit.events).toEqual([expect.objectContaining({ type: 'egress.applied', subject: good.readBackDigest })]);

  const broken = new EgressEnforcer({ nft: { ...target, nftPath: '/nonexistent/nft' }, inboundTcpPorts: [], logger, metrics, watch: false });
  const failed = await converge(broken, plan([{ ip: '192.0.2.11', ports: [[443]] }]));
  expect(failed).toMatchObject({ status: DutyStatus.DUTY_STATUS_FAILED, reason: 'NftFailed', message: expect.stringMatching(/nft could not apply the egress table/) });
  expect(await registry.getSingleMetricAsString('secai_agent_egress_apply_failures_total')).toMatch(/reason="nft"} 1/);
  // Still the good plan's table.
  expect((await readEgressTable(target)).table.sets.find((set) => set.name === 'allow_v4_tcp_port')?.elements).toEqual(['192.0.2.10 . 443']);

  const refused = await converge(enforcer, plan([{ cidr: '192.0.2.1/24' }]));
  expect(refused).toMatchObject({ status: DutyStatus.DUTY_STATUS_FAILED, reason: 'RenderFailed', message: expect.stringMatching(/cannot be rendered: .*host bits/) });
  expect(await registry.getSingleMetricAsString('secai_agent_egress_apply_failures_total')).toMatch(/reason="render"} 1/);
  await enforcer.stop();
  await broken.stop();
});
