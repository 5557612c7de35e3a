// SIMULATION ONLY. Many node agents in one process, each with its own channel to the operator and
// an in-memory egress duty (SimulatedEgressDuty). They speak the real protocol and prove their
// identity with real Pod-bound tokens; they enforce nothing. Every agent says so: its version ends
// in "+simulated", its capabilities list "simulated", and its logs carry `simulation: true`.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { AgentChannelClient } from '../channel/client.js';
import { MemoryAuditSink } from '../audit/audit-sink.js';
import { NodeAgent } from '../agent/node-agent.js';
import { PlanStore } from '../agent/plan-store.js';
import { SimulatedEgressDuty } from './simulated-egress.js';

export const SIMULATED_CAPABILITY = 'simulated';

export interface SimulatedNode {
  name: string;
  /** A file holding the node's Pod-bound token. */
  tokenFile: string;
}

export interface SimulatedFleetOptions {
  nodes: SimulatedNode[];
  operatorAddress: string;
  caFile: string;
  serverName: string;
  stateDir: string;
  version: string;
  logger: Logger;
  reportIntervalMs?: number;
}

export interface SimulatedAgent {
  node: string;
  agent: NodeAgent;
  channel: AgentChannelClient;
  egress: SimulatedEgressDuty;
}

export class SimulatedFleet {
  readonly agents: SimulatedAgent[];

  constructor(opts: SimulatedFleetOptions) {
    const version = `${opts.version}+simulated`;
    this.agents = opts.nodes.map((node) => {
      const logger = opts.logger.child({ node: node.name, simulation: true });
      const stateDir = join(opts.stateDir, node.name);
      mkdirSync(stateDir, { recursive: true });
      const egress = new SimulatedEgressDuty();
      const agent = new NodeAgent({
        nodeName: node.name,
        version,
        capabilities: [SIMULATED_CAPABILITY],
        store: new PlanStore(stateDir),
        duties: [egress],
        audit: new MemoryAuditSink(),
        auditPublicKey: Buffer.alloc(32),
        logger,
        // One registry per agent: their metrics are not exported, only kept apart.
        registry: new Registry(),
        reportIntervalMs: opts.reportIntervalMs ?? 60_000,
      });
      const channel = new AgentChannelClient({
        address: opts.operatorAddress,
        caFile: opts.caFile,
        serverName: opts.serverName,
        tokenFile: node.tokenFile,
        hello: () => agent.hello(),
        onPlan: (plan) => agent.receivePlan(plan),
        onCommand: (command) => agent.handleCommand(command),
        logger,
      });
      agent.attach(channel);
      return { node: node.name, agent, channel, egress };
    });
  }

  async start(): Promise<void> {
    for (const { agent, channel } of this.agents) {
      await agent.start();
      channel.start();
    }
  }

  connected(): number {
    return this.agents.filter((a) => a.channel.state === 'connected').length;
  }

  async stop(): Promise<void> {
    for (const { agent, channel } of this.agents) {
      channel.stop();
      await agent.stop();
    }
  }
}
