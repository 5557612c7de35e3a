// The node's boot-time firewall is the agent's own rendering of an empty Enforce plan: the same
// `inet secai` table (default drop, established/related, loopback, restricted ICMP/ND, DHCP
// client), so the node is closed from the first packet and the agent's first plan replaces the
// table in one transaction without any gap or widening. `npx tsx node-image/base-ruleset.ts`
// rewrites the file; test/node-image checks that it has not drifted from the renderer.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EgressMode } from '../api/gen/proto/secai/fleet/v1/agent.js';
import { renderEgressRuleset, replaceTableTransaction } from '../agents/src/egress/render-egress-ruleset.js';

export const BASE_RULESET_PATH = join('node-image', 'rootfs', 'usr', 'lib', 'secai', 'base-ruleset.nft');

const HEADER = `# Generated from agents/src/egress/render-egress-ruleset.ts (an empty Enforce plan) by
# node-image/base-ruleset.ts: do not edit. Loaded by secai-base-firewall.service before any
# network interface is configured; the agent later replaces the table atomically with its plan.
`;

export function renderBaseRuleset(): string {
  const rendered = renderEgressRuleset({ mode: EgressMode.EGRESS_MODE_ENFORCE, allow: [], dns: undefined, torTransPort: 0, torDnsPort: 0, policies: [] }, new Map(), {
    inboundTcpPorts: [],
  });
  return HEADER + replaceTableTransaction(rendered.definition);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = new URL('..', import.meta.url).pathname;
  writeFileSync(join(root, BASE_RULESET_PATH), renderBaseRuleset());
  console.log(`wrote ${BASE_RULESET_PATH}`);
}
