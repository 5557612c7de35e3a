// Enforcement that heals (issue 12), with real nftables in test-created namespaces: the node
// namespace runs a real NodeAgent whose egress duty loops (netlink watch, generation poll, resync);
// each tamper class is a real nft command run into that namespace; the agent must record the drift,
// repair it by re-applying the table atomically, and read it back in force within the 5 s bar,
// with the blocked port refused again and the allowed one open. A repair that cannot happen (nft
// fails) leaves the duty Failed, and it heals once nft works again.
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { DutyStatus, EgressMode, EgressPlan, NodePlan, Protocol, Via } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { DriftKind } from '../../api/proto/duty-results.js';
import { readEgressTable } from '../../agents/src/egress/apply-egress.js';
import { EgressEnforcer } from '../../agents/src/egress/egress-enforcer.js';
import { egressMetrics } from '../../agents/src/egress/egress-metrics.js';
import { runNft } from '../../agents/src/egress/nft-target.js';
import { buildSetElementReader, nativeHelperCacheDir } from '../../agents/src/egress/set-element-reader.js';
import { runCommand } from '../../agents/src/exec.js';
import { recordingDutyContext } from '../support/duty-context.js';
import { EgressFixture, UPSTREAM_V4 } from './egress-fixture.js';
import { tamperClasses } from './tamper-classes.js';

const ALLOWED_PORT = 8101;
const BLOCKED_PORT = 8102;
/** The bar: from the tamper to the table read back in force. */
const REPAIR_BAR_MS = 5_000;

const egressPlan = EgressPlan.toJSON(
  EgressPlan.fromPartial({
    mode: EgressMode.EGRESS_MODE_ENFORCE,
    allow: [{ destination: { $case: 'ip', value: UPSTREAM_V4 }, ports: [{ port: ALLOWED_PORT, endPort: 0 }], protocol: Protocol.PROTOCOL_TCP, via: Via.VIA_DIRECT, policy: 'test' }],
    dns: { resolvers: [], queriesPerMinute: 0 },
    policies: ['test'],
  }),
);

let fixture: EgressFixture;
let inForceDigest: string;

beforeAll(async () => {
  fixture = await EgressFixture.start({ tcpPorts: [ALLOWED_PORT, BLOCKED_PORT] });
  const { result } = await fixture.node.request({ op: 'apply', plan: egressPlan });
  expect(result.status).toBe('DUTY_STATUS_OK');
  inForceDigest = result.readBackDigest;
}, 60_000);

afterAll(async () => {
  await fixture?.close();
});

const connect = (port: number) => fixture.node.request({ op: 'connect', host: UPSTREAM_V4, port, timeoutMs: 1500 });

