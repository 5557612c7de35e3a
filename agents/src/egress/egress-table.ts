// The normalised form of the `inet secai` table. The renderer states its intent in this form and the
// read-back of `nft -j list table` is reduced to it, so the two compare field by field. It leaves
// out what the kernel owns (handles, counter values, element expiry) and spells elements as merged
// numeric intervals, so nft's canonical spelling of prefixes, ranges and concatenations never makes
// equal rulesets look different.
import { createHash } from 'node:crypto';
import { canonicalJson } from '../../../api/canonical-json.js';

export const EGRESS_TABLE_FAMILY = 'inet';
export const EGRESS_TABLE_NAME = 'secai';

export interface NormalisedSet {
  name: string;
  /** The key's datatypes, one per field of a concatenation. */
  type: string[];
  /** Sorted set flags (`interval`, `timeout`). */
  flags: string[];
  size?: number;
  /** Element keys (set-elements.ts), sorted when built; timeouts and counters are left out. */
  elements: string[];
}

export interface NormalisedChain {
  name: string;
  /** Base chains only: type, hook, numeric priority, policy. */
  type?: string;
  hook?: string;
  priority?: number;
  policy?: string;
  /** Rules in order, each as nft prints its statements (counter values omitted). */
  rules: string[];
}

export interface NormalisedLimit {
  name: string;
  rate: number;
  per: string;
  burst: number;
}

export interface NormalisedTable {
  sets: NormalisedSet[];
  chains: NormalisedChain[];
  /** Names of the named counters. */
  counters: string[];
  limits: NormalisedLimit[];
  /** Objects of kinds the renderer never writes (maps, quotas, flowtables...), as `kind name`. */
  others: string[];
}

/** Whether a set's members are learned at run time (FQDN answers): they expire and differ per node. */
export function isDynamicSet(set: Pick<NormalisedSet, 'flags'>): boolean {
  return set.flags.includes('timeout');
}

/** Orders sets, chains and names; elements are sorted where they are built (100,000 of them). */
export function sortTable(table: NormalisedTable): NormalisedTable {
  const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return {
    sets: [...table.sets].sort(byName).map((set) => ({ ...set, flags: [...set.flags].sort() })),
    chains: [...table.chains].sort(byName),
    counters: [...table.counters].sort(),
    limits: [...table.limits].sort(byName),
    others: [...table.others].sort(),
  };
}

/**
 * SHA-256 (hex) of the normalised table. Members of dynamic sets are left out: they are DNS answers
 * that change with every refresh and differ between nodes enforcing the same plan.
 */
export function egressTableDigest(table: NormalisedTable): string {
  const { sets, ...rest } = sortTable(table);
  // The bytes of canonicalJson(table), built in pieces: JSON.stringify spells an array of strings
  // exactly as canonicalJson does, several times faster at 100,000 elements. `sets` is the last
  // key of the table and `elements` the first of a set, so each piece goes where it sorts.
  const hash = createHash('sha256').update(`${canonicalJson(rest).slice(0, -1)},"sets":[`);
  sets.forEach((set, i) => {
    const { elements, ...declared } = set;
    hash.update(`${i === 0 ? '' : ','}{"elements":${JSON.stringify(isDynamicSet(set) ? [] : elements)},${canonicalJson(declared).slice(1)}`);
  });
  return hash.update(']}').digest('hex');
}

const MAX_REPORTED_DIFFERENCES = 20;
const MAX_ELEMENTS_NAMED = 3;

/** What kind of change a difference between intent and kernel is (the drift kinds of egress). */
export type EgressDifferenceKind = 'chain-changed' | 'rule-changed' | 'set-changed' | 'set-element-added' | 'set-element-removed' | 'object-changed';

export interface EgressDifference {
  kind: EgressDifferenceKind;
  text: string;
}

export interface CompareOptions {
  /**
   * For the members of dynamic (FQDN) sets on a resync: whether the kernel may hold this element.
   * Given, a dynamic set's missing members are not differences (they expired, or come back at the
   * next refresh: fail closed) and only members it refuses are; absent, dynamic sets compare
   * exactly like the others (right after writing them).
   */
  dynamicMemberAllowed?: (set: string, key: string) => boolean;
}

/** What differs between the intended and the read-back table, in words; empty when they agree. */
export function compareEgressTables(intended: NormalisedTable, actual: NormalisedTable, options: CompareOptions = {}): string[] {
  return findEgressDifferences(intended, actual, options).map((difference) => difference.text);
}

