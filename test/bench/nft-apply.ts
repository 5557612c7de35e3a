// Benchmark: applying and verifying an N-entry egress allowlist (DESIGN §8: 10,000 entries under
// 150 ms, 100,000 under 1 s), against a bare `nft -f` of the very same ruleset text, interleaved
// in one run (ABAB, alternating which goes first) inside a test-created namespace; medians are
// compared. "Apply and verify" is what the agent does: the replace transaction through the agent's
// libnftables session (nft-session.ts; what `nft -f` runs, without starting a process), then
// the read-back (a terse `nft -j list ruleset inet` through the same session, beside the kernel dump of the set elements by
// nft-set-elements), parse, normalise, compare element by element and rule by rule with the
// intent, digest.
// Each entry is one address with one TCP port (the `ipv4_addr . inet_service` hash set): distinct
// addresses over 1,000 distinct ports, as a list of services looks.
// The measuring process runs inside the namespace and calls nft directly, as the agent does on a
// node (no `ip netns exec` per call). The load average is taken before and after, as the machine
// is shared.
// Run: npx tsx test/bench/nft-apply.ts [entries...]
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { EgressMode, type EgressPlan, Protocol, Via } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { runCommand } from '../../agents/src/exec.js';
import { applyEgressTable } from '../../agents/src/egress/apply-egress.js';
import { buildNftSession, NftSession } from '../../agents/src/egress/nft-session.js';
import { type NftTarget, runNft } from '../../agents/src/egress/nft-target.js';
import { renderEgressRuleset, replaceTableTransaction } from '../../agents/src/egress/render-egress-ruleset.js';
import { buildSetElementReader, nativeHelperCacheDir } from '../../agents/src/egress/set-element-reader.js';
import { NetnsHarness } from '../support/netns.js';

export interface NftApplyFigures {
  entries: number;
  rounds: number;
  renderMs: number;
  /** Medians over the rounds. */
  bareNftMs: number;
  applyVerifyMs: number;
  applyMs: number;
  verifyMs: number;
  /** applyVerifyMs / bareNftMs. */
  ratio: number;
  /** The 1-minute load average when the size started and when it ended. */
  loadBefore: number;
  loadAfter: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export function allowlistPlan(entries: number): EgressPlan {
  return {
    mode: EgressMode.EGRESS_MODE_ENFORCE,
    allow: Array.from({ length: entries }, (_, i) => ({
      // Distinct addresses in 10.0.0.0/8 with a port each, as a real list of services looks.
      destination: { $case: 'ip' as const, value: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` },
      ports: [{ port: 1024 + (i % 1000), endPort: 0 }],
      protocol: Protocol.PROTOCOL_TCP,
      via: Via.VIA_DIRECT,
      policy: 'bench',
    })),
    dns: { resolvers: ['10.255.255.53'], queriesPerMinute: 600 },
    torTransPort: 0, torDnsPort: 0,
    policies: ['bench'],
  };
}

export async function measureNftApply(entries: number, rounds: number, target: NftTarget): Promise<NftApplyFigures> {
  const loadBefore = loadavg()[0]!;
  const renderStarted = performance.now();
  const rendered = renderEgressRuleset(allowlistPlan(entries), new Map(), { inboundTcpPorts: [8080, 9100] });
  const renderMs = performance.now() - renderStarted;
  const transaction = replaceTableTransaction(rendered.definition);
  const bare: number[] = [];
  const full: number[] = [];
  const apply: number[] = [];
  const verify: number[] = [];
  // Bare: the `nft` program itself, started for the command as a user would.
  const bareTarget: NftTarget = { exec: target.exec, nftPath: target.nftPath };
  const runBare = async () => {
    const started = performance.now();
    await runNft(bareTarget, ['-f', '-'], transaction);
    bare.push(performance.now() - started);
  };
  const runFull = async () => {
    const started = performance.now();
    const applied = await applyEgressTable(target, rendered);
    full.push(performance.now() - started);
    apply.push(applied.applySeconds * 1000);
    verify.push(applied.verifySeconds * 1000);
    if (applied.mismatches.length > 0) throw new Error(`read-back differs: ${applied.mismatches.join('; ')}`);
  };
  // One unmeasured round of each warms page cache and allocator.
  await runBare();
  await runFull();
  bare.length = full.length = apply.length = verify.length = 0;
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      await runBare();
      await runFull();
    } else {
      await runFull();
      await runBare();
    }
  }
  const bareNftMs = median(bare);
  const applyVerifyMs = median(full);
  return {
    entries,
    rounds,
    renderMs,
    bareNftMs,
    applyVerifyMs,
    applyMs: median(apply),
    verifyMs: median(verify),
    ratio: applyVerifyMs / bareNftMs,
    loadBefore,
    loadAfter: loadavg()[0]!,
  };
}

const INSIDE = '--inside-namespace';

/** Runs the sizes in a process inside one test-created namespace, which is removed afterwards. */
export async function benchmarkNftApply(sizes: { entries: number; rounds: number }[]): Promise<NftApplyFigures[]> {
  const harness = await NetnsHarness.create({ prefix: 'sfegb' });
  try {
    const namespace = await harness.addNamespace('bench');
    const argument = JSON.stringify(sizes);
    const child = harness.spawn(namespace, process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, INSIDE, argument], {
      cwd: new URL('../..', import.meta.url).pathname,
    });
    const [, figures] = (await child.waitForOutput(/^figures (.*)$/m, 600_000)) as RegExpMatchArray & [string, string];
    return JSON.parse(figures) as NftApplyFigures[];
  } finally {
    await harness.destroy();
  }
}

function describe(f: NftApplyFigures): string {
  return (
    `${f.entries} entries: apply+verify ${f.applyVerifyMs.toFixed(1)} ms (apply ${f.applyMs.toFixed(1)}, verify ${f.verifyMs.toFixed(1)}), ` +
    `bare nft -f ${f.bareNftMs.toFixed(1)} ms, ratio ${f.ratio.toFixed(2)}, render ${f.renderMs.toFixed(1)} ms (median of ${f.rounds}; ` +
    `load average ${f.loadBefore.toFixed(2)} -> ${f.loadAfter.toFixed(2)})`
  );
}

export function describeNftApply(figures: NftApplyFigures[]): string {
  return figures.map(describe).join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (process.argv[2] === INSIDE) {
    const sizes = JSON.parse(process.argv[3]!) as { entries: number; rounds: number }[];
    const build = { exec: runCommand, cacheDir: nativeHelperCacheDir() };
    const setElementReader = await buildSetElementReader(build);
    // The agent's target: the reader and one libnftables session (nft-session.ts).
    const target: NftTarget = { exec: runCommand, nftPath: 'nft', setElementReader, session: new NftSession({ binary: await buildNftSession(build) }) };
    const figures: NftApplyFigures[] = [];
    for (const { entries, rounds } of sizes) figures.push(await measureNftApply(entries, rounds, target));
    target.session!.close();
    process.stdout.write(`figures ${JSON.stringify(figures)}\n`);
  } else {
    const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
    const figures = await benchmarkNftApply((sizes.length > 0 ? sizes : [10_000, 100_000]).map((entries) => ({ entries, rounds: entries > 50_000 ? 5 : 9 })));
    console.log(describeNftApply(figures));
  }
}
