// The read-back parser on nft JSON as nft 1.0.6 prints it (shapes taken from real listings), and
// the comparison and digest over the normalised result.
import { createHash } from 'node:crypto';
import { canonicalJson } from '../../../api/canonical-json.js';
import { compareEgressTables, egressTableDigest, isDynamicSet, type NormalisedTable, sortTable } from './egress-table.js';
import { renderEgressRuleset } from './render-egress-ruleset.js';
import { GOLDEN_CASES } from './testdata/golden-cases.js';
import { MAX_LISTED_ELEMENTS, NftListingError, parseNftListing } from './nft-listing.js';

const meta = { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } };
const listing = (...items: object[]) => JSON.stringify({ nftables: [meta, { table: { family: 'inet', name: 'secai', handle: 3 } }, ...items] });
const set = (name: string, type: string | string[], elem: unknown[], extra: object = {}) => ({ set: { family: 'inet', name, table: 'secai', type, handle: 9, elem, ...extra } });
const chain = (name: string, extra: object = {}) => ({ chain: { family: 'inet', table: 'secai', name, handle: 1, ...extra } });
const rule = (chainName: string, expr: unknown[]) => ({ rule: { family: 'inet', table: 'secai', chain: chainName, handle: 7, expr } });

test('every element spelling nft uses reads back to the same keys', () => {
  const parsed = parseNftListing(
    listing(
      set('a', 'ipv4_addr', [{ prefix: { addr: '10.0.0.0', len: 30 } }, '10.0.0.4', { range: ['10.0.0.5', '10.0.0.9'] }], { flags: ['interval'] }),
      set('b', ['ipv4_addr', 'inet_service'], [{ concat: ['10.0.0.1', 80] }, { concat: [{ range: ['10.0.1.0', '10.0.1.6'] }, { range: [443, 450] }] }, { concat: [{ prefix: { addr: '10.0.2.0', len: 24 } }, 22] }]),
      set('c', ['ipv6_addr', 'inet_service'], [{ elem: { val: { concat: ['2001:db8:0::1', 443] }, timeout: 30, expires: 29 } }], { flags: ['timeout'] }),
    ),
  );
  const sets = Object.fromEntries(parsed.table.sets.map((s) => [s.name, s.elements]));
  expect(sets).toEqual({
    a: ['10.0.0.0-10.0.0.9'],
    b: ['10.0.0.1 . 80', '10.0.1.0-10.0.1.6 . 443-450', '10.0.2.0/24 . 22'],
    c: ['2001:db8::1 . 443'],
  });
  expect([...parsed.elementCounts]).toEqual([
    ['a', 3],
    ['b', 3],
    ['c', 1],
  ]);
});

test('rules print as nft spells them; statements the renderer never writes cannot match', () => {
  const parsed = parseNftListing(
    listing(
      chain('output', { type: 'filter', hook: 'output', prio: 0, policy: 'drop' }),
      rule('output', [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { accept: null }]),
      rule('output', [{ match: { op: '==', left: { meta: { key: 'oif' } }, right: 'lo' } }, { accept: null }]),
      rule('output', [
        { match: { op: '==', left: { concat: [{ payload: { protocol: 'ip', field: 'daddr' } }, { payload: { protocol: 'tcp', field: 'dport' } }] }, right: '@s' } },
        { counter: { packets: 12, bytes: 720 } },
        { accept: null },
      ]),
      rule('output', [{ limit: { rate: 10, burst: 5, per: 'minute' } }, { log: { prefix: 'x: ' } }]),
      rule('output', [{ counter: 'egress_dropped' }, { reject: { type: 'icmpx', expr: 'admin-prohibited' } }]),
      rule('output', [{ match: { op: '!=', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: { set: [80, 443] } } }, { drop: null }]),
      rule('output', [{ mangle: { key: { meta: { key: 'mark' } }, value: 1 } }]),
      { counter: { family: 'inet', name: 'egress_dropped', table: 'secai', handle: 2, packets: 4, bytes: 240 } },
    ),
  );
  expect(parsed.table.chains[0]!.rules).toEqual([
    'ct state established,related accept',
    'oif "lo" accept',
    'ip daddr . tcp dport @s counter accept',
    'limit rate 10/minute log prefix "x: "',
    'counter name "egress_dropped" reject with icmpx admin-prohibited',
    'tcp dport != { 80, 443 } drop',
    '?{"mangle":{"key":{"meta":{"key":"mark"}},"value":1}}',
  ]);
  expect(parsed.counters.get('egress_dropped')).toEqual({ packets: 4, bytes: 240 });
});

