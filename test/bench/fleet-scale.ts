// The fleet bar of DESIGN §8: 1,000 simulated agents on one operator; a policy change is enforced on
// all of them within 2 s of the `kubectl apply`; operator memory under 300 MB.
//
// A dedicated control plane holds N Nodes labelled secai.io/node=true, an agent Pod on each and a
// Pod-bound token per Pod. The operator runs as a real child process with the agent channel on a
// UNIX socket; one more process plays every agent (SimulatedFleet: the real protocol and identity,
// in-memory egress). Each round changes the EgressPolicy (canary 0, maxUnavailable 100%: rollout
// waves are a feature, not the subject of this bar) by server-side apply, and measures from the
// API server's response to the moment each simulated agent enforced the plan carrying the change.
// Operator memory is the peak resident set (VmHWM) from /proc.
//
//   npx tsx test/bench/fleet-scale.ts [--nodes 1000] [--rounds 3] [--node-flag=--x …] [--keep-logs dir]
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { buildOperator } from '../../operator/build.js';
import { TOKEN_AUDIENCE } from '../../api/proto/protocol.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { FleetEnv, OPERATOR_NAMESPACE } from '../operator/support/fleet-env.js';
import { OperatorProcess } from '../operator/support/operator-process.js';
import { eventually } from '../operator/support/wait.js';
import type { FleetSimConfig, FleetSimRequest, FleetSimResponse } from './fleet-sim-child.js';

export interface FleetScaleOptions {
  nodes: number;
  rounds: number;
  /** Flags for the operator's node process instead of the shipped OPERATOR_NODE_FLAGS (to try others). */
  operatorNodeFlags?: readonly string[];
  /** A directory to copy the operator's and the simulated fleet's logs into before cleaning up. */
  keepLogs?: string;
  log?: (line: string) => void;
}

export interface FleetScaleRound {
  /** From the apply's response to the last agent enforcing the change (ms). */
  enforcedOnAllMs: number;
  /** Per agent, from the apply's response to its enforcement (ms). */
  p50Ms: number;
  p99Ms: number;
  /** The apply request itself (ms). */
  applyRequestMs: number;
  /** When the apply's response came (ms since the epoch), to line the round up with the logs. */
  appliedAt: number;
  /** Agents that did not enforce the change within the round's timeout. */
  missing: number;
}

export interface FleetScaleFigures {
  nodes: number;
  rounds: FleetScaleRound[];
  /** Operator resident set: the peak over its life (VmHWM) and at the end (VmRSS), bytes. */
  operatorPeakRssBytes: number;
  operatorRssBytes: number;
  setup: {
    /** Control plane, Nodes, Pods and tokens. */
    objectsMs: number;
    /** Operator start to every node enrolled, every agent connected and enforcing the first policy. */
    convergeMs: number;
  };
  loadBefore: number;
  loadAfter: number;
}

const SERVER_NAME = `secai-operator.${OPERATOR_NAMESPACE}.svc`;
const POLICY = 'fleet-bench';
const AGENT_SERVICE_ACCOUNT = 'secai-agent';
/** Requests in flight while creating the fleet's objects. */
const SETUP_CONCURRENCY = 16;
/** TEST-NET-2 addresses, one per version of the policy; nothing ever dials them. */
const marker = (version: number) => `198.51.100.${version}`;

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

async function inParallel<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** VmHWM and VmRSS of a process, in bytes. */
function residentSet(pid: number): { peak: number; current: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { peak: kib('VmHWM'), current: kib('VmRSS') };
}

