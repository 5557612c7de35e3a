// The renderer, table-driven: a plan in, the exact nft text out (golden files in testdata/,
// rewritten with UPDATE_GOLDEN=1), and plans it must refuse.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EgressPlanError, renderEgressRuleset } from './render-egress-ruleset.js';
import { GOLDEN_CASES, plan, rule, type RuleInput } from './testdata/golden-cases.js';

const TESTDATA = join(new URL('.', import.meta.url).pathname, 'testdata');

describe.each(GOLDEN_CASES)('golden $name', ({ name, plan: input, resolved, options, allowEntries }) => {
  const rendered = renderEgressRuleset(input, resolved ?? new Map(), { inboundTcpPorts: [], ...options });
  const golden = join(TESTDATA, `${name}.nft`);

  test('renders exactly the golden text', () => {
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, rendered.definition);
    expect(rendered.definition).toBe(readFileSync(golden, 'utf8'));
  });

  test('states an intent whose rules are the rendered rules', () => {
    for (const chain of rendered.intent.chains) {
      for (const line of chain.rules) expect(rendered.definition).toContain(`\t\t${line}\n`);
    }
    expect(rendered.allowEntries).toBe(allowEntries);
  });
});

test('FQDN answers enter sets with their TTL, bounded', () => {
  const rendered = renderEgressRuleset(
    plan([{ host: 'a.example', ports: [[443]] }]),
    new Map([['a.example', [{ address: '192.0.2.1', ttlSeconds: 5 }, { address: '192.0.2.2', ttlSeconds: 120 }, { address: '192.0.2.3', ttlSeconds: 10 ** 7 }]]]),
    { inboundTcpPorts: [], fqdnTimeouts: { minSeconds: 30, maxSeconds: 3600 } },
  );
  expect(rendered.fqdnElements.map(({ set, element }) => [set, element.timeoutSeconds])).toEqual([
    ['fqdn_v4_tcp_port', 30],
    ['fqdn_v4_tcp_port', 120],
    ['fqdn_v4_tcp_port', 3600],
  ]);
});

test('an unresolved name still gets its (empty) sets and rule, and allows nothing', () => {
  const rendered = renderEgressRuleset(plan([{ host: 'a.example', ports: [[443]] }]), new Map(), { inboundTcpPorts: [] });
  expect(rendered.allowEntries).toBe(0);
  expect(rendered.intent.sets.filter((set) => set.name.startsWith('fqdn_')).map((set) => [set.name, set.elements])).toEqual([
    ['fqdn_v4_tcp_port', []],
    ['fqdn_v6_tcp_port', []],
  ]);
});

test.each([
  ['a network with host bits', [{ cidr: '10.0.0.1/24' }], /host bits/],
  ['a network in the ip field', [{ ip: '10.0.0.0/24' }], /allow\[0\]\.ip/],
  ['an address in the cidr field', [{ cidr: '10.0.0.1' }], /not a network/],
  ['garbage', [{ ip: '10.0.0.256' }], /not an IP address/],
  ['an IPv6 prefix too long', [{ cidr: '2001:db8::/129' }], /exceeds 128/],
  ['a port of 0', [{ ip: '10.0.0.1', ports: [[0]] as [number][] }], /invalid port range/],
  ['a port over 65535', [{ ip: '10.0.0.1', ports: [[65536]] as [number][] }], /invalid port range/],
  ['a range ending below its start', [{ ip: '10.0.0.1', ports: [[90, 80]] as [number, number][] }], /invalid port range/],
  ['too many port ranges', [{ ip: '10.0.0.1', ports: Array.from({ length: 65 }, (_, i) => [i + 1] as [number]) }], /at most 64/],
  ['no destination', [{}], /no destination/],
])('refuses %s', (_, allow, message) => {
  expect(() => renderEgressRuleset(plan(allow as RuleInput[]), new Map(), { inboundTcpPorts: [] })).toThrow(message);
  expect(() => renderEgressRuleset(plan(allow as RuleInput[]), new Map(), { inboundTcpPorts: [] })).toThrow(EgressPlanError);
});

test('refuses a bad resolver, a resolved non-address and bad inbound ports', () => {
  expect(() => renderEgressRuleset(plan([], { dns: { resolvers: ['resolver.example'], queriesPerMinute: 10 } }), new Map(), { inboundTcpPorts: [] })).toThrow(/not an IP/);
  expect(() => renderEgressRuleset(plan([{ host: 'a.example' }]), new Map([['a.example', [{ address: 'x', ttlSeconds: 1 }]]]), { inboundTcpPorts: [] })).toThrow(/resolved address/);
  expect(() => renderEgressRuleset(plan([]), new Map(), { inboundTcpPorts: [70000] })).toThrow(/inbound port/);
});

test('refuses a concatenated interval set beyond its bound', () => {
  // 20,001 hosts each with a port range: the slow (pipapo) set kind, kept small on purpose.
  // Every other address, so no two merge into one range.
  const allow = Array.from({ length: 20_001 }, (_, i) => ({ ip: `10.${(2 * i) >> 16}.${((2 * i) >> 8) & 255}.${(2 * i) & 255}`, ports: [[1000, 1001]] as [number, number][] }));
  expect(() => renderEgressRuleset(plan(allow), new Map(), { inboundTcpPorts: [] })).toThrow(/port-range elements, at most 20000/);
});

test('fixed destinations (the operator channel) are allowed whatever the plan says; names are not accepted there', () => {
  const operator = rule({ ip: '192.0.2.250', ports: [[9443]] });
  const rendered = renderEgressRuleset(plan([]), new Map(), { inboundTcpPorts: [], fixedAllow: [operator] });
  expect(rendered.intent.sets.find((set) => set.name === 'allow_v4_tcp_port')?.elements).toEqual(['192.0.2.250 . 9443']);
  expect(() => renderEgressRuleset(plan([]), new Map(), { inboundTcpPorts: [], fixedAllow: [rule({ host: 'operator.example', ports: [[9443]] })] })).toThrow(
    /fixed allow entries must be addresses/,
  );
});
