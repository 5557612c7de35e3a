// Benchmarks with timing bars start on a quiet machine: the CPUs' idle share is read from
// /proc/stat over short windows until it reaches a floor (or a deadline passes). A benchmark run
// starts its own control plane, whose API server keeps computing (OpenAPI, bootstrap objects) for
// a while after it answers /readyz, and a suite before it may leave processes behind; either
// would be measured as our code's time. When the machine does not go quiet, the report names the
// processes that used the CPU in the last window, so a slow figure says what ran beside it.
import { readdir, readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';

export interface QuietMachineOptions {
  /** Share of all CPUs' time that must be idle in one window (default 0.85). */
  minIdle?: number;
  windowMs?: number;
  timeoutMs?: number;
}

export interface QuietMachineReport {
  quiet: boolean;
  waitedMs: number;
  /** Idle share of the last window. */
  idle: number;
  /** Only when not quiet: the busiest processes of the last window, "comm pid share". */
  busiest: string[];
}

interface CpuTimes {
  idle: number;
  total: number;
}

async function cpuTimes(): Promise<CpuTimes> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0]!;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { idle: fields[3]! + fields[4]!, total: fields.reduce((sum, value) => sum + value, 0) };
}

/** utime + stime of every process, in clock ticks, with its name. */
async function processTimes(): Promise<Map<number, { comm: string; ticks: number }>> {
  const result = new Map<number, { comm: string; ticks: number }>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      // Fields after the name: state is the first; utime and stime are the 12th and 13th.
      const rest = stat.slice(close + 2).split(' ');
      result.set(Number(entry), { comm, ticks: Number(rest[11]) + Number(rest[12]) });
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return result;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitForQuietMachine(options: QuietMachineOptions = {}): Promise<QuietMachineReport> {
  const minIdle = options.minIdle ?? 0.85;
  const windowMs = options.windowMs ?? 2_000;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const started = performance.now();
  for (;;) {
    const before = await cpuTimes();
    const processesBefore = await processTimes();
    await sleep(windowMs);
    const after = await cpuTimes();
    const total = after.total - before.total;
    const idle = total > 0 ? (after.idle - before.idle) / total : 1;
    const waitedMs = performance.now() - started;
    if (idle >= minIdle) return { quiet: true, waitedMs, idle, busiest: [] };
    if (waitedMs >= timeoutMs) {
      const processesAfter = await processTimes();
      const used = [...processesAfter].flatMap(([pid, { comm, ticks }]) => {
        const earlier = processesBefore.get(pid);
        return earlier && earlier.comm === comm ? [{ pid, comm, ticks: ticks - earlier.ticks }] : [];
      });
      used.sort((a, b) => b.ticks - a.ticks);
      const share = (ticks: number) => `${((ticks / total) * 100).toFixed(0)}%`;
      const busiest = used.filter((p) => p.ticks > 0).slice(0, 6).map((p) => `${p.comm} ${p.pid} ${share(p.ticks)}`);
      // What no process seen at both ends of the window accounts for: processes that started or
      // ended within it (compilers, short commands), and the kernel's own work.
      const accounted = used.reduce((sum, p) => sum + p.ticks, 0);
      const busy = total - (after.idle - before.idle);
      busiest.push(`short-lived processes and the kernel ${share(Math.max(0, busy - accounted))}`);
      return { quiet: false, waitedMs, idle, busiest };
    }
  }
}

export function describeQuiet(report: QuietMachineReport): string {
  const idle = `${(report.idle * 100).toFixed(0)}% idle`;
  return report.quiet
    ? `machine quiet after ${(report.waitedMs / 1000).toFixed(1)} s (${idle})`
    : `machine NOT quiet after ${(report.waitedMs / 1000).toFixed(1)} s (${idle}; of all CPU time: ${report.busiest.join(', ')})`;
}