/** The differences between the intended and the read-back table, each with its kind. */
export function findEgressDifferences(intended: NormalisedTable, actual: NormalisedTable, options: CompareOptions = {}): EgressDifference[] {
  const want = sortTable(intended);
  const have = sortTable(actual);
  const differences: EgressDifference[] = [];
  const note = (kind: EgressDifferenceKind, text: string) => {
    if (differences.length < MAX_REPORTED_DIFFERENCES) differences.push({ kind, text });
  };

  const haveSets = new Map(have.sets.map((set) => [set.name, set]));
  for (const set of want.sets) {
    const found = haveSets.get(set.name);
    haveSets.delete(set.name);
    if (!found) {
      note('set-changed', `set ${set.name} is missing`);
      continue;
    }
    const declared = (s: NormalisedSet) => `type ${s.type.join(' . ')} flags [${s.flags.join(',')}] size ${s.size ?? '-'}`;
    if (declared(set) !== declared(found)) note('set-changed', `set ${set.name}: expected ${declared(set)}, found ${declared(found)}`);
    const allowed = options.dynamicMemberAllowed;
    if (allowed && isDynamicSet(set)) {
      const refused = found.elements.filter((key) => !allowed(set.name, key));
      if (refused.length > 0) note('set-element-added', `set ${set.name}: ${refused.length} element(s) no answer put there (${refused.slice(0, MAX_ELEMENTS_NAMED).join(', ')})`);
      continue;
    }
    const { missing, extra } = sortedDifference(set.elements, found.elements);
    if (missing.length > 0 || extra.length > 0) {
      // An element someone added is the graver change: it may allow what the plan does not.
      note(
        extra.length > 0 ? 'set-element-added' : 'set-element-removed',
        `set ${set.name}: ${missing.length} element(s) missing (${missing.slice(0, MAX_ELEMENTS_NAMED).join(', ')}), ` +
          `${extra.length} unexpected (${extra.slice(0, MAX_ELEMENTS_NAMED).join(', ')})`,
      );
    }
  }
  for (const name of haveSets.keys()) note('set-changed', `unexpected set ${name}`);

  const haveChains = new Map(have.chains.map((chain) => [chain.name, chain]));
  for (const chain of want.chains) {
    const found = haveChains.get(chain.name);
    haveChains.delete(chain.name);
    if (!found) {
      note('chain-changed', `chain ${chain.name} is missing`);
      continue;
    }
    const header = (c: NormalisedChain) => `type ${c.type ?? '-'} hook ${c.hook ?? '-'} priority ${c.priority ?? '-'} policy ${c.policy ?? '-'}`;
    if (header(chain) !== header(found)) note('chain-changed', `chain ${chain.name}: expected ${header(chain)}, found ${header(found)}`);
    const count = Math.max(chain.rules.length, found.rules.length);
    for (let i = 0; i < count; i++) {
      if (chain.rules[i] !== found.rules[i]) {
        note('rule-changed', `chain ${chain.name} rule ${i + 1}: expected ${JSON.stringify(chain.rules[i] ?? null)}, found ${JSON.stringify(found.rules[i] ?? null)}`);
      }
    }
  }
  for (const name of haveChains.keys()) note('chain-changed', `unexpected chain ${name}`);

  if (want.counters.join(',') !== have.counters.join(',')) note('object-changed', `named counters: expected [${want.counters}], found [${have.counters}]`);
  for (const other of have.others) note('object-changed', `unexpected ${other}`);
  if (canonicalJson(want.limits) !== canonicalJson(have.limits)) {
    note('object-changed', `named limits: expected ${canonicalJson(want.limits)}, found ${canonicalJson(have.limits)}`);
  }
  return differences;
}

function sortedDifference(want: readonly string[], have: readonly string[]): { missing: string[]; extra: string[] } {
  const missing: string[] = [];
  const extra: string[] = [];
  let i = 0;
  let j = 0;
  while (i < want.length || j < have.length) {
    const a = want[i];
    const b = have[j];
    if (a !== undefined && (b === undefined || a < b)) {
      missing.push(a);
      i++;
    } else if (b !== undefined && (a === undefined || b < a)) {
      extra.push(b);
      j++;
    } else {
      i++;
      j++;
    }
  }
  return { missing, extra };
}