/** Where a process's memory is: resident set, the V8 heap, and the C heap (brk) — for the log. */
async function memoryBreakdown(operator: OperatorProcess): Promise<string> {
  const smaps = readFileSync(`/proc/${operator.pid}/smaps`, 'utf8');
  const brk = smaps.indexOf('[heap]');
  const brkRss = brk < 0 ? 0 : Number(/Rss:\s+(\d+)/.exec(smaps.slice(brk))?.[1] ?? 0) * 1024;
  const rss = `rss ${mb(residentSet(operator.pid!).current)}, C heap ${mb(brkRss)}`;
  // For the log only: a busy operator may answer late (retried, and the wait is shown).
  const asked = Date.now();
  let text: string;
  try {
    text = await eventually(() => operator.metrics(), 30_000, 'the operator metrics');
  } catch (err) {
    return `${rss}; metrics unavailable: ${String(err)}`;
  }
  const v8 = seriesValue(text, 'nodejs_heap_size_total_bytes');
  const used = seriesValue(text, 'nodejs_heap_size_used_bytes');
  const external = seriesValue(text, 'nodejs_external_memory_bytes');
  return `${rss}, V8 heap ${mb(v8)} (used ${mb(used)}), external ${mb(external)}; metrics answered in ${Date.now() - asked} ms`;
}

/** The simulated fleet's process, spoken to over IPC. */
class FleetSimProcess {
  private nextId = 1;
  private readonly waiting = new Map<number, (r: FleetSimResponse) => void>();
  readonly ready: Promise<void>;
  readonly exited: Promise<void>;

  constructor(private readonly child: ChildProcess) {
    let markReady!: () => void;
    this.ready = new Promise((resolve) => (markReady = resolve));
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.on('message', (raw) => {
      const message = raw as FleetSimResponse | { type: 'ready' };
      if (message.type === 'ready') return markReady();
      this.waiting.get(message.id)?.(message);
      this.waiting.delete(message.id);
    });
  }

  static start(configFile: string): FleetSimProcess {
    const child = spawn(
      'setpriv',
      ['--pdeathsig', 'KILL', '--', process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test/bench/fleet-sim-child.ts'), configFile],
      { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    return new FleetSimProcess(child);
  }

  private ask(request: FleetSimRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never): Promise<FleetSimResponse> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, resolve);
      this.child.send({ ...request, id }, (err) => err && reject(err));
    });
  }

  async connected(): Promise<number> {
    const answer = await this.ask({ type: 'connected' });
    return answer.type === 'connected' ? answer.connected : NaN;
  }

  /** Node → when its agent enforced the plan allowing `marker`, and the agents that had not by the timeout. */
  async enforced(marker: string, timeoutMs: number): Promise<{ enforcedAt: Record<string, number>; missing: string[] }> {
    const answer = await this.ask({ type: 'enforced', marker, timeoutMs });
    if (answer.type !== 'enforced') throw new Error(`unexpected answer ${answer.type}`);
    return answer;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await Promise.race([this.ask({ type: 'stop' }).catch(() => undefined), this.exited]);
    this.child.kill('SIGTERM');
    await this.exited;
    clearTimeout(timer);
  }
}

function policyBody(version: number) {
  return {
    kind: 'EgressPolicy',
    metadata: { name: POLICY },
    spec: {
      allow: [{ ip: marker(version), ports: [{ port: 443 }] }, { cidr: '203.0.113.0/24', ports: [{ port: 8443 }] }],
      rollout: { canary: 0, maxUnavailable: '100%', progressDeadlineSeconds: 600 },
    },
  };
}

function seriesValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

async function gauge(operator: OperatorProcess, series: string): Promise<number> {
  return seriesValue(await operator.metrics(), series);
}

/** The sum of every series of `name` (any labels). */
async function total(operator: OperatorProcess, name: string): Promise<number> {
  const text = await operator.metrics();
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
}

/**
 * Every node Compliant in the operator's own view and its work queues idle for a second: the
 * status and taint writes of a round are over, so that the next change meets a quiet fleet.
 */
async function waitForSettled(operator: OperatorProcess, nodes: number, timeoutMs: number): Promise<void> {
  await eventually(async () => (await gauge(operator, 'secai_nodes{condition="Compliant",status="True"}')) === nodes, timeoutMs, `${nodes} compliant nodes`);
  let quietSince = 0;
  await eventually(async () => {
    const busy = (await total(operator, 'workqueue_depth')) + (await total(operator, 'controller_runtime_active_workers'));
    if (busy > 0) quietSince = 0;
    else quietSince ||= Date.now();
    return quietSince > 0 && Date.now() - quietSince >= 1000;
  }, timeoutMs, 'idle work queues');
}

