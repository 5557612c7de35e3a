// SIMULATION ONLY. The process that plays the whole simulated fleet for the fleet-scale benchmark:
// one SimulatedFleet (real channel clients, real Pod-bound tokens, in-memory egress) driven over the
// IPC channel of its parent. It answers two questions: how many agents are connected, and when each
// agent enforced the first plan whose egress allows a given marker address.
import { createWriteStream, readFileSync } from 'node:fs';
import pino from 'pino';
import { SimulatedFleet, type SimulatedNode } from '../../agents/src/sim/simulated-fleet.js';

export interface FleetSimConfig {
  nodes: SimulatedNode[];
  operatorAddress: string;
  caFile: string;
  serverName: string;
  stateDir: string;
  logFile: string;
}

export type FleetSimRequest =
  | { id: number; type: 'connected' }
  | { id: number; type: 'enforced'; marker: string; timeoutMs: number }
  | { id: number; type: 'stop' };

export type FleetSimResponse =
  | { id: number; type: 'connected'; connected: number; total: number }
  | { id: number; type: 'enforced'; enforcedAt: Record<string, number>; missing: string[] }
  | { id: number; type: 'stop' };

const POLL_MS = 10;
/** Agents started together: a thousand connecting at once overflow the socket's listen backlog. */
const CONNECT_BATCH = 50;

function send(message: FleetSimResponse | { type: 'ready' }): void {
  process.send?.(message);
}

/** Node → when its agent enforced a plan allowing `marker` (ms since the epoch), for the agents that do. */
function enforcementOf(fleet: SimulatedFleet, marker: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const { node, agent, egress } of fleet.agents) {
    const plan = agent.currentPlan();
    if (!plan?.egress?.allow.some((rule) => rule.destination?.value === marker)) continue;
    const at = egress.enforcedAt.get(plan.generation);
    if (at !== undefined) found.set(node, at);
  }
  return found;
}

async function waitForEnforcement(fleet: SimulatedFleet, marker: string, timeoutMs: number): Promise<Map<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = enforcementOf(fleet, marker);
    if (found.size === fleet.agents.length || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function main(config: FleetSimConfig): Promise<void> {
  const logger = pino({ level: 'warn', base: { simulation: true } }, createWriteStream(config.logFile, { flags: 'a' }));
  const fleet = new SimulatedFleet({ ...config, version: '0.1.0', logger, reportIntervalMs: 60_000 });
  send({ type: 'ready' });
  // What SimulatedFleet.start does, in batches that each connect before the next starts.
  for (let i = 0; i < fleet.agents.length; i += CONNECT_BATCH) {
    const batch = fleet.agents.slice(i, i + CONNECT_BATCH);
    for (const { agent, channel } of batch) {
      await agent.start();
      channel.start();
    }
    const deadline = Date.now() + 30_000;
    while (batch.some((a) => a.channel.state !== 'connected') && Date.now() < deadline) await new Promise((r) => setTimeout(r, POLL_MS));
  }
  process.on('message', (raw) => {
    const request = raw as FleetSimRequest;
    void (async () => {
      switch (request.type) {
        case 'connected':
          send({ id: request.id, type: 'connected', connected: fleet.connected(), total: fleet.agents.length });
          return;
        case 'enforced': {
          const found = await waitForEnforcement(fleet, request.marker, request.timeoutMs);
          send({
            id: request.id,
            type: 'enforced',
            enforcedAt: Object.fromEntries(found),
            missing: fleet.agents.map((a) => a.node).filter((n) => !found.has(n)),
          });
          return;
        }
        case 'stop':
          await fleet.stop();
          send({ id: request.id, type: 'stop' });
          process.disconnect?.();
          return;
      }
    })();
  });
  process.on('disconnect', () => process.exit(0));
}

await main(JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as FleetSimConfig);
