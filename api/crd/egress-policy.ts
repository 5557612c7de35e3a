import { conditions, count, labelSelector, observedGeneration, sha256 } from './common.js';
import { conditionColumn, type ResourceDefinition } from './resource.js';
import { array, boolean, enumeration, integer, intOrPercent, object, optional, required, string } from './schema.js';

export const EGRESS_MODES = ['Enforce', 'Audit'] as const;
export const EGRESS_PROTOCOLS = ['TCP', 'UDP', 'Any'] as const;
export const EGRESS_VIA = ['Direct', 'Tor'] as const;
export const ROLLOUT_STATES = ['Progressing', 'Complete', 'Stopped'] as const;
/** Largest allowlist one EgressPolicy may carry (merged plans may be larger). */
export const MAX_ALLOW_ENTRIES = 4096;

const FQDN = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?\\.)+[a-z]([-a-z0-9]*[a-z0-9])?\\.?$';

const portRange = object(
  'PortRange',
  'A destination port or an inclusive range of ports.',
  {
    port: required(integer('The destination port, 1 to 65535.', { minimum: 1, maximum: 65535, format: 'int32' })),
    endPort: optional(
      integer('The last port of a range, inclusive, 1 to 65535.', { minimum: 1, maximum: 65535, format: 'int32' }),
    ),
  },
  { rules: [{ rule: '!has(self.endPort) || self.endPort >= self.port', message: 'endPort must not be below port', fieldPath: '.endPort' }] },
);

export const egressAllow = object(
  'EgressAllow',
  'One allowed destination. Exactly one of cidr, ip or host.',
  {
    cidr: optional(
      string('An IPv4 or IPv6 network in CIDR notation, with host bits zero.', {
        maxLength: 43,
        rules: [
          { rule: 'isCIDR(self)', message: 'must be a CIDR such as 192.0.2.0/24 or 2001:db8::/32' },
          { rule: '!isCIDR(self) || cidr(self) == cidr(self).masked()', message: 'host bits must be zero' },
        ],
      }),
    ),
    ip: optional(
      string('A single IPv4 or IPv6 address.', {
        maxLength: 39,
        rules: [{ rule: 'isIP(self)', message: 'must be an IPv4 or IPv6 address' }],
      }),
    ),
    host: optional(
      string(
        'A fully qualified domain name. The node resolves it through the allowed resolvers only and allows the addresses for the record TTL; an unresolved name allows nothing.',
        { maxLength: 253, minLength: 3, pattern: FQDN },
      ),
    ),
    ports: optional(
      array('Destination ports; none means every port.', portRange, { maxItems: 32 }),
    ),
    protocol: optional(enumeration('The transport protocol.', EGRESS_PROTOCOLS, { default: 'TCP' })),
    via: optional(enumeration('Send directly, or through the local Tor transparent proxy.', EGRESS_VIA, { default: 'Direct' })),
    description: optional(string('Why this destination is allowed.', { maxLength: 256 })),
  },
  {
    rules: [
      {
        rule: '[has(self.cidr), has(self.ip), has(self.host)].filter(x, x).size() == 1',
        message: 'exactly one of cidr, ip or host must be set',
      },
      {
        rule: "!has(self.via) || self.via != 'Tor' || (has(self.protocol) && self.protocol == 'TCP')",
        message: 'via: Tor carries TCP only',
        fieldPath: '.protocol',
      },
    ],
  },
);

