// Applies a rendered egress table in one nft transaction, reads it back from the kernel and
// compares it with the intent; harvests the named drop counters; refreshes FQDN set elements.
import { performance } from 'node:perf_hooks';
import { compareEgressTables, EGRESS_TABLE_FAMILY, EGRESS_TABLE_NAME, egressTableDigest, type NormalisedTable } from './egress-table.js';
import { type CounterValue, type EgressListing, MAX_LISTED_ELEMENTS, NftListingError, parseNftListing } from './nft-listing.js';
import { type NftTarget, runNft } from './nft-target.js';
import { dumpedElementKeys, expectedElementsOf, readSetElements } from './set-element-reader.js';
import { COUNTER_AUDITED, COUNTER_DNS_DROPPED, COUNTER_DROPPED, COUNTER_INBOUND_DROPPED, type RenderedEgressRuleset, replaceTableTransaction } from './render-egress-ruleset.js';
import { elementText, type SetElement } from './set-elements.js';

export interface AppliedEgressTable {
  /** SHA-256 of the normalised read-back. */
  digest: string;
  /** Where the read-back differs from the intent; empty when it matches. */
  mismatches: string[];
  listing: EgressListing;
  /** Elements the kernel holds in the allow and Tor sets. */
  allowEntries: number;
  applySeconds: number;
  verifySeconds: number;
}

export interface ApplyOptions {
  /** More nft commands committed in the same transaction (removing foreign egress hooks). */
  alsoInTransaction?: string;
  /** Runs after the transaction and before the read-back (the drift check reads the generation). */
  beforeReadBack?: () => Promise<unknown>;
}

/** Replaces `inet secai` atomically with the rendered table, then verifies it. */
export async function applyEgressTable(target: NftTarget, rendered: RenderedEgressRuleset, options: ApplyOptions = {}): Promise<AppliedEgressTable> {
  const started = performance.now();
  // Throws when nft refuses the transaction: then nothing changed.
  await runNft(target, ['-f', '-'], `${replaceTableTransaction(rendered.definition)}${options.alsoInTransaction ?? ''}`);
  const applied = performance.now();
  await options.beforeReadBack?.();
  let listing: EgressListing;
  try {
    listing = await readEgressTable(target, rendered.intent);
  } catch (error) {
    // The new table is in force but unverified: report it as a difference, not as "not applied".
    const empty = { table: { sets: [], chains: [], counters: [], limits: [], others: [] }, counters: new Map(), elementCounts: new Map(), tablePresent: false };
    const failed = performance.now();
    return {
      digest: '',
      mismatches: [`the table could not be read back: ${(error as Error).message}`],
      listing: empty,
      allowEntries: 0,
      applySeconds: (applied - started) / 1000,
      verifySeconds: (failed - applied) / 1000,
    };
  }
  const mismatches = compareEgressTables(rendered.intent, listing.table);
  const digest = egressTableDigest(listing.table);
  const verified = performance.now();
  return {
    digest,
    mismatches,
    listing,
    allowEntries: allowEntriesOf(listing),
    applySeconds: (applied - started) / 1000,
    verifySeconds: (verified - applied) / 1000,
  };
}

/**
 * Reads the table back from the kernel. With a set element reader, nft lists the family's ruleset
 * tersely (nft 1.0.6 then fetches no set elements, where any listing of the table fetches them
 * all: ~1 s at 100,000) while the reader dumps the elements; the two run side by side. Each read is
 * consistent in itself; should the table change between them, the result mixes two states the
 * kernel really held after the apply, so a difference from the intent still shows, and the sets
 * of the two reads must agree. `intent` only saves building and sorting the keys of elements that
 * match it.
 */
