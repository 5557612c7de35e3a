// The agent's end of the channel: dials the operator over TLS (TCP, or a UNIX socket in the lab),
// presents its projected ServiceAccount token, says Hello, then receives plans and commands and
// sends reports. It reconnects with jittered exponential backoff forever: losing the operator
// changes nothing on the node, which keeps enforcing its last plan.
import { readFileSync } from 'node:fs';
import { credentials, Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  AgentChannelServiceClient,
  type Command,
  type CommandResult,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
  type NodePlan,
  type Refusal,
  refusalReasonToJSON,
  type Report,
} from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { AUTHORIZATION_METADATA, MAX_MESSAGE_BYTES } from '../../../api/proto/protocol.js';

export interface ChannelClientOptions {
  /** `host:port` or `unix:///path`. */
  address: string;
  /** PEM bundle of the CA that signs the operator's serving certificate. */
  caFile: string;
  /** The DNS name in the operator's certificate (the Service name in a cluster). */
  serverName: string;
  /** The projected token; read again on every connection because the kubelet rotates it. */
  tokenFile: string;
  hello: () => Hello;
  onPlan: (plan: NodePlan) => Promise<void>;
  onCommand: (command: Command) => Promise<CommandResult>;
  logger: Logger;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * How long an attempt may go without the operator's welcome before it is abandoned and retried
   * (default 15 s). A connection whose address moved (a Service endpoint that pointed at a leader
   * Pod that is gone) can otherwise hang in TCP's SYN retries for minutes.
   */
  welcomeTimeoutMs?: number;
}

export type ChannelState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'stopped';

type Stream = ClientDuplexStream<ConnectRequest, ConnectResponse>;

/** The longest token file accepted (projected tokens are a few KiB). */
const MAX_TOKEN_FILE_BYTES = 64 * 1024;

export class AgentChannelClient {
  private stream: Stream | undefined;
  private client: InstanceType<typeof AgentChannelServiceClient> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private welcomeTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private stopped = false;
  private lastRefusal: Refusal | undefined;
  state: ChannelState = 'idle';

  constructor(private readonly opts: ChannelClientOptions) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.state = 'stopped';
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    clearTimeout(this.welcomeTimer);
    this.stream?.cancel();
    this.client?.close();
  }

  /** The refusal the operator gave last, if the latest attempt was refused. */
  refusal(): Refusal | undefined {
    return this.lastRefusal;
  }

  /** Sends a report when connected; returns whether it was sent. */
  sendReport(report: Report): boolean {
    if (this.state !== 'connected' || !this.stream) return false;
    this.stream.write({ body: { $case: 'report', value: report } });
    return true;
  }

  private connect(): void {
    if (this.stopped) return;
    this.state = 'connecting';
    const log = this.opts.logger;
    let token: string;
    let ca: Buffer;
    try {
      token = readFileSync(this.opts.tokenFile, 'utf8').slice(0, MAX_TOKEN_FILE_BYTES).trim();
      ca = readFileSync(this.opts.caFile);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'cannot read channel credentials');
      this.scheduleReconnect();
      return;
    }
    this.client?.close();
    this.client = new AgentChannelServiceClient(this.opts.address, credentials.createSsl(ca), {
      'grpc.ssl_target_name_override': this.opts.serverName,
      'grpc.default_authority': this.opts.serverName,
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 20_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    const metadata = new Metadata();
    metadata.set(AUTHORIZATION_METADATA, `Bearer ${token}`);
    const stream = this.client.connect(metadata);
    this.stream = stream;
    let ended = false;
    const finish = (why: string) => {
      if (ended) return;
      ended = true;
      clearInterval(this.heartbeat);
      clearTimeout(this.welcomeTimer);
      if (this.stream === stream) this.stream = undefined;
      if (!this.stopped) {
        log.warn({ why }, 'channel to the operator closed');
        this.scheduleReconnect();
      }
    };
    stream.on('data', (message: ConnectResponse) => this.onMessage(stream, message));
    stream.on('error', (err: Error) => finish(err.message));
    stream.on('end', () => finish('operator ended the stream'));
    stream.write({ body: { $case: 'hello', value: this.opts.hello() } });
    const welcomeTimeoutMs = this.opts.welcomeTimeoutMs ?? 15_000;
    clearTimeout(this.welcomeTimer);
    this.welcomeTimer = setTimeout(() => {
      if (ended || this.state === 'connected') return;
      // Abandon the attempt: the client (and its connection) goes, and the backoff retries.
      finish(`no welcome from the operator within ${welcomeTimeoutMs} ms`);
      stream.cancel();
    }, welcomeTimeoutMs);
  }

  private onMessage(stream: Stream, message: ConnectResponse): void {
    const log = this.opts.logger;
    const body = message.body;
    switch (body?.$case) {
      case 'welcome':
        clearTimeout(this.welcomeTimer);
        this.state = 'connected';
        this.attempt = 0;
        this.lastRefusal = undefined;
        log.info({ operatorVersion: body.value.operatorVersion }, 'connected to the operator');
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(
          () => stream.write({ body: { $case: 'heartbeat', value: { unixMillis: Date.now() } } }),
          Math.max(1, body.value.heartbeatSeconds) * 1000,
        );
        return;
      case 'refusal':
        this.lastRefusal = body.value;
        log.error({ reason: refusalReasonToJSON(body.value.reason), message: body.value.message }, 'operator refused the agent');
        return;
      case 'plan':
        this.opts.onPlan(body.value).catch((err: Error) => log.error({ err: err.message }, 'applying the plan failed'));
        return;
      case 'command':
        this.opts
          .onCommand(body.value)
          .catch((err: Error): CommandResult => ({ id: body.value.id, error: err.message, body: undefined }))
          .then((result) => {
            if (this.stream === stream) stream.write({ body: { $case: 'commandResult', value: result } });
          });
        return;
      case 'heartbeat':
        return;
      default:
        log.warn('ignoring an empty message from the operator');
    }
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.state = 'backoff';
    const initial = this.opts.initialBackoffMs ?? 500;
    const max = this.opts.maxBackoffMs ?? 30_000;
    const base = Math.min(max, initial * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    // Equal jitter (half the delay fixed, half random), so a fleet that lost its operator does not
    // reconnect in lockstep.
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
