// The agent side of the egress tests, run inside the test's "node" namespace (with tsx): it holds
// a real EgressEnforcer applying real nftables in that namespace, and makes the connections and
// DNS queries the tests observe. It answers JSON lines on standard input with JSON lines
// `{"id": n, ...}` on standard output; logs go to standard error.
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { Registry } from 'prom-client';
import { EgressPlan, EgressReport } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { runCommand } from '../../agents/src/exec.js';
import { queryResolver, resolveThroughResolvers } from '../../agents/src/egress/dns-client.js';
import { EgressEnforcer } from '../../agents/src/egress/egress-enforcer.js';
import { egressMetrics } from '../../agents/src/egress/egress-metrics.js';
import { nativeHelperCacheDir, withSetElementReader } from '../../agents/src/egress/set-element-reader.js';

export type NodeRequest =
  | { op: 'apply'; plan: unknown; inboundTcpPorts?: number[]; fqdnTimeouts?: { minSeconds: number; maxSeconds: number } }
  | { op: 'report' }
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
// As the agent does: the kernel dump of set elements when the reader builds here.
const nft = await withSetElementReader({ exec: runCommand, nftPath: 'nft' }, { exec: runCommand, cacheDir: nativeHelperCacheDir() }, logger);

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
      enforcer ??= new EgressEnforcer({
        nft,
        inboundTcpPorts: request.inboundTcpPorts ?? [],
        logger,
        metrics,
        fqdnTimeouts: request.fqdnTimeouts,
      });
      return { report: EgressReport.toJSON(await enforcer.applyEgress(EgressPlan.fromJSON(request.plan))) };
    }
    case 'report':
      if (!enforcer) throw new Error('nothing applied yet');
      return { report: EgressReport.toJSON(await enforcer.report()) };
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

createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, ...request } = JSON.parse(line) as NodeRequest & { id: number };
  handle(request as NodeRequest).then(
    (result) => process.stdout.write(`${JSON.stringify({ id, ...(result as object) })}\n`),
    (error: Error) => process.stdout.write(`${JSON.stringify({ id, error: error.message })}\n`),
  );
});
process.stdout.write('node side ready\n');
