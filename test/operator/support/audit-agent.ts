// An agent whose only duty is its audit log: a real AuditLog on real files behind the real channel
// client (Pod-bound token, TLS), answering SignTreeHead and ProveConsistency with the real AuditDuty
// and reporting its signed head with every report. The test decides when entries are appended, so
// the size of the log at each check is exact. LockVault commands are recorded and answered (this
// stand-in has no vault).
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import type { Command, NodePlan } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { PROTOCOL_VERSION } from '../../../api/proto/protocol.js';
import { AuditDuty } from '../../../agents/src/agent/duties/audit-duty.js';
import { AuditLog } from '../../../agents/src/audit/audit-log.js';
import type { AuditEvent } from '../../../agents/src/audit/audit-sink.js';
import { KEY_FILE } from '../../../agents/src/audit/log-files.js';
import { AgentChannelClient } from '../../../agents/src/channel/client.js';

export interface ChannelEndpoint {
  address: string;
  caFile: string;
  serverName: string;
}

export const auditEvent = (i: number, tag = ''): AuditEvent => ({
  type: i % 2 ? 'model.promoted' : 'plan.applied',
  subject: `item-${i}${tag}`,
  data: { generation: i, digest: `${i}`.padStart(64, '0') },
});

export class AuditAgent {
  readonly lockRequests: string[] = [];
  private plan: NodePlan | undefined;

  private constructor(
    readonly node: string,
    readonly log: AuditLog,
    private readonly channel: AgentChannelClient,
  ) {}

  static async start(node: string, logDir: string, tokenFile: string, endpoint: ChannelEndpoint): Promise<AuditAgent> {
    const log = await AuditLog.open({ dir: logDir });
    const duty = new AuditDuty(log);
    // The channel's callbacks need the agent, which needs the channel.
    const self: { agent?: AuditAgent } = {};
    const channel = new AgentChannelClient({
      ...endpoint,
      tokenFile,
      hello: () => ({
        nodeName: node,
        agentVersion: 'audit-test',
        protocolVersion: PROTOCOL_VERSION,
        capabilities: [],
        auditPublicKey: log.publicKey,
        appliedPlanGeneration: 0,
        appliedPlanDigest: '',
      }),
      onPlan: async (plan) => {
        self.agent!.plan = plan;
        await self.agent!.report();
      },
      onCommand: async (command: Command) => {
        if (command.body?.$case === 'lockVault') {
          self.agent!.lockRequests.push(command.body.value.reason);
          return { id: command.id, error: '', body: undefined };
        }
        return (await duty.handleCommand(command)) ?? { id: command.id, error: `no duty handles ${command.body?.$case}`, body: undefined };
      },
      logger: pino({ level: 'silent' }),
      initialBackoffMs: 100,
      maxBackoffMs: 1000,
    });
    self.agent = new AuditAgent(node, log, channel);
    channel.start();
    return self.agent;
  }

  get connected(): boolean {
    return this.channel.state === 'connected';
  }

  /** Appends `count` entries numbered from the log's size; returns the new size. */
  async append(count: number, tag = ''): Promise<number> {
    for (let i = 0; i < count; i++) await this.log.record(auditEvent(this.log.size, tag));
    return this.log.size;
  }

  /** Reports the plan it holds (as applied) with a freshly signed head of its log. */
  async report(): Promise<void> {
    const head = await this.log.signTreeHead();
    this.channel.sendReport({
      planGeneration: this.plan?.generation ?? 0,
      planDigest: this.plan?.digest ?? '',
      planError: '',
      models: [],
      services: [],
      duties: [],
      auditHead: head,
      observedUnixMillis: Date.now(),
    });
  }

  async stop(): Promise<void> {
    this.channel.stop();
    await this.log.close();
  }
}

/**
 * Replaces the log in `dir` with one holding `history`, written the way an agent writes it: with
 * the node's own key (root on the node can do that), or with a fresh key.
 */
export async function rewriteLog(dir: string, history: AuditEvent[], key: 'node-key' | 'new-key'): Promise<void> {
  const rewritten = `${dir}.rewritten`;
  await rm(rewritten, { recursive: true, force: true });
  await mkdir(rewritten, { recursive: true, mode: 0o700 });
  if (key === 'node-key') await copyFile(join(dir, KEY_FILE), join(rewritten, KEY_FILE));
  const log = await AuditLog.open({ dir: rewritten });
  for (const event of history) await log.record(event);
  await log.close();
  await rm(dir, { recursive: true, force: true });
  await rename(rewritten, dir);
}
