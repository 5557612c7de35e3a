// The agent side of the egress tests, run inside the test's "node" namespace (with tsx): it holds
// a real NodeAgent whose one duty is a real EgressEnforcer applying real nftables in that namespace
// (its loop resyncs and its netlink watch runs, as on a node), and makes the connections and DNS
// queries the tests observe. It answers JSON lines on standard input with JSON lines
// `{"id": n, ...}` on standard output; logs go to standard error.
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { Registry } from 'prom-client';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DutyResult, EgressPlan, EgressReport, NodePlan, type Report, TorReport } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { planDigest } from '../../api/proto/protocol.js';
import { NodeAgent } from '../../agents/src/agent/node-agent.js';
import { PlanStore } from '../../agents/src/agent/plan-store.js';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { runCommand } from '../../agents/src/exec.js';
import { TorDuty } from '../../agents/src/tor/tor-duty.js';
import { lookUpUser } from '../../agents/src/tor/tor-user.js';
import { queryResolver, resolveThroughResolvers } from '../../agents/src/egress/dns-client.js';
import { EgressEnforcer } from '../../agents/src/egress/egress-enforcer.js';
import { egressMetrics } from '../../agents/src/egress/egress-metrics.js';
import { withNftSession } from '../../agents/src/egress/nft-session.js';
import { nativeHelperCacheDir, withSetElementReader } from '../../agents/src/egress/set-element-reader.js';

export type NodeRequest =
  | { op: 'apply'; plan: unknown; inboundTcpPorts?: number[]; fqdnTimeouts?: { minSeconds: number; maxSeconds: number }; allowForeignHooks?: string[]; tor?: { torPath?: string } }
  | { op: 'tor' }
  | { op: 'report' }
  | { op: 'duty' }
  | { op: 'stopLoops' }
  | { op: 'metrics' }
  | { op: 'connect'; host: string; port: number; timeoutMs: number }
  | { op: 'connectLoop'; host: string; port: number; count: number; intervalMs: number; timeoutMs: number; maxMs: number }
  | { op: 'udp'; host: string; port: number; timeoutMs: number }
  | { op: 'dnsQuery'; resolver: string; name: string; type: number; timeoutMs: number }
  | { op: 'resolve'; name: string; resolvers: string[] };

export interface ConnectOutcome {
  ok: boolean;
  /** The error code when the connection failed (ETIMEDOUT for no answer at all). */
  code?: string;
  /** The first line the server sent. */
  greeting?: string;
  ms: number;
}

const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' }, pino.destination(2));
const registry = new Registry();
const metrics = egressMetrics(registry);
let enforcer: EgressEnforcer | undefined;
let agent: NodeAgent | undefined;
let tor: TorDuty | undefined;
const stateDir = mkdtempSync(join(tmpdir(), 'egress-node-'));
let generation = 0;
const audit = new MemoryAuditSink();
const NODE_NAME = 'egress-test-node';
// As the agent does: the kernel dump of set elements when the reader builds here, and one
// libnftables session for every nft command.
const nftBuild = { exec: runCommand, cacheDir: nativeHelperCacheDir() };
const nft = await withNftSession(await withSetElementReader({ exec: runCommand, nftPath: 'nft' }, nftBuild, logger), nftBuild, logger);

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<ConnectOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let received = '';
    const done = (outcome: Omit<ConnectOutcome, 'ms'>) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...outcome, ms: Math.round(performance.now() - started) });
    };
    const timer = setTimeout(() => done({ ok: false, code: 'ETIMEDOUT' }), timeoutMs);
    socket.on('data', (chunk) => {
      received += chunk.toString();
      // The upstream greets every connection: a full round trip, not just a SYN-ACK.
      if (received.includes('\n')) done({ ok: received.startsWith('ok '), greeting: received.trim() });
    });
    socket.on('error', (error: NodeJS.ErrnoException) => done({ ok: false, code: error.code ?? error.message }));
    // Closed before a greeting (a proxy such as Tor's TransPort that could not reach the far end).
    socket.on('close', () => done({ ok: false, code: 'ECLOSED', greeting: received.trim() }));
  });
}

function udpRoundTrip(host: string, port: number, timeoutMs: number): Promise<ConnectOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const done = (outcome: Omit<ConnectOutcome, 'ms'>) => {
      clearTimeout(timer);
      socket.close();
      resolve({ ...outcome, ms: Math.round(performance.now() - started) });
    };
    const timer = setTimeout(() => done({ ok: false, code: 'ETIMEDOUT' }), timeoutMs);
    socket.on('message', (message) => done({ ok: message.toString() === 'ping' }));
    socket.on('error', (error: NodeJS.ErrnoException) => done({ ok: false, code: error.code ?? error.message }));
    socket.send('ping', port, host);
  });
}