test.each([
  ['not JSON', 'nope', /invalid JSON/],
  ['no nftables array', '{"x":1}', /no "nftables" array/],
  ['another table', listing({ set: { family: 'inet', name: 's', table: 'other', type: 'ipv4_addr' } }), /table inet other/],
  ['another family', listing({ set: { family: 'ip', name: 's', table: 'secai', type: 'ipv4_addr' } }), /table ip secai/],
  ['a rule of an unknown chain', listing(rule('ghost', [])), /unknown chain ghost/],
  ['an element of the wrong family', listing(set('s', 'ipv4_addr', ['2001:db8::1'])), /unreadable address/],
  ['a port out of range', listing(set('s', ['ipv4_addr', 'inet_service'], [{ concat: ['10.0.0.1', 70000] }])), /unreadable port/],
  ['an element not matching its type', listing(set('s', ['ipv4_addr', 'inet_service'], ['10.0.0.1'])), /does not match its type/],
  ['an unexpected key type', listing(set('s', 'ether_addr', ['00:11:22:33:44:55'])), /unexpected type/],
])('refuses %s', (_, text, message) => {
  expect(() => parseNftListing(text)).toThrow(message);
  expect(() => parseNftListing(text)).toThrow(NftListingError);
});

test('refuses a listing with more elements than the bound', () => {
  const many = Array.from({ length: MAX_LISTED_ELEMENTS + 1 }, () => '10.0.0.1');
  expect(() => parseNftListing(listing(set('s', 'ipv4_addr', many)))).toThrow(/more than 1000000 set elements/);
});

test('a terse ruleset listing: other tables are skipped, elements come from elsewhere', () => {
  const text = JSON.stringify({
    nftables: [
      meta,
      { table: { family: 'inet', name: 'other', handle: 1 } },
      { set: { family: 'inet', name: 'big', table: 'other', type: 'ipv4_addr', handle: 2 } },
      { chain: { family: 'inet', table: 'other', name: 'output', handle: 3 } },
      { table: { family: 'inet', name: 'secai', handle: 4 } },
      // Terse: no `elem`.
      set('allow_v4_tcp_port', ['ipv4_addr', 'inet_service'], [], { elem: undefined, size: 2 }),
    ],
  });
  const asked: string[] = [];
  const parsed = parseNftListing(text, {
    ruleset: true,
    elementsOf: (name, type) => {
      asked.push(`${name}: ${type.join(' . ')}`);
      return { keys: ['10.0.0.1 . 443', '10.0.0.2 . 443'], count: 2 };
    },
  });
  expect(asked).toEqual(['allow_v4_tcp_port: ipv4_addr . inet_service']);
  expect(parsed.table.sets).toEqual([{ name: 'allow_v4_tcp_port', type: ['ipv4_addr', 'inet_service'], flags: [], size: 2, elements: ['10.0.0.1 . 443', '10.0.0.2 . 443'] }]);
  expect(parsed.table.chains).toEqual([]);
  expect([...parsed.elementCounts]).toEqual([['allow_v4_tcp_port', 2]]);
  expect(() => parseNftListing(text, { ruleset: true, elementsOf: () => ({ keys: [], count: MAX_LISTED_ELEMENTS + 1 }) })).toThrow(/more than 1000000 set elements/);
});

const table = (elements: string[], dynamic: string[] = []): NormalisedTable => ({
  sets: [
    { name: 'allow_v4', type: ['ipv4_addr'], flags: ['interval'], elements },
    { name: 'fqdn_v4', type: ['ipv4_addr'], flags: ['timeout'], elements: dynamic },
  ],
  chains: [{ name: 'output', type: 'filter', hook: 'output', priority: 0, policy: 'drop', rules: ['jump egress_deny'] }],
  counters: ['egress_dropped'],
  limits: [],
  others: [],
});

test('the digest covers static elements and leaves out DNS-learned ones', () => {
  expect(egressTableDigest(table(['10.0.0.1']))).toBe(egressTableDigest(table(['10.0.0.1'], ['192.0.2.7'])));
  expect(egressTableDigest(table(['10.0.0.1']))).not.toBe(egressTableDigest(table(['10.0.0.2'])));
});

test.each(GOLDEN_CASES)('the digest of $name is SHA-256 over the canonical JSON of the table', ({ plan, resolved, options }) => {
  const { intent } = renderEgressRuleset(plan, resolved ?? new Map(), { inboundTcpPorts: [], ...options });
  const sorted = sortTable(intent);
  const stable = { ...sorted, sets: sorted.sets.map((set) => (isDynamicSet(set) ? { ...set, elements: [] } : set)) };
  expect(egressTableDigest(intent)).toBe(createHash('sha256').update(canonicalJson(stable)).digest('hex'));
});

test('the comparison names what differs', () => {
  expect(compareEgressTables(table(['10.0.0.1']), table(['10.0.0.1']))).toEqual([]);
  expect(compareEgressTables(table(['10.0.0.1']), table(['10.0.0.2']))).toEqual(['set allow_v4: 1 element(s) missing (10.0.0.1), 1 unexpected (10.0.0.2)']);
  const rewired = { ...table([]), chains: [{ ...table([]).chains[0]!, rules: ['accept'] }] };
  expect(compareEgressTables(table([]), rewired)).toEqual(['chain output rule 1: expected "jump egress_deny", found "accept"']);
});
