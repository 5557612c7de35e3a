// Plans for the renderer's golden tests (testdata/<name>.nft) and for applying those same
// rulesets in a network namespace (test/egress/apply-verify.test.ts).
import { type EgressPlan, EgressMode, type EgressRule, Protocol, Via } from '../../../../api/gen/proto/secai/fleet/v1/agent.js';
import type { EgressRenderOptions, ResolvedHosts } from '../render-egress-ruleset.js';

export type RuleInput = Partial<Omit<EgressRule, 'destination' | 'ports'>> & { ip?: string; cidr?: string; host?: string; ports?: [number, number?][] };

export function rule({ ip, cidr, host, ports = [], protocol = Protocol.PROTOCOL_TCP, via = Via.VIA_DIRECT, policy = 'p' }: RuleInput): EgressRule {
  const destination = ip !== undefined ? { $case: 'ip' as const, value: ip } : cidr !== undefined ? { $case: 'cidr' as const, value: cidr } : host !== undefined ? { $case: 'host' as const, value: host } : undefined;
  return { destination, ports: ports.map(([port, endPort = 0]) => ({ port, endPort })), protocol, via, policy };
}

export function plan(allow: RuleInput[], extra: Partial<EgressPlan> = {}): EgressPlan {
  return { mode: EgressMode.EGRESS_MODE_ENFORCE, allow: allow.map(rule), dns: undefined, torTransPort: 0, torDnsPort: 0, policies: ['p'], ...extra };
}

export interface GoldenCase {
  name: string;
  plan: EgressPlan;
  resolved?: ResolvedHosts;
  options?: Partial<EgressRenderOptions>;
  allowEntries: number;
}

const dns = { resolvers: ['192.0.2.53', '2001:db8::53', '192.0.2.54'], queriesPerMinute: 300 };

export const GOLDEN_CASES: GoldenCase[] = [
  { name: 'base-only', plan: plan([]), options: { inboundTcpPorts: [9100, 8080, 8080] }, allowEntries: 0 },
  {
    name: 'enforce-mixed',
    plan: plan(
      [
        { ip: '198.51.100.7', ports: [[8443], [9000, 9010]] },
        { cidr: '192.0.2.0/28', ports: [[123]], protocol: Protocol.PROTOCOL_UDP },
        { cidr: '203.0.113.0/24', protocol: Protocol.PROTOCOL_ANY },
        { cidr: '10.20.0.0/16', protocol: Protocol.PROTOCOL_TCP },
        { ip: '2001:db8:0:0:1:0:0:1', ports: [[443], [53]], protocol: Protocol.PROTOCOL_ANY },
        { cidr: '2001:db8:100::/48', ports: [[443]] },
        { host: 'Models.Mirror.Example.', ports: [[443]] },
        { host: 'research.example.org', ports: [[443]], via: Via.VIA_TOR },
        { host: 'unanswered.example', ports: [[8080, 8090]], protocol: Protocol.PROTOCOL_UDP },
      ],
      { dns, torTransPort: 9040, policies: ['a', 'b'] },
    ),
    resolved: new Map([
      ['models.mirror.example', [{ address: '192.0.2.80', ttlSeconds: 300 }, { address: '2001:db8::80', ttlSeconds: 0 }]],
      ['research.example.org', [{ address: '198.51.100.99', ttlSeconds: 604800 }]],
    ]),
    options: { inboundTcpPorts: [8080] },
    allowEntries: 13,
  },
  {
    name: 'audit-mode',
    plan: plan([{ ip: '192.0.2.10', ports: [[443]] }], { mode: EgressMode.EGRESS_MODE_AUDIT, dns: { resolvers: ['192.0.2.53'], queriesPerMinute: 60 } }),
    allowEntries: 1,
  },
  {
    // Overlapping and adjacent networks merge; a host inside a network with a wider port range
    // splits into disjoint pieces (the kernel refuses overlaps in concatenated interval sets).
    name: 'overlaps-merge',
    plan: plan([
      { cidr: '10.0.0.0/25', protocol: Protocol.PROTOCOL_ANY },
      { cidr: '10.0.0.128/25', protocol: Protocol.PROTOCOL_ANY },
      { cidr: '10.0.1.0/24', protocol: Protocol.PROTOCOL_ANY },
      { ip: '10.0.0.7', protocol: Protocol.PROTOCOL_ANY },
      { cidr: '172.16.0.0/24', ports: [[443, 450]] },
      { ip: '172.16.0.7', ports: [[440, 445], [449, 460]] },
      { ip: '172.16.9.9', ports: [[22]] },
      { ip: '172.16.9.9', ports: [[22]] },
    ]),
    allowEntries: 5,
  },
  {
    // No rate means no DNS; Tor entries without a TransPort allow nothing.
    name: 'fail-closed',
    plan: plan([{ ip: '192.0.2.10', ports: [[443]], via: Via.VIA_TOR }, { host: 'a.example', ports: [[443]], via: Via.VIA_TOR }], {
      dns: { resolvers: ['192.0.2.53'], queriesPerMinute: 0 },
      torTransPort: 0, torDnsPort: 0,
    }),
    allowEntries: 0,
  },
];