export async function benchmarkFleetScale(opts: FleetScaleOptions): Promise<FleetScaleFigures> {
  const log = opts.log ?? (() => {});
  const loadBefore = loadavg()[0]!;
  const setupStart = Date.now();
  const env = await FleetEnv.start('fleet-bench');
  let operator: OperatorProcess | undefined;
  let sim: FleetSimProcess | undefined;
  // The agents' plan stores, on tmpfs: the simulated nodes' fsyncs are not the subject.
  const stateDir = join('/dev/shm', `secai-fleet-bench-${process.pid}`);
  try {
    const admin = env.admin;
    const names = Array.from({ length: opts.nodes }, (_, i) => `sim-${String(i).padStart(4, '0')}`);
    const tokenDir = join(env.dir, 'tokens');
    mkdirSync(tokenDir, { recursive: true });
    await admin.request({ method: 'POST', path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/serviceaccounts`, body: { metadata: { name: AGENT_SERVICE_ACCOUNT } } });
    await inParallel(names, SETUP_CONCURRENCY, async (node) => {
      await env.createNode(node);
      const pod = await admin.request<{ metadata: { uid: string } }>({
        method: 'POST',
        path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/pods`,
        body: {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: `agent-${node}` },
          spec: { nodeName: node, serviceAccountName: AGENT_SERVICE_ACCOUNT, containers: [{ name: 'agent', image: 'secai/agent:simulated' }] },
        },
      });
      const token = await admin.request<{ status: { token: string } }>({
        method: 'POST',
        path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/serviceaccounts/${AGENT_SERVICE_ACCOUNT}/token`,
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { audiences: [TOKEN_AUDIENCE], expirationSeconds: 7200, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: `agent-${node}`, uid: pod.metadata.uid } },
        },
      });
      writeFileSync(join(tokenDir, node), token.status.token, { mode: 0o600 });
    });
    await env.apply('egresspolicies', policyBody(1));
    const objectsMs = Date.now() - setupStart;
    log(`fleet-bench: ${opts.nodes} Nodes, agent Pods and Pod-bound tokens in ${objectsMs} ms`);

    const convergeStart = Date.now();
    operator = await OperatorProcess.start({ kubeconfig: env.kubeconfig, namespace: OPERATOR_NAMESPACE, identity: 'bench', dir: env.dir, ...(opts.operatorNodeFlags ? { nodeFlags: opts.operatorNodeFlags } : {}) });
    const caPem = await eventually(async () => {
      const cm = await admin.raw<{ data?: Record<string, string> }>({ method: 'GET', path: `/api/v1/namespaces/${OPERATOR_NAMESPACE}/configmaps/secai-agent-ca` });
      return cm.status === 200 ? cm.body.data?.['ca.crt'] : undefined;
    }, 120_000, 'the agent CA bundle');
    const caFile = join(env.dir, 'agent-ca.crt');
    writeFileSync(caFile, caPem);
    // The channel refuses nodes that are not enrolled yet; agents would only back off and retry.
    await eventually(async () => (await env.list('secainodes')).length === opts.nodes, 300_000, 'every node enrolled');
    log(`fleet-bench: ${opts.nodes} nodes enrolled after ${Date.now() - convergeStart} ms; operator ${await memoryBreakdown(operator)}`);

    const config: FleetSimConfig = {
      nodes: names.map((name) => ({ name, tokenFile: join(tokenDir, name) })),
      operatorAddress: `unix://${join(env.dir, `channel-${operator.identity}.sock`)}`,
      caFile,
      serverName: SERVER_NAME,
      stateDir,
      logFile: join(env.dir, 'fleet-sim.log'),
    };
    const configFile = join(env.dir, 'fleet-sim.json');
    writeFileSync(configFile, JSON.stringify(config));
    sim = FleetSimProcess.start(configFile);
    await sim.ready;
    const simulated = sim;
    await eventually(async () => (await simulated.connected()) === opts.nodes, 300_000, 'every agent connected');
    const first = await sim.enforced(marker(1), 300_000);
    if (first.missing.length) throw new Error(`${first.missing.length} agents never enforced the first policy`);
    await waitForSettled(operator, opts.nodes, 300_000);
    const convergeMs = Date.now() - convergeStart;
    log(`fleet-bench: operator up, ${opts.nodes} agents connected, enforcing and compliant after ${convergeMs} ms; operator ${await memoryBreakdown(operator)}`);

    const rounds: FleetScaleRound[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      const version = r + 2;
      const sent = Date.now();
      await env.apply('egresspolicies', policyBody(version));
      const applied = Date.now();
      const outcome = await sim.enforced(marker(version), 60_000);
      const latencies = Object.values(outcome.enforcedAt)
        .map((at) => at - applied)
        .sort((a, b) => a - b);
      const round: FleetScaleRound = {
        enforcedOnAllMs: outcome.missing.length ? Infinity : (latencies.at(-1) ?? NaN),
        p50Ms: percentile(latencies, 50),
        p99Ms: percentile(latencies, 99),
        applyRequestMs: applied - sent,
        appliedAt: applied,
        missing: outcome.missing.length,
      };
      rounds.push(round);
      log(`fleet-bench: round ${r + 1}: all ${opts.nodes} enforcing after ${round.enforcedOnAllMs} ms (p50 ${round.p50Ms}, p99 ${round.p99Ms}; apply ${round.applyRequestMs} ms, answered at ${applied})`);
      await waitForSettled(operator, opts.nodes, 300_000);
      log(`fleet-bench: round ${r + 1} settled; operator ${await memoryBreakdown(operator)}`);
    }
    const rss = residentSet(operator.pid!);
    return {
      nodes: opts.nodes,
      rounds,
      operatorPeakRssBytes: rss.peak,
      operatorRssBytes: rss.current,
      setup: { objectsMs, convergeMs },
      loadBefore,
      loadAfter: loadavg()[0]!,
    };
  } finally {
    await sim?.stop();
    await operator?.stop();
    if (opts.keepLogs) {
      mkdirSync(opts.keepLogs, { recursive: true });
      for (const file of [operator?.logFile, join(env.dir, 'fleet-sim.log')]) if (file && existsSync(file)) copyFileSync(file, join(opts.keepLogs, basename(file)));
    }
    await env.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

export function describeFleetScale(f: FleetScaleFigures): string {
  return [
    `${f.nodes} simulated agents, one operator:`,
    ...f.rounds.map(
      (r, i) =>
        `  round ${i + 1}: enforced on all after ${r.enforcedOnAllMs} ms of the apply's response (per agent p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms; apply request ${r.applyRequestMs} ms${r.missing ? `; ${r.missing} missing` : ''})`,
    ),
    `  operator resident set: peak ${mb(f.operatorPeakRssBytes)}, at the end ${mb(f.operatorRssBytes)}`,
    `  setup: objects ${(f.setup.objectsMs / 1000).toFixed(1)} s, operator start to converged fleet ${(f.setup.convergeMs / 1000).toFixed(1)} s`,
    `  load average ${f.loadBefore.toFixed(2)} -> ${f.loadAfter.toFixed(2)}`,
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await buildOperator();
  const { values } = parseArgs({
    options: { nodes: { type: 'string' }, rounds: { type: 'string' }, 'node-flag': { type: 'string', multiple: true }, 'keep-logs': { type: 'string' } },
  });
  const figures = await benchmarkFleetScale({
    nodes: Number(values.nodes ?? 1000),
    rounds: Number(values.rounds ?? 3),
    ...(values['node-flag'] ? { operatorNodeFlags: values['node-flag'] } : {}),
    ...(values['keep-logs'] ? { keepLogs: values['keep-logs'] } : {}),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  console.log(describeFleetScale(figures));
}
