// Base chains of other tables on the paths egress takes. netfilter runs every base chain on a hook
// in priority order, and an `accept` ends only its own chain, so another table cannot accept a
// packet past our drop; but one that runs first is where a tamper starts (it can mark, reroute or
// queue what our rules then judge) and no SecAI node needs one (SecAI OS loads its ruleset with
// `flush ruleset`). So a foreign filter chain that runs before ours on output, postrouting or
// forward and lets packets through by default is drift, and the repair removes it, unless the node
// declares it (kube-proxy's or a CNI's chains on a Kubernetes node: `--allow-foreign-hook`).
import { EGRESS_TABLE_FAMILY, EGRESS_TABLE_NAME } from './egress-table.js';
import { NftListingError } from './nft-listing.js';
import { type NftTarget, runNft } from './nft-target.js';

export interface BaseChain {
  family: string;
  table: string;
  name: string;
  type: string;
  hook: string;
  priority: number;
  policy: string;
}

/** The hooks every egress packet or forwarded packet passes. */
const EGRESS_HOOKS = new Set(['output', 'postrouting', 'forward']);
const FAMILIES = new Set(['inet', 'ip', 'ip6']);
const MAX_LISTED_CHAINS = 10_000;
const MAX_NAME_CHARS = 256;

/** The `family/table/chain` spelling of `--allow-foreign-hook`. */
export function foreignHookId(chain: Pick<BaseChain, 'family' | 'table' | 'name'>): string {
  return `${chain.family}/${chain.table}/${chain.name}`;
}

/** The base chains of `nft -j list chains` (every family and table); bounded. */
export function parseBaseChains(text: string): BaseChain[] {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new NftListingError(`nft printed invalid JSON: ${(error as Error).message}`);
  }
  const items = (document as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(items)) throw new NftListingError('nft JSON has no "nftables" array');
  if (items.length > MAX_LISTED_CHAINS + 1) throw new NftListingError(`nft listed more than ${MAX_LISTED_CHAINS} chains`);
  const chains: BaseChain[] = [];
  for (const item of items) {
    const chain = (item as { chain?: Record<string, unknown> } | null)?.chain;
    if (!chain || typeof chain.hook !== 'string') continue;
    const text = (value: unknown) => (typeof value === 'string' ? value.slice(0, MAX_NAME_CHARS) : '');
    chains.push({
      family: text(chain.family),
      table: text(chain.table),
      name: text(chain.name),
      type: text(chain.type),
      hook: chain.hook,
      priority: typeof chain.prio === 'number' && Number.isFinite(chain.prio) ? chain.prio : 0,
      policy: text(chain.policy) || 'accept',
    });
  }
  return chains;
}

/**
 * Foreign base chains that run before ours on an egress path and accept by default, except those
 * the node declares. `ourPriority` is the priority of our filter chains.
 */
export function foreignEgressHooks(chains: readonly BaseChain[], ourPriority: number, allowed: ReadonlySet<string>): BaseChain[] {
  return chains.filter(
    (chain) =>
      !(chain.family === EGRESS_TABLE_FAMILY && chain.table === EGRESS_TABLE_NAME) &&
      FAMILIES.has(chain.family) &&
      EGRESS_HOOKS.has(chain.hook) &&
      chain.type === 'filter' &&
      chain.priority < ourPriority &&
      chain.policy === 'accept' &&
      !allowed.has(foreignHookId(chain)),
  );
}

export async function readBaseChains(target: NftTarget): Promise<BaseChain[]> {
  return parseBaseChains(await runNft(target, ['-j', 'list', 'chains']));
}

/** nft's own identifiers: what nft can create, and what its parser takes back. */
const NFT_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_./-]{0,255}$/;

export class ForeignHookError extends Error {
  override name = 'ForeignHookError';
}

/**
 * One transaction that empties and deletes each chain (a base chain cannot be a jump target).
 * Throws for a name nft's syntax cannot spell (made through netlink directly): it cannot be
 * removed this way, and the repair fails loudly rather than leave it silently.
 */
export function removeChainsTransaction(chains: readonly BaseChain[]): string {
  return chains
    .flatMap((chain) => {
      if (!NFT_IDENTIFIER.test(chain.table) || !NFT_IDENTIFIER.test(chain.name)) throw new ForeignHookError(`cannot spell ${describeChain(chain)} for nft`);
      const at = `${chain.family} ${chain.table} ${chain.name}`;
      return [`flush chain ${at}`, `delete chain ${at}`];
    })
    .join('\n')
    .concat('\n');
}

export function describeChain(chain: BaseChain): string {
  return `table ${chain.family} ${chain.table} chain ${chain.name} (${chain.type} hook ${chain.hook} priority ${chain.priority} policy ${chain.policy})`;
}
