// Renders a node's egress plan as the one nftables table `inet secai` (DESIGN §5 "Egress"): the
// SecAI OS base rules, the allowlist as named sets, DNS only to the allowed resolvers at the plan's
// rate, Tor redirection for `via: Tor`, and a counted, rate-limited, logged drop (or, in audit mode,
// a counted and logged accept). Pure: plan and resolved names in, nft text and the intended
// normalised table out.
import { type EgressPlan, EgressMode, type EgressRule, Protocol, Via } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { type AddressInterval, formatAddress, type IpFamily, mergeIntervals, parseAddress, parseInterval } from './ip-address.js';
import { EGRESS_TABLE_FAMILY, EGRESS_TABLE_NAME, type NormalisedChain, type NormalisedSet, type NormalisedTable, sortTable } from './egress-table.js';
import { disjointRectangles, elementKeys, elementText, mergePorts, type PortInterval, type SetElement } from './set-elements.js';

/** A resolved address of an FQDN entry with the seconds its record stays valid. */
export interface ResolvedAddress {
  address: string;
  ttlSeconds: number;
}

/** Answers for the plan's `host` entries, keyed by normaliseHostName(host). */
export type ResolvedHosts = ReadonlyMap<string, readonly ResolvedAddress[]>;

export interface EgressRenderOptions {
  /** TCP ports the node itself accepts connections on: the agent's inference and metrics ports. */
  inboundTcpPorts: readonly number[];
  /** How long an FQDN answer may stay in a set, whatever its TTL says (default 30 s to 1 day). */
  fqdnTimeouts?: FqdnTimeoutBounds;
  /**
   * Destinations the node needs whatever the plan says — the operator's channel over TCP, the
   * Kubernetes API for the node's kubelet — rendered like plan entries (host entries excluded).
   */
  fixedAllow?: readonly EgressRule[];
  /**
   * The uid the node's Tor client runs as. With it, and a plan that configures Tor with relay
   * networks, that uid alone may connect to the Tor network, and its own traffic is never
   * redirected to the TransPort.
   */
  torClientUid?: number;
}

export interface FqdnTimeoutBounds {
  minSeconds: number;
  maxSeconds: number;
}

/**
 * A floor keeps a zero or tiny TTL from turning every connection into a DNS query (Cilium keeps a
 * floor too); a ceiling bounds how long one answer is trusted.
 */
export const DEFAULT_FQDN_TIMEOUTS: FqdnTimeoutBounds = { minSeconds: 30, maxSeconds: 86_400 };

export interface RenderedEgressRuleset {
  /** The `table inet secai { ... }` definition. */
  definition: string;
  intent: NormalisedTable;
  /** Elements rendered into the allow and Tor sets. */
  allowEntries: number;
  /** The elements of the dynamic (FQDN) sets, with their timeouts: what a refresh re-adds. */
  fqdnElements: { set: string; element: SetElement }[];
}

export class EgressPlanError extends Error {
  override name = 'EgressPlanError';
}

// Bounds on what one plan may make the kernel hold. nft needs ~100 MB to load 100,000 concatenated
// elements (reference/ts-stack.md §11); the fleet's bar is 100,000 entries.
export const MAX_PLAN_RULES = 250_000;
export const MAX_PORTS_PER_RULE = 64;
export const MAX_SET_ELEMENTS = 500_000;
/** Concatenated interval sets load ~13x slower than hash sets at 100k elements (10.4 s, ts-stack §11): keep them small. */
export const MAX_RANGE_SET_ELEMENTS = 20_000;
export const MAX_RESOLVERS = 16;
export const MAX_INBOUND_PORTS = 32;

/** Would-be drops are logged at most this often; the counters see every packet. */
const LOG_RATE = 'limit rate 10/minute';
const DNS_PORT = 53;

export const COUNTER_DROPPED = 'egress_dropped';
export const COUNTER_DNS_DROPPED = 'dns_dropped';
export const COUNTER_AUDITED = 'egress_audited';
export const COUNTER_INBOUND_DROPPED = 'inbound_dropped';
const DNS_LIMIT = 'dns_queries';

