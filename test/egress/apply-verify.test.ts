// Apply and read-back against the real kernel, in a test-created namespace: every golden ruleset
// loads and reads back equal to its intent (nft's own spelling of prefixes, ranges, IPv6 and
// concatenations notwithstanding), and any change made behind the agent's back is reported.
import pino from 'pino';
import { Registry } from 'prom-client';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { runCommand } from '../../agents/src/exec.js';
import { applyEgressTable, harvestEgressCounters, readEgressTable } from '../../agents/src/egress/apply-egress.js';
import { EgressEnforcer } from '../../agents/src/egress/egress-enforcer.js';
import { egressMetrics } from '../../agents/src/egress/egress-metrics.js';
import { egressTableDigest } from '../../agents/src/egress/egress-table.js';
import type { NftTarget } from '../../agents/src/egress/nft-target.js';
import { renderEgressRuleset } from '../../agents/src/egress/render-egress-ruleset.js';
import { GOLDEN_CASES, plan } from '../../agents/src/egress/testdata/golden-cases.js';
import { NetnsHarness } from '../support/netns.js';

let harness: NetnsHarness;
let target: NftTarget;

beforeAll(async () => {
  harness = await NetnsHarness.create({ prefix: 'sfegv' });
  const verify = await harness.addNamespace('verify');
  const peer = await harness.addNamespace('peer');
  await harness.connect({ namespace: verify, device: 'peer0', addresses: ['192.0.2.1/24'] }, { namespace: peer, device: 'verify0', addresses: ['192.0.2.2/24'] });
  target = { exec: runCommand, nftPath: 'nft', netns: verify };
});

afterAll(async () => {
  await harness?.destroy();
});

const nft = (...args: string[]) => harness.runChecked(target.netns!, 'nft', args);

describe.each(GOLDEN_CASES)('golden $name in the kernel', ({ plan: input, resolved, options }) => {
  test('applies, reads back equal to the intent, with the intent digest', async () => {
    const rendered = renderEgressRuleset(input, resolved ?? new Map(), { inboundTcpPorts: [], ...options });
    const applied = await applyEgressTable(target, rendered);
    expect(applied.mismatches).toEqual([]);
    expect(applied.digest).toBe(egressTableDigest(rendered.intent));
    expect(applied.allowEntries).toBe(rendered.allowEntries);
  });
});

describe('drift behind the agent is detected', () => {
  const rendered = renderEgressRuleset(GOLDEN_CASES.find((c) => c.name === 'enforce-mixed')!.plan, GOLDEN_CASES.find((c) => c.name === 'enforce-mixed')!.resolved!, {
    inboundTcpPorts: [8080],
  });

  beforeEach(async () => {
    expect((await applyEgressTable(target, rendered)).mismatches).toEqual([]);
  });

  async function differences(): Promise<string[]> {
    const { compareEgressTables } = await import('../../agents/src/egress/egress-table.js');
    return compareEgressTables(rendered.intent, (await readEgressTable(target)).table);
  }

  test('a static set is sized to its elements: nothing can be added without replacing the table', async () => {
    await expect(nft('add', 'element', 'inet', 'secai', 'allow_v4_tcp_port', '{ 192.0.2.200 . 22 }')).rejects.toThrow(/Too many open files/);
  });

  test.each([
    ['an extra element', ['add', 'element', 'inet', 'secai', 'allow_v4', '{ 192.0.2.200 }'], /allow_v4: 0 element\(s\) missing \(\), 1 unexpected \(192\.0\.2\.200\)/],
    ['a removed element', ['delete', 'element', 'inet', 'secai', 'allow_v4', '{ 203.0.113.0/24 }'], /allow_v4: 1 element\(s\) missing \(203\.0\.113\.0\/24\)/],
    ['a rule inserted first', ['insert', 'rule', 'inet', 'secai', 'output', 'accept'], /chain output rule 1: expected "ct state invalid drop", found "accept"/],
    ['a changed chain policy', ['add', 'chain', 'inet', 'secai', 'output', '{ type filter hook output priority filter; policy accept; }'], /chain output: expected .*policy drop, found .*policy accept/],
    ['a foreign object', ['add', 'quota', 'inet', 'secai', 'q', '{ over 1 mbytes }'], /unexpected quota q/],
    ['a foreign chain', ['add', 'chain', 'inet', 'secai', 'extra'], /unexpected chain extra/],
  ])('%s', async (_, command, message) => {
    await nft(...command);
    const found = await differences();
    expect(found.join('\n')).toMatch(message);
  });

  test('equal tables read back equal, and the digest is stable across replacements', async () => {
    const first = await applyEgressTable(target, rendered);
    const second = await applyEgressTable(target, rendered);
    expect(second.mismatches).toEqual([]);
    expect(second.digest).toBe(first.digest);
  });
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
  const enforcer = new EgressEnforcer({ nft: target, inboundTcpPorts: [], logger, metrics, audit });
  const good = await enforcer.applyEgress(plan([{ ip: '192.0.2.10', ports: [[443]] }]));
  expect(good.error).toBe('');
  expect(audit.events).toEqual([expect.objectContaining({ type: 'egress.applied', subject: good.rulesetDigest })]);

  const broken = new EgressEnforcer({ nft: { ...target, nftPath: '/nonexistent/nft' }, inboundTcpPorts: [], logger, metrics });
  const failed = await broken.applyEgress(plan([{ ip: '192.0.2.11', ports: [[443]] }]));
  expect(failed.error).toMatch(/nft could not apply the egress table/);
  expect(await registry.getSingleMetricAsString('secai_agent_egress_apply_failures_total')).toMatch(/reason="nft"} 1/);
  // Still the good plan's table.
  expect((await readEgressTable(target)).table.sets.find((set) => set.name === 'allow_v4_tcp_port')?.elements).toEqual(['192.0.2.10 . 443']);

  const refused = await enforcer.applyEgress(plan([{ cidr: '192.0.2.1/24' }]));
  expect(refused.error).toMatch(/cannot be rendered: .*host bits/);
  expect(await registry.getSingleMetricAsString('secai_agent_egress_apply_failures_total')).toMatch(/reason="render"} 1/);
  await enforcer.stop();
  await broken.stop();
});