export async function readEgressTable(target: NftTarget, intent?: NormalisedTable): Promise<EgressListing> {
  if (target.setElementReader === undefined) {
    try {
      return parseNftListing(await runNft(target, ['-j', 'list', 'table', EGRESS_TABLE_FAMILY, EGRESS_TABLE_NAME]));
    } catch (error) {
      // The table is gone: that is a state to compare, not a failure to read.
      if (/No such file or directory/.test((error as Error).message)) return parseNftListing('{"nftables": []}');
      throw error;
    }
  }
  const reading = Promise.all([
    runNft(target, ['-j', '-t', 'list', 'ruleset', EGRESS_TABLE_FAMILY]),
    readSetElements(target, target.setElementReader, EGRESS_TABLE_FAMILY, EGRESS_TABLE_NAME, MAX_LISTED_ELEMENTS),
  ]);
  // Indexing the intent's elements overlaps with the two reads, which take no input from here.
  const expected = intent && expectedElementsOf(intent);
  const [structure, dump] = await reading;
  const listed = new Set<string>();
  const listing = parseNftListing(structure, {
    ruleset: true,
    elementsOf: (name, type) => {
      const dumped = dump.sets.get(name);
      if (!dumped) throw new NftListingError(`set ${name} is listed but the kernel dumped no such set`);
      listed.add(name);
      return dumpedElementKeys(dumped, type, expected?.get(name));
    },
  });
  for (const name of dump.sets.keys()) {
    if (!listed.has(name)) throw new NftListingError(`the kernel dumped set ${name}, which nft did not list`);
  }
  return listing;
}

function allowEntriesOf(listing: EgressListing): number {
  let total = 0;
  for (const [name, count] of listing.elementCounts) {
    if (!name.startsWith('dns_')) total += count;
  }
  return total;
}

export interface EgressCounters {
  dropped: CounterValue;
  dnsDropped: CounterValue;
  audited: CounterValue;
  inboundDropped: CounterValue;
}

const HARVESTED = [COUNTER_DROPPED, COUNTER_DNS_DROPPED, COUNTER_AUDITED, COUNTER_INBOUND_DROPPED] as const;

export function egressCounters(counters: ReadonlyMap<string, CounterValue>): EgressCounters {
  const value = (name: string) => counters.get(name) ?? { packets: 0, bytes: 0 };
  return { dropped: value(COUNTER_DROPPED), dnsDropped: value(COUNTER_DNS_DROPPED), audited: value(COUNTER_AUDITED), inboundDropped: value(COUNTER_INBOUND_DROPPED) };
}

/**
 * Reads and zeroes the named counters in one kernel operation each (`nft reset counter`). Listing
 * them would fetch every set element (0.5 s at 100k, nft 1.0.6); resetting touches only the
 * counters. The caller adds what it harvests to its own totals, so a table replacement, which
 * starts the counters again at zero, loses nothing harvested before it. Returns undefined when
 * the table does not exist.
 */
export async function harvestEgressCounters(target: NftTarget): Promise<EgressCounters | undefined> {
  let output: string;
  try {
    output = await runNft(target, ['-j', HARVESTED.map((name) => `reset counter ${EGRESS_TABLE_FAMILY} ${EGRESS_TABLE_NAME} ${name}`).join('; ')]);
  } catch (error) {
    if (/No such file or directory/.test((error as Error).message)) return undefined;
    throw error;
  }
  const counters = new Map<string, CounterValue>();
  // nft prints one JSON document per command.
  for (const line of output.split('\n').filter((text) => text.trim() !== '').slice(0, HARVESTED.length)) {
    try {
      for (const [name, value] of parseNftListing(line).counters) counters.set(name, value);
    } catch (error) {
      throw new NftListingError(`reading reset counters: ${(error as Error).message}`);
    }
  }
  return egressCounters(counters);
}

/**
 * Adds FQDN answers to their sets with fresh timeouts, in one transaction. Add, delete, add: the
 * first add makes the delete safe when the element has just expired, and the delete-add restarts
 * the timeout on kernels whose `add` leaves an existing element's timeout alone.
 */
export async function refreshFqdnElements(target: NftTarget, elements: readonly { set: string; element: SetElement }[]): Promise<void> {
  if (elements.length === 0) return;
  const lines: string[] = [];
  for (const { set, element } of elements) {
    const prefix = `element ${EGRESS_TABLE_FAMILY} ${EGRESS_TABLE_NAME} ${set}`;
    const withTimeout = elementText(element);
    lines.push(`add ${prefix} { ${withTimeout} }`, `delete ${prefix} { ${elementText({ ...element, timeoutSeconds: undefined })} }`, `add ${prefix} { ${withTimeout} }`);
  }
  await runNft(target, ['-f', '-'], `${lines.join('\n')}\n`);
}
