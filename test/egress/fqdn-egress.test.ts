// FQDN entries end to end: the node side resolves names through the plan's resolver only (a small
// DNS server in the upstream namespace), the answers enter nftables sets with the record TTL as
// element timeout, refreshes keep them before expiry, and a name that does not resolve allows
// nothing. TTLs are seconds here (the floor is lowered for the test) so expiry is observable.
import { EgressMode, EgressPlan, Protocol, Via } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { readEgressTable } from '../../agents/src/egress/apply-egress.js';
import { EgressFixture, OTHER_V4, RESOLVER_V4, ROGUE_RESOLVER_V4, UPSTREAM_V4 } from './egress-fixture.js';

const PORT = 8001;
const TTL_SECONDS = 2;
const FQDN_TIMEOUTS = { minSeconds: 1, maxSeconds: 60 };

function plan(hosts: string[], resolvers = [RESOLVER_V4]): unknown {
  return EgressPlan.toJSON(
    EgressPlan.fromPartial({
      mode: EgressMode.EGRESS_MODE_ENFORCE,
      allow: hosts.map((host) => ({
        destination: { $case: 'host', value: host },
        ports: [{ port: PORT, endPort: 0 }],
        protocol: Protocol.PROTOCOL_TCP,
        via: Via.VIA_DIRECT,
        policy: 'test',
      })),
      dns: { resolvers, queriesPerMinute: 600 },
      policies: ['test'],
    }),
  );
}

let fixture: EgressFixture;

beforeAll(async () => {
  fixture = await EgressFixture.start({ tcpPorts: [PORT], zone: { 'mirror.test': { a: [UPSTREAM_V4], ttl: TTL_SECONDS } } });
}, 60_000);

afterAll(async () => {
  await fixture?.close();
});

const connect = (host: string) => fixture.node.request({ op: 'connect', host, port: PORT, timeoutMs: 1500 });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<void>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}

async function fqdnElements(): Promise<string[]> {
  const listing = await readEgressTable(fixture.nftTarget());
  return listing.table.sets.find((set) => set.name === 'fqdn_v4_tcp_port')?.elements ?? [];
}

test('a name resolved through the allowed resolver is allowed for its TTL, refreshed before expiry, and follows answer changes', async () => {
  const { result } = await fixture.node.request({ op: 'apply', plan: plan(['mirror.test']), fqdnTimeouts: FQDN_TIMEOUTS });
  expect(result.status).toBe('DUTY_STATUS_OK');
  expect(await fqdnElements()).toEqual([`${UPSTREAM_V4} . ${PORT}`]);
  await expect(connect(UPSTREAM_V4)).resolves.toMatchObject({ ok: true });
  await expect(connect(OTHER_V4)).resolves.toMatchObject({ ok: false });

  // The element's timeout is the record's TTL.
  const raw = await fixture.harness.runChecked(fixture.nodeNamespace, 'nft', ['-j', 'list', 'set', 'inet', 'secai', 'fqdn_v4_tcp_port']);
  expect(raw).toMatch(/"timeout": 2\b/);

  // Three TTLs later the name is still allowed: the agent refreshed it.
  await sleep(TTL_SECONDS * 3 * 1000);
  await expect(connect(UPSTREAM_V4)).resolves.toMatchObject({ ok: true });
  const queries = fixture.upstream.stdout().match(/^query mirror\.test 1 .*$/gm) ?? [];
  expect(queries.length).toBeGreaterThanOrEqual(3);
  // Only the allowed resolver was asked.
  expect(queries.every((line) => line.endsWith(`to ${RESOLVER_V4}`))).toBe(true);

  // The answer moves: the new address is allowed after the next refresh, the old one expires.
  await fixture.setZone({ 'mirror.test': { a: [OTHER_V4], ttl: TTL_SECONDS } });
  await sleep(TTL_SECONDS * 2 * 1000 + 500);
  expect(await fqdnElements()).toEqual([`${OTHER_V4} . ${PORT}`]);
  await expect(connect(OTHER_V4)).resolves.toMatchObject({ ok: true });
  await expect(connect(UPSTREAM_V4)).resolves.toMatchObject({ ok: false });
}, 30_000);

test('fail closed: an unresolvable name allows nothing, and answers that stop coming expire', async () => {
  await fixture.setZone({ 'mirror.test': { a: [UPSTREAM_V4], ttl: TTL_SECONDS } });
  const { result } = await fixture.node.request({ op: 'apply', plan: plan(['missing.test', 'mirror.test']), fqdnTimeouts: FQDN_TIMEOUTS });
  expect(result.status).toBe('DUTY_STATUS_OK');
  // A cached answer from the previous test may still be live; the next refresh brings the new one.
  await eventually(async () => expect(await fqdnElements()).toEqual([`${UPSTREAM_V4} . ${PORT}`]), TTL_SECONDS * 2000 + 1000);

  // The resolver starts failing (SERVFAIL): nothing renews the element, so it expires.
  await fixture.setZone({ 'mirror.test': { rcode: 2 } });
  await sleep(TTL_SECONDS * 2 * 1000 + 500);
  expect(await fqdnElements()).toEqual([]);
  await expect(connect(UPSTREAM_V4)).resolves.toMatchObject({ ok: false });
  const { text } = await fixture.node.request({ op: 'metrics' });
  expect(text).toMatch(/secai_agent_egress_fqdn_refresh_failures_total [1-9]/);
}, 30_000);

test('names are asked of exactly the resolvers the plan names', async () => {
  await fixture.node.request({ op: 'apply', plan: plan(['other.test'], [ROGUE_RESOLVER_V4]), fqdnTimeouts: FQDN_TIMEOUTS });
  const queries = fixture.upstream.stdout().match(/^query other\.test .*$/gm) ?? [];
  expect(queries.length).toBeGreaterThan(0);
  expect(queries.every((line) => line.endsWith(`to ${ROGUE_RESOLVER_V4}`))).toBe(true);
});
