// The egress section of a node plan: the union of the allowlists of every EgressPolicy that selects
// the node, over the default deny. Rules are normalised and sorted so that equal policies always
// give the same bytes (and so the same plan digest).
import { createHash } from 'node:crypto';
import { canonicalJson } from '../../../api/canonical-json.js';
import type { EgressAllow, EgressPolicySpec, PortRange as SpecPortRange } from '../../../api/gen/crd-types.js';
import {
  EgressMode,
  EgressRule,
  Protocol,
  Via,
  type EgressPlan,
  type PortRange,
} from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { matchesSelector, type Labels } from './label-selector.js';

/** An EgressPolicy as released to one node (during a rollout, nodes may hold different versions). */
export interface EgressPolicyVersion {
  name: string;
  spec: EgressPolicySpec;
}

/** The CRD default for spec.dns.queriesPerMinute. */
export const DEFAULT_DNS_QUERIES_PER_MINUTE = 600;

function portsOf(ports: readonly SpecPortRange[] | undefined): PortRange[] {
  const normalised = (ports ?? []).map((p) => ({ port: p.port, endPort: p.endPort !== undefined && p.endPort > p.port ? p.endPort : 0 }));
  const unique = new Map(normalised.map((p) => [`${p.port}-${p.endPort}`, p]));
  return [...unique.values()].sort((a, b) => a.port - b.port || a.endPort - b.endPort);
}

function protocolOf(protocol: EgressAllow['protocol']): Protocol {
  if (protocol === 'UDP') return Protocol.PROTOCOL_UDP;
  if (protocol === 'Any') return Protocol.PROTOCOL_ANY;
  return Protocol.PROTOCOL_TCP;
}

function destinationOf(allow: EgressAllow): EgressRule['destination'] {
  if (allow.cidr !== undefined) return { $case: 'cidr', value: allow.cidr.toLowerCase() };
  if (allow.ip !== undefined) return { $case: 'ip', value: allow.ip.toLowerCase() };
  if (allow.host !== undefined) return { $case: 'host', value: allow.host.toLowerCase().replace(/\.$/, '') };
  return undefined;
}

export function egressRuleOf(allow: EgressAllow, policy: string): EgressRule | undefined {
  const destination = destinationOf(allow);
  // The CRD requires exactly one destination; an entry without one allows nothing.
  if (!destination) return undefined;
  return {
    destination,
    ports: portsOf(allow.ports),
    protocol: protocolOf(allow.protocol),
    via: allow.via === 'Tor' ? Via.VIA_TOR : Via.VIA_DIRECT,
    policy,
  };
}

/** The policies (as released to this node) whose selector matches its labels, sorted by name. */
export function matchingEgressPolicies(versions: readonly EgressPolicyVersion[], labels: Labels): EgressPolicyVersion[] {
  return versions.filter((v) => matchesSelector(v.spec.nodeSelector, labels)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Merges the matching policies. Mode is Audit only when every matching policy asks for Audit: one
 * Enforce policy, or none at all (the default deny), makes the node enforce, so that adding an
 * Audit policy can never switch enforcement off for a node another policy protects.
 */
export function mergeEgress(versions: readonly EgressPolicyVersion[], labels: Labels): EgressPlan {
  const matching = matchingEgressPolicies(versions, labels);
  const rules = new Map<string, EgressRule>();
  for (const { name, spec } of matching) {
    for (const allow of spec.allow ?? []) {
      const rule = egressRuleOf(allow, name);
      if (rule) rules.set(canonicalJson(rule), rule);
    }
  }
  const allow = [...rules.entries()]
    .sort(([a, ra], [b, rb]) => (ra.policy < rb.policy ? -1 : ra.policy > rb.policy ? 1 : a < b ? -1 : a > b ? 1 : 0))
    .map(([, rule]) => rule);

  const withDns = matching.filter((p) => p.spec.dns);
  const resolvers = [...new Set(withDns.flatMap((p) => p.spec.dns?.resolvers ?? []).map((r) => r.toLowerCase()))].sort();
  // The strictest rate among the policies that set one.
  const queriesPerMinute = withDns.length
    ? Math.min(...withDns.map((p) => p.spec.dns?.queriesPerMinute ?? DEFAULT_DNS_QUERIES_PER_MINUTE))
    : 0;

  const audit = matching.length > 0 && matching.every((p) => p.spec.mode === 'Audit');
  const tor = matching.find((p) => p.spec.tor)?.spec.tor;
  return {
    mode: audit ? EgressMode.EGRESS_MODE_AUDIT : EgressMode.EGRESS_MODE_ENFORCE,
    allow,
    dns: { resolvers, queriesPerMinute },
    // One Tor client per node: the first matching policy (by name) that configures Tor sets it up.
    torTransPort: tor?.transPort ?? 0,
    torDnsPort: tor?.dnsPort ?? 0,
    torNetwork: tor?.network
      ? { dirAuthorities: [...(tor.network.dirAuthorities ?? [])], relays: [...(tor.network.relays ?? [])].sort(), testingNetwork: tor.network.testingNetwork ?? false }
      : undefined,
    policies: matching.map((p) => p.name),
  };
}

/** SHA-256 of one policy's normalised allowlist, as nodes render it (EgressPolicy status.allowlistDigest). */
export function allowlistDigest(version: EgressPolicyVersion): string {
  const rules = (version.spec.allow ?? []).map((a) => egressRuleOf(a, version.name)).filter((r): r is EgressRule => r !== undefined);
  const normalised = [...new Set(rules.map((r) => canonicalJson(EgressRule.toJSON(r))))].sort();
  return createHash('sha256').update(`[${normalised.join(',')}]`).digest('hex');
}