export function normaliseHostName(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

type Transport = 'any' | 'tcp' | 'udp';
type PortShape = 'all' | 'single' | 'ranges';

/** One allow set: which traffic it matches and how its key is built. */
interface AllowSetKind {
  via: 'direct' | 'tor';
  /** Learned from DNS answers, with timeouts; otherwise fixed by the plan. */
  dynamic: boolean;
  family: IpFamily;
  transport: Transport;
  ports: PortShape;
}

// The catalogue, in rule order. `any` transport exists only without ports: a port needs TCP or UDP.
const ALLOW_SET_KINDS: AllowSetKind[] = (['direct', 'tor'] as const).flatMap((via) =>
  [false, true].flatMap((dynamic) =>
    (['ipv4', 'ipv6'] as const).flatMap((family) =>
      (via === 'tor' ? (['tcp'] as const) : (['any', 'tcp', 'udp'] as const)).flatMap((transport) =>
        (transport === 'any' ? (['all'] as const) : (['all', 'single', 'ranges'] as const)).map((ports) => ({
          via,
          dynamic,
          family,
          transport,
          ports,
        })),
      ),
    ),
  ),
);

const KIND_BY_SHAPE = new Map(ALLOW_SET_KINDS.map((kind) => [`${kind.via} ${kind.dynamic} ${kind.family} ${kind.transport} ${kind.ports}`, kind]));

function setName(kind: AllowSetKind): string {
  return [
    kind.dynamic ? 'fqdn' : 'allow',
    kind.via === 'tor' ? 'tor' : undefined,
    kind.family === 'ipv4' ? 'v4' : 'v6',
    kind.via === 'direct' && kind.transport !== 'any' ? kind.transport : undefined,
    kind.ports === 'single' ? 'port' : kind.ports === 'ranges' ? 'range' : undefined,
  ]
    .filter(Boolean)
    .join('_');
}

const ADDRESS_TYPE: Record<IpFamily, string> = { ipv4: 'ipv4_addr', ipv6: 'ipv6_addr' };
const DADDR: Record<IpFamily, string> = { ipv4: 'ip daddr', ipv6: 'ip6 daddr' };

function setType(kind: AllowSetKind): string[] {
  return kind.ports === 'all' ? [ADDRESS_TYPE[kind.family]] : [ADDRESS_TYPE[kind.family], 'inet_service'];
}

function setFlags(kind: AllowSetKind): string[] {
  const flags: string[] = [];
  // Addresses learned from DNS are single addresses, so their address-only sets stay hash sets.
  if (kind.ports === 'ranges' || (kind.ports === 'all' && !kind.dynamic)) flags.push('interval');
  if (kind.dynamic) flags.push('timeout');
  return flags;
}

/** The match part of the rule that consults a set. */
function setMatch(kind: AllowSetKind, name: string): string {
  if (kind.ports === 'all') {
    return kind.transport === 'any' ? `${DADDR[kind.family]} @${name}` : `meta l4proto ${kind.transport} ${DADDR[kind.family]} @${name}`;
  }
  return `${DADDR[kind.family]} . ${kind.transport} dport @${name}`;
}

interface Destination {
  addresses: { address: AddressInterval; timeoutSeconds?: number }[];
  dynamic: boolean;
}

function destinationOf(rule: EgressRule, index: number, resolved: ResolvedHosts, bounds: FqdnTimeoutBounds): Destination {
  const destination = rule.destination;
  if (!destination) throw new EgressPlanError(`allow[${index}] has no destination`);
  if (destination.$case === 'host') {
    const answers = resolved.get(normaliseHostName(destination.value)) ?? [];
    const addresses = answers.map(({ address, ttlSeconds }) => {
      const parsed = parseAddress(address);
      if (!parsed) throw new EgressPlanError(`resolved address ${JSON.stringify(address.slice(0, 64))} of allow[${index}] is not an IP address`);
      return { address: { family: parsed.family, first: parsed.value, last: parsed.value }, timeoutSeconds: Math.min(bounds.maxSeconds, Math.max(bounds.minSeconds, Math.ceil(ttlSeconds))) };
    });
    return { addresses, dynamic: true };
  }
  try {
    const address = parseInterval(destination.value);
    if (destination.$case === 'ip' && address.first !== address.last) throw new EgressPlanError('not a single address');
    if (destination.$case === 'cidr' && !destination.value.includes('/')) throw new EgressPlanError('not a network');
    return { addresses: [{ address }], dynamic: false };
  } catch (error) {
    throw new EgressPlanError(`allow[${index}].${destination.$case}: ${(error as Error).message}`);
  }
}

function portsOf(rule: EgressRule, index: number): PortInterval[] {
  if (rule.ports.length > MAX_PORTS_PER_RULE) throw new EgressPlanError(`allow[${index}] has ${rule.ports.length} port ranges, at most ${MAX_PORTS_PER_RULE}`);
  const ports = rule.ports.map(({ port, endPort }) => {
    const last = endPort === 0 ? port : endPort;
    if (!Number.isInteger(port) || port < 1 || last > 65535 || last < port) {
      throw new EgressPlanError(`allow[${index}] has an invalid port range ${port}-${endPort}`);
    }
    return { first: port, last };
  });
  return ports.length < 2 ? ports : mergePorts(ports);
}

function transportsOf(rule: EgressRule, hasPorts: boolean, tor: boolean): Transport[] {
  // Tor's TransPort carries TCP only; anything else a Tor entry names stays denied.
  if (tor) return rule.protocol === Protocol.PROTOCOL_UDP ? [] : ['tcp'];
  switch (rule.protocol) {
    case Protocol.PROTOCOL_UDP:
      return ['udp'];
    case Protocol.PROTOCOL_ANY:
      return hasPorts ? ['tcp', 'udp'] : ['any'];
    default:
      // Unspecified means TCP, as in the CRD.
      return ['tcp'];
  }
}

/** Collects every rule's elements into the sets of the catalogue. */
function fillAllowSets(plan: EgressPlan, resolved: ResolvedHosts, bounds: FqdnTimeoutBounds): Map<AllowSetKind, ReducedSet> {
  if (plan.allow.length > MAX_PLAN_RULES) throw new EgressPlanError(`the plan has ${plan.allow.length} allow rules, at most ${MAX_PLAN_RULES}`);
  const filled = new Map<AllowSetKind, SetElement[]>(ALLOW_SET_KINDS.map((kind) => [kind, []]));
  const hostKinds = new Set<AllowSetKind>();
  const kindOf = (via: AllowSetKind['via'], dynamic: boolean, family: IpFamily, transport: Transport, ports: PortShape) =>
    KIND_BY_SHAPE.get(`${via} ${dynamic} ${family} ${transport} ${ports}`)!;
  let total = 0;

  plan.allow.forEach((rule, index) => {
    const tor = rule.via === Via.VIA_TOR;
    // Without a TransPort there is nowhere to redirect to: the entry allows nothing (fail closed).
    if (tor && plan.torTransPort === 0) return;
    const destination = destinationOf(rule, index, resolved, bounds);
    const ports = portsOf(rule, index);
    const via = tor ? 'tor' : 'direct';
    for (const transport of transportsOf(rule, ports.length > 0, tor)) {
      for (const family of ['ipv4', 'ipv6'] as const) {
        // A name's sets exist even before it resolves, so refreshes have somewhere to add answers.
        if (destination.dynamic) {
          if (ports.length === 0) hostKinds.add(kindOf(via, true, family, transport, 'all'));
          for (const port of ports) hostKinds.add(kindOf(via, true, family, transport, port.first === port.last ? 'single' : 'ranges'));
        }
        for (const { address, timeoutSeconds } of destination.addresses) {
          if (address.family !== family) continue;
          const targets =
            ports.length === 0
              ? [{ shape: 'all' as const, port: undefined }]
              : ports.map((port) => ({ shape: port.first === port.last && address.first === address.last ? ('single' as const) : ('ranges' as const), port }));
          for (const { shape, port } of targets) {
            const kind = kindOf(via, destination.dynamic, family, transport, shape);
            filled.get(kind)!.push({ address, port, timeoutSeconds });
            if (++total > MAX_SET_ELEMENTS) throw new EgressPlanError(`the plan expands to more than ${MAX_SET_ELEMENTS} set elements`);
          }
        }
      }
    }
  });

  const reducedSets = new Map<AllowSetKind, ReducedSet>();
  for (const [kind, elements] of filled) {
    const reduced = reduceElements(kind, elements);
    if (kind.ports === 'ranges' && reduced.texts.length > MAX_RANGE_SET_ELEMENTS) {
      throw new EgressPlanError(`${setName(kind)} would hold ${reduced.texts.length} port-range elements, at most ${MAX_RANGE_SET_ELEMENTS}`);
    }
    if (reduced.texts.length > 0 || hostKinds.has(kind)) reducedSets.set(kind, reduced);
  }
  return reducedSets;
}

/** A set's elements as nft text (in rendering order) and as comparison keys (sorted). */
interface ReducedSet {
  texts: string[];
  keys: string[];
  /** Dynamic sets only: the elements with their timeouts, for refreshes. */
  elements: SetElement[];
}

function reduced(elements: SetElement[], dynamic: boolean): ReducedSet {
  return { texts: elements.map(elementText), keys: elementKeys(elements), elements: dynamic ? elements : [] };
}

/** Deduplicates a set's elements into the form the kernel accepts (no overlaps in interval sets). */
function reduceElements(kind: AllowSetKind, elements: SetElement[]): ReducedSet {
  if (kind.dynamic) {
    // One element per key, living as long as its longest-lived answer.
    const byKey = new Map<string, SetElement>();
    for (const element of elements) {
      const key = elementText({ ...element, timeoutSeconds: undefined });
      const seen = byKey.get(key);
      if (!seen || (seen.timeoutSeconds ?? 0) < (element.timeoutSeconds ?? 0)) byKey.set(key, element);
    }
    const unique = [...byKey.values()];
    if (kind.ports !== 'ranges') return reduced(sortElements(unique), true);
    // Ranges of one address may overlap: merge them per address.
    const byAddress = new Map<string, SetElement[]>();
    for (const element of unique) {
      const key = elementText({ address: element.address });
      byAddress.set(key, [...(byAddress.get(key) ?? []), element]);
    }
    const merged = [...byAddress.values()].flatMap((group) => {
      const timeoutSeconds = Math.max(...group.map((element) => element.timeoutSeconds ?? 0));
      return mergePorts(group.map((element) => element.port!)).map((port) => ({ address: group[0]!.address, port, timeoutSeconds }));
    });
    return reduced(sortElements(merged), true);
  }
  switch (kind.ports) {
    case 'all':
      return reduced(
        mergeIntervals(elements.map((element) => element.address)).map((merged) => ({ address: { family: kind.family, ...merged } })),
        false,
      );
    case 'single': {
      // The hot path at 100,000 entries: one string per element, which is both its text and its key.
      const keys = [...new Set(elements.map((element) => `${formatAddress(kind.family, element.address.first)} . ${element.port!.first}`))].sort();
      return { texts: keys, keys, elements: [] };
    }
    case 'ranges':
      return reduced(
        disjointRectangles(
          kind.family,
          elements.map((element) => ({ address: element.address, port: element.port! })),
        ),
        false,
      );
  }
}

function sortElements(elements: SetElement[]): SetElement[] {
  return elements.sort((a, b) =>
    a.address.first !== b.address.first ? (a.address.first < b.address.first ? -1 : 1) : (a.port?.first ?? 0) - (b.port?.first ?? 0),
  );
}

function parseIntervalOrFail(text: string): AddressInterval {
  try {
    return parseInterval(text);
  } catch {
    throw new EgressPlanError(`Tor relay network ${JSON.stringify(text.slice(0, 64))} is not an address or CIDR`);
  }
}

function resolversOf(plan: EgressPlan): Record<IpFamily, AddressInterval[]> {
  const resolvers = plan.dns?.resolvers ?? [];
  if (resolvers.length > MAX_RESOLVERS) throw new EgressPlanError(`the plan names ${resolvers.length} DNS resolvers, at most ${MAX_RESOLVERS}`);
  const byFamily: Record<IpFamily, AddressInterval[]> = { ipv4: [], ipv6: [] };
  for (const resolver of resolvers) {
    const parsed = parseAddress(resolver);
    if (!parsed) throw new EgressPlanError(`DNS resolver ${JSON.stringify(resolver.slice(0, 64))} is not an IP address`);
    byFamily[parsed.family].push({ family: parsed.family, first: parsed.value, last: parsed.value });
  }
  return byFamily;
}

interface RenderedSet {
  normalised: NormalisedSet;
  texts: string[];
}

function renderSetBlock({ normalised, texts }: RenderedSet): string {
  const lines = [`\tset ${normalised.name} {`, `\t\ttype ${normalised.type.join(' . ')}`];
  if (normalised.flags.length > 0) lines.push(`\t\tflags ${normalised.flags.join(',')}`);
  if (normalised.size !== undefined) lines.push(`\t\tsize ${normalised.size}`);
  if (texts.length > 0) lines.push(`\t\telements = { ${texts.join(',\n\t\t\t     ')} }`);
  lines.push('\t}');
  return lines.join('\n');
}

function renderChainBlock(chain: NormalisedChain, hookLine?: string): string {
  const lines = [`\tchain ${chain.name} {`];
  if (hookLine) lines.push(`\t\t${hookLine}`);
  for (const rule of chain.rules) lines.push(`\t\t${rule}`);
  lines.push('\t}');
  return lines.join('\n');
}

const ICMP_IN = 'icmp type { destination-unreachable, echo-request, time-exceeded } accept';
const ICMPV6_IN =
  'icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept';
// Outbound echo requests are not in the base: to arbitrary hosts they are a covert channel. A
// destination allowed for every protocol may be pinged.
const ICMP_OUT = 'icmp type { destination-unreachable, time-exceeded } accept';
const ICMPV6_OUT =
  'icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept';

export function renderEgressRuleset(plan: EgressPlan, resolved: ResolvedHosts, options: EgressRenderOptions): RenderedEgressRuleset {
  const audit = plan.mode === EgressMode.EGRESS_MODE_AUDIT;
  const fixedAllow = options.fixedAllow ?? [];
  if (fixedAllow.some((rule) => rule.destination?.$case === 'host')) throw new EgressPlanError('fixed allow entries must be addresses or networks');
  const allowSets = fillAllowSets({ ...plan, allow: [...plan.allow, ...fixedAllow] }, resolved, options.fqdnTimeouts ?? DEFAULT_FQDN_TIMEOUTS);
  const resolvers = resolversOf(plan);
  const queriesPerMinute = plan.dns?.queriesPerMinute ?? 0;
  // No rate means no DNS at all (fail closed), like an empty resolver list.
  const dnsAllowed = queriesPerMinute > 0;

  const inboundPorts = [...new Set(options.inboundTcpPorts)].sort((a, b) => a - b);
  if (inboundPorts.length > MAX_INBOUND_PORTS) throw new EgressPlanError(`at most ${MAX_INBOUND_PORTS} inbound ports`);
  if (inboundPorts.some((port) => !Number.isInteger(port) || port < 1 || port > 65535)) throw new EgressPlanError('invalid inbound port');

  const sets: RenderedSet[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    if (!dnsAllowed || resolvers[family].length === 0) continue;
    const elements = mergeIntervals(resolvers[family]).map((merged) => ({ address: { family, ...merged } }));
    sets.push({
      normalised: { name: dnsSetName(family), type: [ADDRESS_TYPE[family]], flags: ['interval'], elements: elementKeys(elements) },
      texts: elements.map(elementText),
    });
  }
  let allowEntries = 0;
  const fqdnElements: { set: string; element: SetElement }[] = [];
  for (const [kind, { texts, keys, elements }] of allowSets) {
    allowEntries += texts.length;
    for (const element of elements) fqdnElements.push({ set: setName(kind), element });
    const flags = setFlags(kind);
    // A size hint lets the kernel allocate a static hash set once (~15% faster loads at 100k);
    // dynamic sets grow with DNS answers, so they get none.
    const size = kind.ports === 'single' && !kind.dynamic ? Math.max(texts.length, 1) : undefined;
    sets.push({ normalised: { name: setName(kind), type: setType(kind), flags, size, elements: keys }, texts });
  }

  // The Tor network: only the Tor client's uid may reach it, and it carries nothing else.
  const torUid = options.torClientUid;
  if (torUid !== undefined && (!Number.isInteger(torUid) || torUid < 0 || torUid > 2 ** 32 - 2)) throw new EgressPlanError('invalid Tor client uid');
  const torRules: string[] = [];
  if (plan.torTransPort > 0 && torUid !== undefined) {
    for (const family of ['ipv4', 'ipv6'] as const) {
      const networks = (plan.torNetwork?.relays ?? []).map(parseIntervalOrFail).filter((n) => n.family === family);
      if (networks.length === 0) continue;
      const elements = mergeIntervals(networks).map((merged) => ({ address: { family, ...merged } }));
      const name = `tor_network_${family === 'ipv4' ? 'v4' : 'v6'}`;
      sets.push({ normalised: { name, type: [ADDRESS_TYPE[family]], flags: ['interval'], elements: elementKeys(elements) }, texts: elements.map(elementText) });
      torRules.push(`skuid ${torUid} ${DADDR[family]} @${name} accept`);
    }
  }

  const directKinds = [...allowSets.keys()].filter((kind) => kind.via === 'direct');
  const torKinds = [...allowSets.keys()].filter((kind) => kind.via === 'tor');

  const dnsRules: string[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    if (!dnsAllowed || resolvers[family].length === 0) continue;
    for (const transport of ['udp', 'tcp']) {
      dnsRules.push(`${DADDR[family]} @${dnsSetName(family)} ${transport} dport ${DNS_PORT} limit name "${DNS_LIMIT}" accept`);
    }
  }

  const input: NormalisedChain = {
    name: 'input',
    type: 'filter',
    hook: 'input',
    priority: 0,
    policy: 'drop',
    rules: [
      'ct state invalid drop',
      'ct state established,related accept',
      'iif "lo" accept',
      ICMP_IN,
      ICMPV6_IN,
      // DHCP and DHCPv6 client: answers from servers.
      'udp sport 67 udp dport 68 accept',
      'udp sport 547 udp dport 546 accept',
      ...(inboundPorts.length === 0 ? [] : [`tcp dport ${inboundPorts.length === 1 ? inboundPorts[0] : `{ ${inboundPorts.join(', ')} }`} accept`]),
      `${LOG_RATE} log prefix "secai-in-drop: "`,
      `counter name "${COUNTER_INBOUND_DROPPED}" drop`,
    ],
  };

  // SecAI OS's base also accepts udp/123 and tcp/443 to any destination. A default-deny fleet does
  // not: NTP servers and HTTPS destinations must be on the allowlist like anything else, which is
  // what replaces the blanket 443 rule (and Tor relays ride the allowlist too, not a 443 loophole).
  const output: NormalisedChain = {
    name: 'output',
    type: 'filter',
    hook: 'output',
    priority: 0,
    policy: 'drop',
    rules: [
      'ct state invalid drop',
      'ct state established,related accept',
      'oif "lo" accept',
      // Tor-redirected connections: rewritten to the loopback TransPort by tor_redirect, but the
      // hook still sees the original output device, so `oif "lo"` does not match them.
      ...(torKinds.length === 0 ? [] : [`ct status dnat ip daddr 127.0.0.1 tcp dport ${plan.torTransPort} accept`, `ct status dnat ip6 daddr ::1 tcp dport ${plan.torTransPort} accept`]),
      ICMP_OUT,
      ICMPV6_OUT,
      'udp sport 68 udp dport 67 accept',
      'udp sport 546 udp dport 547 accept',
      ...dnsRules,
      // DNS anywhere else, or beyond the rate: never through the allowlist (DNS leak prevention).
      `meta l4proto { tcp, udp } th dport ${DNS_PORT} jump dns_deny`,
      ...torRules,
      ...directKinds.map((kind) => `${setMatch(kind, setName(kind))} accept`),
      'jump egress_deny',
    ],
  };

  const forward: NormalisedChain = {
    name: 'forward',
    type: 'filter',
    hook: 'forward',
    priority: 0,
    policy: 'drop',
    rules: ['ct state invalid drop', 'ct state established,related accept', `${LOG_RATE} log prefix "secai-fwd-drop: "`, 'drop'],
  };

  // Enforce rejects with admin-prohibited, so a local client fails at once (EHOSTUNREACH) instead
  // of retrying SYNs for minutes; the reply never leaves the node. DNS is dropped, as stub
  // resolvers then fall back to the next allowed resolver. Audit counts, logs and lets through.
  const egressDeny: NormalisedChain = {
    name: 'egress_deny',
    rules: audit
      ? [`${LOG_RATE} log prefix "secai-egress-audit: "`, `counter name "${COUNTER_AUDITED}" accept`]
      : [`${LOG_RATE} log prefix "secai-egress-drop: "`, `counter name "${COUNTER_DROPPED}" reject with icmpx admin-prohibited`],
  };
  const dnsDeny: NormalisedChain = {
    name: 'dns_deny',
    rules: audit
      ? [`${LOG_RATE} log prefix "secai-dns-audit: "`, `counter name "${COUNTER_AUDITED}" accept`]
      : [`${LOG_RATE} log prefix "secai-dns-drop: "`, `counter name "${COUNTER_DNS_DROPPED}" drop`],
  };

  const chains: { chain: NormalisedChain; hookLine?: string }[] = [
    { chain: input, hookLine: 'type filter hook input priority filter; policy drop;' },
    { chain: output, hookLine: 'type filter hook output priority filter; policy drop;' },
    { chain: forward, hookLine: 'type filter hook forward priority filter; policy drop;' },
    { chain: dnsDeny },
    { chain: egressDeny },
  ];
  if (torKinds.length > 0) {
    chains.push({
      chain: {
        name: 'tor_redirect',
        type: 'nat',
        hook: 'output',
        priority: -100,
        policy: 'accept',
        // The Tor client's own connections (to relays, which are never via: Tor) stay as they are.
        rules: torKinds.map((kind) => `${torUid === undefined ? '' : `skuid != ${torUid} `}${setMatch(kind, setName(kind))} redirect to :${plan.torTransPort}`),
      },
      hookLine: 'type nat hook output priority -100; policy accept;',
    });
  }

  const counters = [COUNTER_AUDITED, COUNTER_DNS_DROPPED, COUNTER_DROPPED, COUNTER_INBOUND_DROPPED];
  const limits = dnsRules.length > 0 ? [{ name: DNS_LIMIT, rate: queriesPerMinute, per: 'minute', burst: queriesPerMinute }] : [];

  const blocks = [
    ...counters.map((name) => `\tcounter ${name} {\n\t}`),
    ...limits.map(({ name, rate, burst }) => `\tlimit ${name} {\n\t\trate ${rate}/minute burst ${burst} packets\n\t}`),
    ...sets.map(renderSetBlock),
    ...chains.map(({ chain, hookLine }) => renderChainBlock(chain, hookLine)),
  ];
  const definition = `table ${EGRESS_TABLE_FAMILY} ${EGRESS_TABLE_NAME} {\n${blocks.join('\n\n')}\n}\n`;
  const intent = sortTable({ sets: sets.map((set) => set.normalised), chains: chains.map(({ chain }) => chain), counters, limits, others: [] });
  return { definition, intent, allowEntries, fqdnElements };
}

function dnsSetName(family: IpFamily): string {
  return family === 'ipv4' ? 'dns_v4' : 'dns_v6';
}

/** The one-transaction replace: create-if-absent, delete, define (reference/ts-stack.md §11). */
export function replaceTableTransaction(definition: string): string {
  return `table ${EGRESS_TABLE_FAMILY} ${EGRESS_TABLE_NAME}\ndelete table ${EGRESS_TABLE_FAMILY} ${EGRESS_TABLE_NAME}\n${definition}`;
}