async function handle(request: NodeRequest): Promise<unknown> {
  switch (request.op) {
    case 'apply': {
      if (!enforcer || !agent) {
        // As the agent does: with a Tor duty, Tor drops to its own user, whose uid alone reaches the Tor network.
        const torUser = request.tor ? lookUpUser('debian-tor') : undefined;
        if (request.tor) tor = new TorDuty({ dir: `${stateDir}-tor`, torPath: request.tor.torPath ?? 'tor', user: torUser, logger, registry, audit });
        enforcer = new EgressEnforcer({
          nft,
          inboundTcpPorts: request.inboundTcpPorts ?? [],
          allowForeignHooks: request.allowForeignHooks,
          torClientUid: torUser?.uid,
          logger,
          metrics,
          audit,
          fqdnTimeouts: request.fqdnTimeouts,
        });
        agent = new NodeAgent({
          nodeName: NODE_NAME,
          version: 'test',
          capabilities: ['nftables'],
          store: new PlanStore(stateDir),
          duties: tor ? [enforcer, tor] : [enforcer],
          audit,
          auditPublicKey: Buffer.alloc(32),
          logger,
          registry,
        });
        await agent.start();
      }
      const unsigned = NodePlan.fromPartial({ nodeName: NODE_NAME, generation: ++generation, egress: EgressPlan.fromJSON(request.plan) });
      await agent.receivePlan({ ...unsigned, digest: planDigest(unsigned) });
      return dutyState();
    }
    case 'report':
      if (!enforcer) throw new Error('nothing applied yet');
      return { report: EgressReport.toJSON(await enforcer.report()) };
    case 'duty':
      return dutyState();
    case 'tor': {
      if (!tor || !agent) throw new Error('no Tor duty');
      const report = { planGeneration: 0, planDigest: '', planError: '', models: [], services: [], observedUnixMillis: 0, duties: [] } as Report;
      await tor.contribute(report);
      const result = agent.dutyResults().find((r) => r.duty === 'tor')!;
      return { tor: TorReport.toJSON(report.tor!), result: DutyResult.toJSON(result), torDir: `${stateDir}-tor`, log: tor.recentLog() };
    }
    case 'stopLoops':
      // The table stays as it is; nothing re-checks it any more.
      await agent?.stop();
      return {};
    case 'metrics':
      return { text: await registry.metrics() };
    case 'connect':
      return tcpConnect(request.host, request.port, request.timeoutMs);
    case 'connectLoop': {
      // Bounded in count and in time, whatever happens.
      const started = performance.now();
      const startedAt = Date.now();
      const failures: (ConnectOutcome & { attempt: number })[] = [];
      let attempts = 0;
      while (attempts < request.count && performance.now() - started < request.maxMs) {
        const outcome = await tcpConnect(request.host, request.port, request.timeoutMs);
        attempts++;
        if (!outcome.ok) failures.push({ ...outcome, attempt: attempts });
        if (request.intervalMs > 0) await new Promise((resolve) => setTimeout(resolve, request.intervalMs));
      }
      return { attempts, failures, startedAt, endedAt: Date.now() };
    }
    case 'udp':
      return udpRoundTrip(request.host, request.port, request.timeoutMs);
    case 'dnsQuery':
      try {
        const result = await queryResolver(request.resolver, request.name, request.type, { timeoutMs: request.timeoutMs });
        return { ok: true, rcode: result.rcode, addresses: result.addresses };
      } catch (error) {
        return { ok: false, failure: (error as Error).message };
      }
    case 'resolve':
      return resolveThroughResolvers(request.name, request.resolvers, { timeoutMs: 1000 });
  }
}

/** The egress report, the duty's result and the audit trail so far. */
async function dutyState(): Promise<unknown> {
  if (!enforcer || !agent) throw new Error('nothing applied yet');
  const result = agent.dutyResults().find((r) => r.duty === 'egress')!;
  return { report: EgressReport.toJSON(await enforcer.report()), result: DutyResult.toJSON(result), audit: audit.events.map((e) => ({ type: e.type, subject: e.subject ?? '', data: e.data })) };
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, ...request } = JSON.parse(line) as NodeRequest & { id: number };
  handle(request as NodeRequest).then(
    (result) => process.stdout.write(`${JSON.stringify({ id, ...(result as object) })}\n`),
    (error: Error) => process.stdout.write(`${JSON.stringify({ id, error: error.message })}\n`),
  );
});
process.stdout.write('node side ready\n');
