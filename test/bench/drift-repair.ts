// Benchmark: how fast the agent heals its egress table, and what keeping watch costs (issue 12).
// - Repair time per tamper class (test/egress/tamper-classes.ts), 20 tampers each: from just before
//   the tamper command starts to the agent's drift record saying the repaired table was read back
//   in force. A real NodeAgent with its egress duty loop and netlink watch runs in this process
//   against a test-created namespace; each tamper is a real nft command into it.
// - Resync cost on a 10,000-entry table: CPU (this process and its children: nft, the set element
//   reader) per run when nothing changed (the generation poll) and per full read-back.
// - Re-hash throughput of the trusted store: TrustedStore.reverify over a 1 GiB model beside
//   `openssl dgst -sha256` of the same file, interleaved.
// Run: npx tsx test/bench/drift-repair.ts
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { Registry } from 'prom-client';
import { DutyStatus, EgressMode, type EgressPlan, NodePlan, Protocol, Via } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { planDigest } from '../../api/proto/protocol.js';
import { NodeAgent } from '../../agents/src/agent/node-agent.js';
import { PlanStore } from '../../agents/src/agent/plan-store.js';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { EgressEnforcer } from '../../agents/src/egress/egress-enforcer.js';
import { egressMetrics } from '../../agents/src/egress/egress-metrics.js';
import type { NftTarget } from '../../agents/src/egress/nft-target.js';
import { buildSetElementReader, nativeHelperCacheDir } from '../../agents/src/egress/set-element-reader.js';
import { runCommand } from '../../agents/src/exec.js';
import { fileIdentity, TrustedStore } from '../../agents/src/quarantine/trusted-store.js';
import { recordingDutyContext } from '../support/duty-context.js';
import { NetnsHarness } from '../support/netns.js';
import { tamperClasses } from '../egress/tamper-classes.js';
import { allowlistPlan } from './nft-apply.js';
import { gigabyteModelTensors, writeLargeGguf } from './quarantine-fixture.js';

export interface RepairFigures {
  name: string;
  kind: string;
  runs: number;
  medianMs: number;
  worstMs: number;
}

export interface ResyncFigures {
  entries: number;
  /** CPU (ms, this process and its children) per run when the generation did not move. */
  pollCpuMs: number;
  pollWallMs: number;
  /** CPU per full read-back and comparison. */
  fullCpuMs: number;
  fullWallMs: number;
}

export interface RehashFigures {
  bytes: number;
  rehashMBps: number;
  opensslMBps: number;
  ratio: number;
}

const UPSTREAM = '10.201.0.2';
const ALLOWED_PORT = 8201;
const BLOCKED_PORT = 8202;
const NODE_NAME = 'drift-bench';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** CPU time of this process and of the children it waited for (ms), from /proc/self/stat. */
function cpuWithChildrenMs(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // utime, stime, cutime, cstime are fields 14-17 of stat(5), in clock ticks (100 per second here).
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  return ticks * 10;
}

function benchPlan(): EgressPlan {
  return {
    mode: EgressMode.EGRESS_MODE_ENFORCE,
    allow: [{ destination: { $case: 'ip', value: UPSTREAM }, ports: [{ port: ALLOWED_PORT, endPort: 0 }], protocol: Protocol.PROTOCOL_TCP, via: Via.VIA_DIRECT, policy: 'bench' }],
    dns: { resolvers: [], queriesPerMinute: 0 },
    torTransPort: 0, torDnsPort: 0,
    policies: ['bench'],
  };
}

async function withNamespace<T>(work: (target: NftTarget, harness: NetnsHarness, ns: string) => Promise<T>): Promise<T> {
  const harness = await NetnsHarness.create({ prefix: 'sfdb' });
  try {
    const ns = await harness.addNamespace('node');
    const reader = await buildSetElementReader({ exec: runCommand, cacheDir: nativeHelperCacheDir() });
    return await work({ exec: runCommand, nftPath: 'nft', netns: ns, setElementReader: reader }, harness, ns);
  } finally {
    await harness.destroy();
  }
}