/** Polls the agent until the drift detected after `since` is repaired; returns it with the agent's state. */
async function waitForRepair(since: number, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await fixture.node.request({ op: 'duty' });
    const drift = state.result.lastDrift;
    if (drift && Number(drift.detectedUnixMillis) >= since && Number(drift.repairedUnixMillis) > 0 && state.result.status === 'DUTY_STATUS_OK') return { ...state, drift };
    if (Date.now() > deadline) throw new Error(`no repaired drift after ${timeoutMs} ms: ${JSON.stringify(state.result)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.each(tamperClasses({ upstream: UPSTREAM_V4, allowedPort: ALLOWED_PORT, blockedPort: BLOCKED_PORT }).map((c) => [c.name, c] as const))('%s', (_name, tamper) => {
  it(`is found as ${tamper.kind}, repaired and read back in force within ${REPAIR_BAR_MS} ms`, async () => {
    const before = await fixture.node.request({ op: 'duty' });
    const since = Date.now();
    await tamper.tamper(fixture.nftTarget());
    const { drift, result, report, audit } = await waitForRepair(since);
    const repairMs = Number(drift.repairedUnixMillis) - since;
    expect(drift.kind).toBe(tamper.kind);
    expect(repairMs).toBeLessThan(REPAIR_BAR_MS);
    expect(Number(result.drifts)).toBe(Number(before.result.drifts ?? 0) + 1);
    // What is reported is what was read back, and it is the table of the plan again.
    expect(result.readBackDigest).toBe(inForceDigest);
    expect(report.rulesetDigest).toBe(inForceDigest);
    const recorded = (audit as { type: string; data: { kind?: string } }[]).slice(before.audit.length);
    expect(recorded.map((e) => e.type)).toEqual(expect.arrayContaining(['drift.detected', 'egress.repaired', 'drift.repaired']));
    expect(recorded.find((e) => e.type === 'drift.detected')?.data.kind).toBe(tamper.kind);
    // The policy holds again: the blocked port is refused, the allowed one answers.
    await expect(connect(BLOCKED_PORT)).resolves.toMatchObject({ ok: false, code: 'EHOSTUNREACH' });
    await expect(connect(ALLOWED_PORT)).resolves.toMatchObject({ ok: true });
    const metrics = (await fixture.node.request({ op: 'metrics' })).text as string;
    expect(metrics).toMatch(new RegExp(`secai_agent_drift_total\\{duty="egress",kind="${tamper.kind}"\\} [1-9]`));
  }, 30_000);
});

// Last: it stops the fixture agent's loops, so that only the duty under test touches the table.
it('a drift that cannot be repaired leaves the duty Failed with RepairFailed, heals once nft works again, and leaves a declared foreign chain alone', async () => {
  // The duty in this process, in the fixture's node namespace, through an nft that can be broken.
  const dir = mkdtempSync(join(tmpdir(), 'drift-broken-nft-'));
  const flag = join(dir, 'broken');
  const wrapper = join(dir, 'nft');
  // Broken, it refuses every transaction (`nft -f`) and still lists: the kernel took no change.
  writeFileSync(wrapper, `#!/bin/sh\n[ -e ${flag} ] && [ "$1" = -f ] && { echo 'nft: simulated failure' >&2; exit 1; }\nexec nft "$@"\n`);
  chmodSync(wrapper, 0o755);
  const reader = await buildSetElementReader({ exec: runCommand, cacheDir: nativeHelperCacheDir() });
  const target = { ...fixture.nftTarget(), nftPath: wrapper, setElementReader: reader };
  const registry = new Registry();
  const enforcer = new EgressEnforcer({ nft: target, inboundTcpPorts: [], logger: pino({ level: 'silent' }), metrics: egressMetrics(registry), watch: false });
  const { ctx, drifts } = recordingDutyContext();
  const plan = NodePlan.fromPartial({ egress: EgressPlan.fromJSON(egressPlan) });
  try {
    await fixture.node.request({ op: 'stopLoops' });
    expect((await enforcer.converge(plan, ctx)).status).toBe(DutyStatus.DUTY_STATUS_OK);
    await runNft(fixture.nftTarget(), ['delete', 'table', 'inet', 'secai']);
    writeFileSync(flag, '');
    const failed = await enforcer.converge(plan, ctx);
    expect(failed).toMatchObject({ status: DutyStatus.DUTY_STATUS_FAILED, reason: 'RepairFailed', message: expect.stringContaining('simulated failure') });
    expect(drifts.map((d) => d.kind)).toEqual([DriftKind.TableMissing]);
    expect((await readEgressTable(fixture.nftTarget())).tablePresent).toBe(false);
    expect(await registry.getSingleMetricAsString('secai_agent_egress_apply_failures_total')).toMatch(/reason="repair"} 1/);
    rmSync(flag);
    const healed = await enforcer.converge(plan, ctx);
    expect(healed).toMatchObject({ status: DutyStatus.DUTY_STATUS_OK, readBackDigest: inForceDigest });
    await expect(connect(BLOCKED_PORT)).resolves.toMatchObject({ ok: false, code: 'EHOSTUNREACH' });

    // A node that runs kube-proxy (say) declares its chain; the duty leaves it, and still removes others.
    await runNft(fixture.nftTarget(), ['-f', '-'], 'add table ip kube\nadd chain ip kube out { type filter hook output priority -20; policy accept; }\n');
    await runNft(fixture.nftTarget(), ['-f', '-'], 'add table ip rogue\nadd chain ip rogue out { type filter hook output priority -30; policy accept; }\n');
    const declaring = new EgressEnforcer({ nft: target, inboundTcpPorts: [], allowForeignHooks: ['ip/kube/out'], logger: pino({ level: 'silent' }), metrics: egressMetrics(new Registry()), watch: false });
    const seen = recordingDutyContext();
    expect((await declaring.converge(plan, seen.ctx)).status).toBe(DutyStatus.DUTY_STATUS_OK);
    const chains = await runNft(fixture.nftTarget(), ['-j', 'list', 'chains']);
    expect(chains).toContain('"kube"');
    expect(chains).not.toContain('"rogue"');
  } finally {
    await enforcer.stop();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
