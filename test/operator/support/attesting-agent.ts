// An agent whose duty is remote attestation: the real AttestationDuty with the real tpm2-tools
// client on a real swtpm, behind the real channel client (Pod-bound token, TLS), with the tpm2
// capability in its Hello. A `tamper` hook stands for a compromised node: it sees each command and
// the honest answer, and may return anything else (a replayed quote, a forged PCR value, another
// TPM's key...).
import pino from 'pino';
import { Registry } from 'prom-client';
import type { Command, CommandResult } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { PROTOCOL_VERSION } from '../../../api/proto/protocol.js';
import { AttestationDuty } from '../../../agents/src/agent/duties/attestation-duty.js';
import { Attestor } from '../../../agents/src/attestation/attestation.js';
import { tpm2ToolsAttestation } from '../../../agents/src/attestation/tpm-attestation.js';
import { tpm2ToolsClient } from '../../../agents/src/attestation/tpm2-tools.js';
import { MemoryAuditSink } from '../../../agents/src/audit/audit-sink.js';
import { AgentChannelClient } from '../../../agents/src/channel/client.js';
import type { ChannelEndpoint } from './audit-agent.js';

export type Tamper = (command: Command, honest: () => Promise<CommandResult>) => Promise<CommandResult>;

export interface AttestingAgentOptions {
  node: string;
  tcti: string;
  workDir: string;
  eventLogPath: string;
  tokenFile: string;
  endpoint: ChannelEndpoint;
  tamper?: Tamper;
}

export class AttestingAgent {
  readonly commands: string[] = [];
  tamper: Tamper | undefined;

  private constructor(
    readonly node: string,
    private readonly channel: AgentChannelClient,
  ) {}

  static start(opts: AttestingAgentOptions): AttestingAgent {
    const audit = new MemoryAuditSink();
    const duty = new AttestationDuty(
      new Attestor({ tpm: tpm2ToolsClient(opts.tcti), audit, registry: new Registry() }),
      60_000,
      { tpm: tpm2ToolsAttestation({ tcti: opts.tcti, workDir: opts.workDir }), eventLogPath: opts.eventLogPath, audit },
    );
    const self: { agent?: AttestingAgent } = {};
    const channel = new AgentChannelClient({
      ...opts.endpoint,
      tokenFile: opts.tokenFile,
      hello: () => ({
        nodeName: opts.node,
        agentVersion: 'attestation-test',
        protocolVersion: PROTOCOL_VERSION,
        capabilities: ['tpm2'],
        auditPublicKey: Buffer.alloc(32, 1),
        appliedPlanGeneration: 0,
        appliedPlanDigest: '',
      }),
      onPlan: async () => {},
      onCommand: async (command: Command) => {
        self.agent!.commands.push(command.body?.$case ?? 'empty');
        const honest = async () => (await duty.handleCommand(command)) ?? { id: command.id, error: `no duty handles ${command.body?.$case}`, body: undefined };
        const tamper = self.agent!.tamper;
        return tamper ? tamper(command, honest) : honest();
      },
      logger: pino({ level: 'silent' }),
      initialBackoffMs: 100,
      maxBackoffMs: 1000,
    });
    self.agent = new AttestingAgent(opts.node, channel);
    self.agent.tamper = opts.tamper;
    channel.start();
    return self.agent;
  }

  stop(): void {
    this.channel.stop();
  }
}
