// The operator's end of the agent channel: one TLS gRPC bidirectional stream per agent. The agent
// proves its node with a Pod-bound ServiceAccount token before it sees a plan; a misbehaving agent
// (bad identity, wrong version, malformed or oversized messages, silence) is refused, counted and
// audited, and never trusted.
import { randomUUID } from 'node:crypto';
import { lstatSync, unlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import {
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type ServerDuplexStream,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import {
  AgentChannelServiceService,
  type Command,
  type CommandResult,
  ConnectRequest,
  type ConnectResponse,
  type Hello,
  type NodePlan,
  RefusalReason,
  refusalReasonToJSON,
  type Report,
} from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { AUTHORIZATION_METADATA, MAX_MESSAGE_BYTES, PROTOCOL_VERSION } from '../../../api/proto/protocol.js';
import type { KubeClient } from '../runtime/kube-client.js';
import { verifyAgentToken, type AgentIdentityPolicy } from './identity.js';

/** What the channel needs from the rest of the operator. */
export interface ChannelBackend {
  /** Whether the node belongs to the fleet (has a SecAINode); others are refused. */
  isEnrolled(node: string): boolean;
  agentConnected(node: string, hello: Hello): void;
  agentDisconnected(node: string): void;
  report(node: string, report: Report): void;
  /** Calls `onPlan` with the node's current plan (if any) and on every change; returns an unsubscribe. */
  subscribePlan(node: string, onPlan: (plan: NodePlan) => void): () => void;
}

export interface ChannelServerOptions {
  client: KubeClient;
  identity: AgentIdentityPolicy;
  backend: ChannelBackend;
  tls: { certPem: string; keyPem: string };
  /** gRPC addresses: `host:port` for TCP, `unix:///path` for a UNIX socket (the lab). */
  listen: string[];
  heartbeatSeconds?: number;
  helloTimeoutMs?: number;
  operatorVersion: string;
  logger: Logger;
  registry: Registry;
}

type InboundMessage = ConnectRequest | { malformed: string };
type Call = ServerDuplexStream<InboundMessage, ConnectResponse>;

interface Session {
  id: string;
  node: string;
  call: Call;
  lastHeard: number;
  pending: Map<string, { resolve: (r: CommandResult) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>;
  close: (why: string) => void;
}

const DEFAULT_HEARTBEAT_SECONDS = 10;

/**
 * A process killed while listening leaves its socket file behind, and binding again then fails.
 * A socket nobody answers on is stale and goes; one that answers belongs to a live server and stays.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket = false;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) return;
  const answered = await new Promise<boolean>((resolve) => {
    const probe = createConnection({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (!answered) unlinkSync(path);
}

/** Decodes without throwing, so a malformed or oversized message becomes a refusal we can audit. */
function decodeBounded(buffer: Buffer): InboundMessage {
  if (buffer.length > MAX_MESSAGE_BYTES) return { malformed: `message of ${buffer.length} bytes exceeds ${MAX_MESSAGE_BYTES}` };
  try {
    return ConnectRequest.decode(buffer);
  } catch (err) {
    return { malformed: `undecodable message: ${(err as Error).message}` };
  }
}

const service: ServiceDefinition = {
  connect: { ...AgentChannelServiceService.connect, requestDeserialize: decodeBounded },
};

export class AgentChannelServer {
  private readonly server: Server;
  private readonly sessions = new Map<string, Session>();
  private readonly heartbeatMs: number;
  private readonly refusals: Counter<'reason'>;
  private readonly connected: Gauge;
  private readonly messages: Counter<'type'>;

  constructor(private readonly opts: ChannelServerOptions) {
    this.heartbeatMs = (opts.heartbeatSeconds ?? DEFAULT_HEARTBEAT_SECONDS) * 1000;
    // gRPC's own limit sits above ours so that our decoder sees oversized messages and can refuse
    // them with a reason instead of a bare transport error.
    this.server = new Server({
      'grpc.max_receive_message_length': 2 * MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 20_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5_000,
      // Channelz keeps a trace of every connection and call: memory per agent that no one reads.
      'grpc.enable_channelz': 0,
    });
    this.server.addService(service, { connect: (call: Call) => this.handle(call) });
    this.refusals = new Counter({
      name: 'secai_channel_refusals_total',
      help: 'Agent connections or messages refused, by reason.',
      labelNames: ['reason'] as const,
      registers: [opts.registry],
    });
    this.connected = new Gauge({
      name: 'secai_channel_connected_agents',
      help: 'Agents holding an authenticated channel.',
      registers: [opts.registry],
      collect: () => this.connected.set(this.sessions.size),
    });
    this.messages = new Counter({
      name: 'secai_channel_messages_received_total',
      help: 'Messages received from agents, by type.',
      labelNames: ['type'] as const,
      registers: [opts.registry],
    });
  }

  /** Binds every address; returns the bound addresses (TCP ports resolved). */
  async start(): Promise<string[]> {
    for (const address of this.opts.listen) {
      if (address.startsWith('unix://')) await removeStaleSocket(address.slice('unix://'.length));
    }
    const credentials = ServerCredentials.createSsl(null, [
      { cert_chain: Buffer.from(this.opts.tls.certPem), private_key: Buffer.from(this.opts.tls.keyPem) },
    ]);
    const bound: string[] = [];
    for (const address of this.opts.listen) {
      const port = await new Promise<number>((resolve, reject) =>
        this.server.bindAsync(address, credentials, (err, p) => (err ? reject(err) : resolve(p))),
      );
      bound.push(address.startsWith('unix:') ? address : address.replace(/:\d+$/, `:${port}`));
    }
    this.opts.logger.info({ addresses: bound }, 'agent channel listening');
    return bound;
  }

  async stop(graceMs = 5000): Promise<void> {
    for (const session of this.sessions.values()) session.close('operator shutting down');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  connectedNodes(): string[] {
    return [...this.sessions.keys()].sort();
  }

  /** Sends a command to a connected agent and waits for its result. */
  sendCommand(node: string, body: Command['body'], timeoutMs = 30_000): Promise<CommandResult> {
    const session = this.sessions.get(node);
    if (!session) return Promise.reject(new Error(`agent of node ${node} is not connected`));
    const id = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        session.pending.delete(id);
        reject(new Error(`command ${id} to node ${node} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      session.pending.set(id, { resolve, reject, timer });
      session.call.write({ body: { $case: 'command', value: { id, body } } });
    });
  }

  private refuse(call: Call, reason: RefusalReason, message: string, claimedNode: string | undefined): void {
    const reasonName = refusalReasonToJSON(reason);
    this.refusals.inc({ reason: reasonName });
    // An audit record: who was refused and why (never the token).
    this.opts.logger.warn({ audit: 'agent.refused', reason: reasonName, claimedNode, peer: call.getPeer(), message }, 'agent refused');
    try {
      call.write({ body: { $case: 'refusal', value: { reason, message } } });
      call.end();
    } catch {
      // The stream is already gone.
    }
  }

  private handle(call: Call): void {
    const log = this.opts.logger.child({ peer: call.getPeer() });
    const header = call.metadata.get(AUTHORIZATION_METADATA)[0];
    const token = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
    let session: Session | undefined;
    let settled = false;
    const helloTimer = setTimeout(() => {
      if (!settled) {
        settled = true;
        this.refuse(call, RefusalReason.REFUSAL_REASON_PROTOCOL_VIOLATION, 'no Hello within the deadline', undefined);
      }
    }, this.opts.helloTimeoutMs ?? 10_000);

    const onFirst = async (message: InboundMessage) => {
      settled = true;
      clearTimeout(helloTimer);
      if ('malformed' in message) {
        this.refuse(call, RefusalReason.REFUSAL_REASON_PROTOCOL_VIOLATION, message.malformed, undefined);
        return;
      }
      if (message.body?.$case !== 'hello') {
        this.refuse(call, RefusalReason.REFUSAL_REASON_PROTOCOL_VIOLATION, 'the first message must be Hello', undefined);
        return;
      }
      const hello = message.body.value;
      if (hello.protocolVersion !== PROTOCOL_VERSION) {
        this.refuse(
          call,
          RefusalReason.REFUSAL_REASON_INCOMPATIBLE_VERSION,
          `agent speaks protocol ${hello.protocolVersion}, the operator ${PROTOCOL_VERSION}`,
          hello.nodeName,
        );
        return;
      }
      let verdict;
      try {
        verdict = await verifyAgentToken(this.opts.client, token, hello.nodeName, this.opts.identity);
      } catch (err) {
        // The API server could not vouch either way: the agent retries later.
        log.error({ err: (err as Error).message }, 'identity check failed');
        call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'identity check unavailable' });
        return;
      }
      if (!verdict.ok) {
        this.refuse(call, verdict.reason, verdict.message, hello.nodeName);
        return;
      }
      const node = verdict.identity.node;
      if (!this.opts.backend.isEnrolled(node)) {
        this.refuse(call, RefusalReason.REFUSAL_REASON_NOT_ENROLLED, `node ${node} is not a fleet node`, node);
        return;
      }
      session = this.openSession(call, node, hello, log.child({ node }));
    };

    call.on('data', (message: InboundMessage) => {
      if (!settled) {
        void onFirst(message);
        return;
      }
      if (!session) return;
      this.onMessage(session, message);
    });
    call.on('error', () => session?.close('stream error'));
    call.on('cancelled', () => session?.close('cancelled by the agent'));
    call.on('end', () => session?.close('agent closed the stream'));
  }

  private openSession(call: Call, node: string, hello: Hello, log: Logger): Session {
    const previous = this.sessions.get(node);
    if (previous) {
      this.refuse(previous.call, RefusalReason.REFUSAL_REASON_SUPERSEDED, 'a newer connection from this node replaced this one', node);
      previous.close('superseded');
    }
    let unsubscribe = () => {};
    const heartbeat = setInterval(() => {
      if (Date.now() - session.lastHeard > 3 * this.heartbeatMs) {
        log.warn('agent silent for three heartbeat intervals; closing');
        session.close('heartbeat timeout');
        call.end();
        return;
      }
      call.write({ body: { $case: 'heartbeat', value: { unixMillis: Date.now() } } });
    }, this.heartbeatMs);
    const session: Session = {
      id: randomUUID(),
      node,
      call,
      lastHeard: Date.now(),
      pending: new Map(),
      close: (why: string) => {
        if (this.sessions.get(node) !== session) return;
        this.sessions.delete(node);
        clearInterval(heartbeat);
        unsubscribe();
        for (const { reject, timer } of session.pending.values()) {
          clearTimeout(timer);
          reject(new Error(`channel to ${node} closed: ${why}`));
        }
        session.pending.clear();
        log.info({ why }, 'agent disconnected');
        this.opts.backend.agentDisconnected(node);
      },
    };
    this.sessions.set(node, session);
    call.write({
      body: {
        $case: 'welcome',
        value: {
          protocolVersion: PROTOCOL_VERSION,
          operatorVersion: this.opts.operatorVersion,
          heartbeatSeconds: this.heartbeatMs / 1000,
        },
      },
    });
    log.info({ agentVersion: hello.agentVersion, appliedGeneration: hello.appliedPlanGeneration }, 'agent connected');
    this.opts.backend.agentConnected(node, hello);
    unsubscribe = this.opts.backend.subscribePlan(node, (plan) => {
      if (this.sessions.get(node) === session) call.write({ body: { $case: 'plan', value: plan } });
    });
    return session;
  }

  private onMessage(session: Session, message: InboundMessage): void {
    if ('malformed' in message) {
      this.refuse(session.call, RefusalReason.REFUSAL_REASON_PROTOCOL_VIOLATION, message.malformed, session.node);
      session.close('malformed message');
      return;
    }
    session.lastHeard = Date.now();
    const body = message.body;
    this.messages.inc({ type: body?.$case ?? 'empty' });
    switch (body?.$case) {
      case 'report':
        this.opts.backend.report(session.node, body.value);
        return;
      case 'heartbeat':
        return;
      case 'commandResult': {
        const waiter = session.pending.get(body.value.id);
        if (!waiter) return;
        session.pending.delete(body.value.id);
        clearTimeout(waiter.timer);
        waiter.resolve(body.value);
        return;
      }
      default:
        this.refuse(session.call, RefusalReason.REFUSAL_REASON_PROTOCOL_VIOLATION, `unexpected ${body?.$case ?? 'empty'} message`, session.node);
        session.close('protocol violation');
    }
  }
}