export const egressPolicySpec = object(
  'EgressPolicySpec',
  'Where selected nodes may send traffic. Everything else is denied; policies only add allows.',
  {
    nodeSelector: optional(labelSelector('LabelSelector', 'Fleet nodes this policy applies to; empty selects every fleet node.')),
    mode: optional(
      enumeration('Enforce drops what is not allowed; Audit counts and logs would-be drops but lets them through.', EGRESS_MODES, {
        default: 'Enforce',
      }),
    ),
    allow: optional(array('Allowed destinations.', egressAllow, { maxItems: MAX_ALLOW_ENTRIES })),
    dns: optional(
      object('EgressDNS', 'DNS leak prevention: queries go only to these resolvers, rate-limited.', {
        resolvers: required(
          array(
            'Resolver addresses the node may query (UDP and TCP port 53).',
            string('A resolver IP address.', { maxLength: 39, rules: [{ rule: 'isIP(self)', message: 'must be an IPv4 or IPv6 address' }] }),
            { maxItems: 8, minItems: 1, listType: 'set' },
          ),
        ),
        queriesPerMinute: optional(
          integer('Query rate limit per node; excess queries are dropped and logged.', { minimum: 1, maximum: 60000, default: 600 }),
        ),
      }),
    ),
    tor: optional(
      object('EgressTor', 'The Tor client the agent runs on the node, and that via: Tor entries are redirected to.', {
        transPort: required(integer('The Tor TransPort on the node loopback.', { minimum: 1, maximum: 65535, format: 'int32' })),
        dnsPort: optional(
          integer('The Tor DNSPort on the node loopback: via: Tor host entries are resolved through Tor, never by a resolver.', {
            minimum: 1,
            maximum: 65535,
            format: 'int32',
          }),
        ),
        network: optional(
          object('EgressTorNetwork', "The Tor network the nodes' Tor client joins: a fleet's own (private network, bridges) or, when absent, the public one.", {
            dirAuthorities: optional(
              array(
                'DirAuthority lines of the network, in torrc syntax (nickname orport=N [no-v2] v3ident=HEX address:dirport FINGERPRINT).',
                string('One directory authority.', {
                  maxLength: 200,
                  pattern: '^[A-Za-z0-9]{1,19} orport=[0-9]{1,5}( no-v2)? v3ident=[0-9A-F]{40} [0-9.]{7,15}:[0-9]{1,5} [0-9A-F]{40}$',
                }),
                { maxItems: 16 },
              ),
            ),
            relays: optional(
              array(
                "Networks (CIDR) of the Tor network's authorities, relays and bridges: the nodes' Tor client, and nothing else on the node, may connect to them.",
                string('A network in CIDR notation.', { maxLength: 43, rules: [{ rule: 'isCIDR(self)', message: 'must be a CIDR such as 192.0.2.0/24' }] }),
                { maxItems: 64, listType: 'set' },
              ),
            ),
            testingNetwork: optional(boolean("TestingTorNetwork: a private network's fast consensus timing, for labs only.", { default: false })),
          }),
        ),
      }),
    ),
    rollout: optional(
      object('EgressRollout', 'How a changed policy reaches the nodes.', {
        canary: optional(integer('Nodes that get the change first.', { minimum: 0, maximum: 1000, default: 1 })),
        maxUnavailable: optional(
          intOrPercent('Nodes (or a percentage of matched nodes) that may be applying the change at once after the canaries.', {
            default: '25%',
          }),
        ),
        stopOnFailure: optional(boolean('Stop the rollout when a node fails to enforce the change.', { default: true })),
        progressDeadlineSeconds: optional(
          integer('A node that has not enforced the change within this time counts as failed.', {
            minimum: 5,
            maximum: 3600,
            default: 120,
          }),
        ),
      }),
    ),
  },
  {
    rules: [
      {
        rule: "!has(self.allow) || !self.allow.exists(a, has(a.via) && a.via == 'Tor') || has(self.tor)",
        message: 'entries with via: Tor need spec.tor',
        fieldPath: '.tor',
      },
      {
        rule: "!has(self.allow) || !self.allow.exists(a, has(a.via) && a.via == 'Tor' && has(a.host)) || (has(self.tor) && has(self.tor.dnsPort))",
        message: 'host entries with via: Tor need spec.tor.dnsPort: they are resolved through Tor',
        fieldPath: '.tor',
      },
    ],
  },
);

export const egressPolicyStatus = object('EgressPolicyStatus', 'Fleet-wide enforcement of this policy.', {
  observedGeneration: optional(observedGeneration()),
  nodes: optional(
    object('PolicyNodeCounts', 'How many selected nodes are in each state.', {
      matched: required(count('Fleet nodes the selector matches.')),
      enforced: required(count('Nodes that enforce the current generation.')),
      failed: required(count('Nodes that failed to apply it.')),
      pending: required(count('Nodes that have not applied it yet.')),
    }),
  ),
  allowlistDigest: optional(sha256('SHA-256 of this policy\'s normalised allowlist as nodes render it.')),
  rollout: optional(
    object('RolloutStatus', 'Progress of the latest change.', {
      state: required(enumeration('Progressing, Complete or Stopped.', ROLLOUT_STATES)),
      generation: required(integer('The policy generation being rolled out.', { minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
      updated: required(count('Nodes released to the new generation.')),
      message: optional(string('What the rollout is doing or why it stopped.', { maxLength: 1024 })),
    }),
  ),
  conditions: optional(conditions()),
});

export const egressPolicyResource: ResourceDefinition = {
  kind: 'EgressPolicy',
  plural: 'egresspolicies',
  singular: 'egresspolicy',
  shortNames: ['secegress'],
  description: 'Allowed egress for selected SecAI nodes, enforced by each node in nftables (default deny).',
  spec: egressPolicySpec,
  status: egressPolicyStatus,
  printerColumns: [
    { name: 'Mode', type: 'string', jsonPath: '.spec.mode', description: 'Enforce or Audit.' },
    { name: 'Matched', type: 'integer', jsonPath: '.status.nodes.matched', description: 'Nodes selected.' },
    { name: 'Enforced', type: 'integer', jsonPath: '.status.nodes.enforced', description: 'Nodes enforcing it.' },
    { name: 'Failed', type: 'integer', jsonPath: '.status.nodes.failed', description: 'Nodes that failed.' },
    { name: 'Rollout', type: 'string', jsonPath: '.status.rollout.state', description: 'Rollout state.' },
    conditionColumn('Ready'),
    { name: 'Digest', type: 'string', jsonPath: '.status.allowlistDigest', description: 'Allowlist digest.', priority: 1 },
  ],
};