export async function measureRepairs(runsPerClass = 20): Promise<RepairFigures[]> {
  return withNamespace(async (target) => {
    const stateDir = mkdtempSync(join(tmpdir(), 'drift-bench-'));
    const logger = pino({ level: 'silent' });
    const registry = new Registry();
    const enforcer = new EgressEnforcer({ nft: target, inboundTcpPorts: [], logger, metrics: egressMetrics(registry) });
    const agent = new NodeAgent({ nodeName: NODE_NAME, version: 'bench', capabilities: [], store: new PlanStore(stateDir), duties: [enforcer], audit: new MemoryAuditSink(), auditPublicKey: Buffer.alloc(32), logger, registry });
    try {
      await agent.start();
      const unsigned = NodePlan.fromPartial({ nodeName: NODE_NAME, generation: 1, egress: benchPlan() });
      await agent.receivePlan({ ...unsigned, digest: planDigest(unsigned) });
      // Started by the agent; tampers begin once it has subscribed.
      await enforcer.watch({ wake: () => void agent.wake('egress') });
      const figures: RepairFigures[] = [];
      for (const tamper of tamperClasses({ upstream: UPSTREAM, allowedPort: ALLOWED_PORT, blockedPort: BLOCKED_PORT })) {
        const times: number[] = [];
        for (let run = 0; run < runsPerClass; run++) {
          const since = Date.now();
          await tamper.tamper(target);
          const deadline = since + 10_000;
          for (;;) {
            const result = agent.dutyResults()[0]!;
            const drift = result.lastDrift;
            if (drift && drift.detectedUnixMillis >= since && drift.repairedUnixMillis > 0 && result.status === DutyStatus.DUTY_STATUS_OK) {
              if (drift.kind !== tamper.kind) throw new Error(`${tamper.name}: found ${drift.kind}, expected ${tamper.kind}`);
              times.push(drift.repairedUnixMillis - since);
              break;
            }
            if (Date.now() > deadline) throw new Error(`${tamper.name}: not repaired within 10 s`);
            await new Promise((r) => setTimeout(r, 2));
          }
          // Let the watch's echo of the repair itself settle before the next tamper.
          await new Promise((r) => setTimeout(r, 30));
        }
        figures.push({ name: tamper.name, kind: tamper.kind, runs: times.length, medianMs: median(times), worstMs: Math.max(...times) });
      }
      return figures;
    } finally {
      await agent.stop();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
}

export async function measureResync(entries = 10_000, runs = 30): Promise<ResyncFigures> {
  return withNamespace(async (target) => {
    const logger = pino({ level: 'silent' });
    const plan = NodePlan.fromPartial({ egress: allowlistPlan(entries) });
    const measure = async (fullCheckMs: number) => {
      const enforcer = new EgressEnforcer({ nft: target, inboundTcpPorts: [], logger, metrics: egressMetrics(new Registry()), watch: false, fullCheckMs });
      const { ctx, drifts } = recordingDutyContext();
      await enforcer.converge(plan, ctx);
      await enforcer.converge(plan, ctx);
      const cpu = cpuWithChildrenMs();
      const wall = performance.now();
      for (let i = 0; i < runs; i++) {
        const outcome = await enforcer.converge(plan, ctx);
        if (outcome.status !== DutyStatus.DUTY_STATUS_OK) throw new Error(`resync failed: ${outcome.message}`);
      }
      if (drifts.length > 0) throw new Error(`drift during the resync benchmark: ${drifts[0]!.detail}`);
      return { cpuMs: (cpuWithChildrenMs() - cpu) / runs, wallMs: (performance.now() - wall) / runs };
    };
    const poll = await measure(Number.MAX_SAFE_INTEGER);
    const full = await measure(0);
    return { entries, pollCpuMs: poll.cpuMs, pollWallMs: poll.wallMs, fullCpuMs: full.cpuMs, fullWallMs: full.wallMs };
  });
}

export async function measureRehash(rounds = 3): Promise<RehashFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'rehash-bench-'));
  try {
    const store = new TrustedStore(join(dir, 'store'));
    await store.init();
    const staged = join(store.stagingDir, 'model.gguf');
    await writeLargeGguf(staged, gigabyteModelTensors());
    const sha256 = execFileSync('openssl', ['dgst', '-sha256', '-r', staged], { encoding: 'utf8' }).split(' ')[0]!;
    const bytes = (await fileIdentity(staged)).size;
    const manifest = { version: 1, name: 'bench', source: 'bench', sha256, sizeBytes: bytes, tensorMerkleRoot: '', tensorCount: 0, policyDigest: '', promotedAt: new Date().toISOString(), verdict: { trusted: true } as never };
    const promoted = await store.promote(staged, await fileIdentity(staged), manifest);
    if (!promoted.ok) throw new Error(promoted.message);
    const path = store.artifactPath(sha256);
    const rehash: number[] = [];
    const openssl: number[] = [];
    execFileSync('openssl', ['dgst', '-sha256', path]);
    for (let round = 0; round < rounds; round++) {
      let started = performance.now();
      execFileSync('openssl', ['dgst', '-sha256', path]);
      openssl.push(performance.now() - started);
      started = performance.now();
      const result = await store.reverify(sha256);
      rehash.push(performance.now() - started);
      if (!result.matches) throw new Error('the re-hash did not match');
    }
    const mbps = (ms: number) => bytes / 1e6 / (ms / 1000);
    return { bytes, rehashMBps: mbps(median(rehash)), opensslMBps: mbps(median(openssl)), ratio: median(openssl) / median(rehash) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function describeDrift(repairs: RepairFigures[], resync: ResyncFigures, rehash: RehashFigures): string {
  const lines = repairs.map((r) => `  ${r.name} (${r.kind}): median ${r.medianMs} ms, worst ${r.worstMs} ms over ${r.runs}`);
  lines.push(
    `  resync at ${resync.entries} entries: ${resync.pollCpuMs.toFixed(1)} ms CPU (${resync.pollWallMs.toFixed(1)} ms wall) per generation poll, ` +
      `${resync.fullCpuMs.toFixed(1)} ms CPU (${resync.fullWallMs.toFixed(1)} ms wall) per full read-back`,
  );
  lines.push(`  store re-hash: ${rehash.rehashMBps.toFixed(0)} MB/s, openssl ${rehash.opensslMBps.toFixed(0)} MB/s (${rehash.ratio.toFixed(2)}x) over ${(rehash.bytes / 2 ** 30).toFixed(2)} GiB`);
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const repairs = await measureRepairs();
  const resync = await measureResync();
  const rehash = await measureRehash();
  process.stdout.write(`${describeDrift(repairs, resync, rehash)}\n`);
}
