// Reduces the JSON of `nft -j list table inet secai` (or of a terse ruleset listing, with the set
// elements read elsewhere) to the normalised table, and reads the named counters. Rules are
// printed back as nft's text spelling of each statement, the spelling the renderer writes, so a
// rule compares as one string; a statement of a kind the renderer never writes prints as
// `?{json}` and so can never match. Every count and depth is bounded: the listing
// reflects kernel state that another root process could have filled.
import { canonicalJson } from '../../../api/canonical-json.js';
import { EGRESS_TABLE_FAMILY, EGRESS_TABLE_NAME, type NormalisedChain, type NormalisedLimit, type NormalisedSet, type NormalisedTable, sortTable } from './egress-table.js';
import { type AddressInterval, AddressError, formatInterval, type IpFamily, parseInterval, parseIpv4Number } from './ip-address.js';
import { elementKeys, formatPortInterval, type PortInterval } from './set-elements.js';

export const MAX_LISTED_ELEMENTS = 1_000_000;
export const MAX_LISTED_RULES = 10_000;
export const MAX_LISTED_OBJECTS = 10_000;
const MAX_EXPRESSION_DEPTH = 16;
const MAX_UNKNOWN_TEXT = 512;

export class NftListingError extends Error {
  override name = 'NftListingError';
}

export interface CounterValue {
  packets: number;
  bytes: number;
}

export interface EgressListing {
  table: NormalisedTable;
  /** Named counters and their values. */
  counters: Map<string, CounterValue>;
  /** Elements per set, as the kernel holds them (before merging into comparison keys). */
  elementCounts: Map<string, number>;
  /** Whether the listing holds the `inet secai` table at all. */
  tablePresent: boolean;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: Json | undefined): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unknown(value: Json): string {
  const text = canonicalJson(value);
  return `?${text.length > MAX_UNKNOWN_TEXT ? `${text.slice(0, MAX_UNKNOWN_TEXT)}...` : text}`;
}

export interface ListingOptions {
  /** A listing of a whole family's ruleset: objects of other tables are skipped rather than refused. */
  ruleset?: boolean;
  /**
   * The comparison keys and element count of each set, from a source other than the listing (a
   * terse listing prints no elements). Throws when it has no elements for the set.
   */
  elementsOf?: (name: string, type: string[]) => { keys: string[]; count: number };
}

export function parseNftListing(text: string, options: ListingOptions = {}): EgressListing {
  let document: Json;
  try {
    document = JSON.parse(text) as Json;
  } catch (error) {
    throw new NftListingError(`nft printed invalid JSON: ${(error as Error).message}`);
  }
  const items = isObject(document) ? document.nftables : undefined;
  if (!Array.isArray(items)) throw new NftListingError('nft JSON has no "nftables" array');

  const sets: NormalisedSet[] = [];
  const chains = new Map<string, NormalisedChain>();
  const counters = new Map<string, CounterValue>();
  const limits: NormalisedLimit[] = [];
  const others: string[] = [];
  const elementCounts = new Map<string, number>();
  let elementTotal = 0;
  let ruleTotal = 0;
  let objectTotal = 0;
  let tablePresent = false;

  for (const item of items) {
    if (!isObject(item)) throw new NftListingError('nft JSON holds a non-object item');
    const [kind, body] = Object.entries(item)[0] ?? [];
    if (kind === undefined || !isObject(body)) throw new NftListingError('nft JSON holds an empty item');
    if (kind === 'metainfo') continue;
    if (kind === 'table') {
      if (body.name === EGRESS_TABLE_NAME && body.family === EGRESS_TABLE_FAMILY) tablePresent = true;
      continue;
    }
    if (body.table !== EGRESS_TABLE_NAME || body.family !== EGRESS_TABLE_FAMILY) {
      if (options.ruleset) continue;
      throw new NftListingError(`nft listed a ${kind} of table ${String(body.family)} ${String(body.table)}`);
    }
    if (kind !== 'rule' && ++objectTotal > MAX_LISTED_OBJECTS) throw new NftListingError(`nft listed more than ${MAX_LISTED_OBJECTS} objects`);
    const name = typeof body.name === 'string' ? body.name : '';
    switch (kind) {
      case 'set': {
        const type = (Array.isArray(body.type) ? body.type : [body.type]).map(String);
        const flags = (Array.isArray(body.flags) ? body.flags : []).map(String);
        let elements: string[];
        let count: number;
        if (options.elementsOf) {
          ({ keys: elements, count } = options.elementsOf(name, type));
        } else {
          const listed = Array.isArray(body.elem) ? body.elem : [];
          count = listed.length;
          if (elementTotal + count > MAX_LISTED_ELEMENTS) throw new NftListingError(`nft listed more than ${MAX_LISTED_ELEMENTS} set elements`);
          elements = elementKeysOf(listed, type, name);
        }
        elementTotal += count;
        if (elementTotal > MAX_LISTED_ELEMENTS) throw new NftListingError(`nft listed more than ${MAX_LISTED_ELEMENTS} set elements`);
        elementCounts.set(name, count);
        sets.push({ name, type, flags, size: typeof body.size === 'number' ? body.size : undefined, elements });
        break;
      }
      case 'chain':
        chains.set(name, {
          name,
          type: typeof body.type === 'string' ? body.type : undefined,
          hook: typeof body.hook === 'string' ? body.hook : undefined,
          priority: typeof body.prio === 'number' ? body.prio : undefined,
          policy: typeof body.policy === 'string' ? body.policy : undefined,
          rules: [],
        });
        break;
      case 'rule': {
        if (++ruleTotal > MAX_LISTED_RULES) throw new NftListingError(`nft listed more than ${MAX_LISTED_RULES} rules`);
        const chain = chains.get(typeof body.chain === 'string' ? body.chain : '');
        if (!chain) throw new NftListingError(`nft listed a rule of an unknown chain ${String(body.chain)}`);
        const statements = Array.isArray(body.expr) ? body.expr : [];
        chain.rules.push(statements.map((statement) => statementText(statement)).join(' '));
        break;
      }
      case 'counter':
        counters.set(name, { packets: nonNegative(body.packets), bytes: nonNegative(body.bytes) });
        break;
      case 'limit':
        limits.push({ name, rate: nonNegative(body.rate), per: String(body.per), burst: nonNegative(body.burst) });
        break;
      default:
        others.push(`${kind} ${name}`);
    }
  }
  const table = sortTable({ sets, chains: [...chains.values()], counters: [...counters.keys()], limits, others });
  return { table, counters, elementCounts, tablePresent };
}

function nonNegative(value: Json | undefined): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0;
}

/** Comparison keys of a listed set's elements (set-elements.ts), sorted. */
function elementKeysOf(listed: readonly Json[], type: string[], setName: string): string[] {
  const family: IpFamily | undefined = type[0] === 'ipv4_addr' ? 'ipv4' : type[0] === 'ipv6_addr' ? 'ipv6' : undefined;
  if (!family || type.length > 2 || (type.length === 2 && type[1] !== 'inet_service')) {
    throw new NftListingError(`set ${setName}: unexpected type ${type.join(' . ')}`);
  }
  // Timeouts, expiry and per-element counters wrap the value; only the value is compared.
  const valueOf = (element: Json) => (isObject(element) && isObject(element.elem) ? element.elem.val : element);
  if (type.length === 1) {
    return elementKeys(
      listed.map((element) => {
        const value = valueOf(element) ?? null;
        if (isObject(value) && value.concat !== undefined) throw new NftListingError(`set ${setName}: an element does not match its type ${type[0]}`);
        return { address: addressField(value, family, setName) };
      }),
    );
  }
  const keys = listed.map((element) => {
    const value = valueOf(element);
    const fields = isObject(value) && Array.isArray(value.concat) ? value.concat : undefined;
    if (!fields || fields.length !== 2) throw new NftListingError(`set ${setName}: an element does not match its type ${type.join(' . ')}`);
    return `${addressKey(fields[0]!, family, setName)} . ${formatPortInterval(portField(fields[1]!, setName))}`;
  });
  // No deduplication: the kernel holds no duplicates, and a listing that did would show as a difference.
  return keys.sort();
}

/** A single IPv4 address nft printed is its own key (the scan accepts canonical text only). */
function addressKey(field: Json, family: IpFamily, setName: string): string {
  if (family === 'ipv4' && typeof field === 'string' && parseIpv4Number(field) !== undefined) return field;
  return formatInterval(addressField(field, family, setName));
}

function addressField(field: Json, family: IpFamily, setName: string): AddressInterval {
  let text: string | undefined;
  if (typeof field === 'string') text = field;
  else if (isObject(field) && isObject(field.prefix) && typeof field.prefix.addr === 'string') text = `${field.prefix.addr}/${String(field.prefix.len)}`;
  else if (isObject(field) && Array.isArray(field.range) && field.range.length === 2) text = `${String(field.range[0])}-${String(field.range[1])}`;
  try {
    const interval = text === undefined ? undefined : parseInterval(text);
    if (interval && interval.family === family) return interval;
  } catch (error) {
    if (!(error instanceof AddressError)) throw error;
  }
  throw new NftListingError(`set ${setName}: unreadable address element ${unknown(field)}`);
}

function portField(field: Json, setName: string): PortInterval {
  const port = (value: Json | undefined) => (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 65535 ? value : undefined);
  const single = port(field);
  if (single !== undefined) return { first: single, last: single };
  if (isObject(field) && Array.isArray(field.range)) {
    const first = port(field.range[0]);
    const last = port(field.range[1]);
    if (first !== undefined && last !== undefined) return { first, last };
  }
  throw new NftListingError(`set ${setName}: unreadable port element ${unknown(field)}`);
}

// nft prints interface names quoted and these meta keys without the `meta` keyword.
const BARE_META_KEYS = new Set(['iif', 'oif', 'iifname', 'oifname', 'mark', 'skuid', 'skgid', 'nfproto']);
const QUOTED_META_KEYS = new Set(['iif', 'oif', 'iifname', 'oifname']);

function expressionText(expression: Json, depth = 0): string {
  if (depth > MAX_EXPRESSION_DEPTH) return unknown('too deep');
  if (typeof expression === 'number') return String(expression);
  if (typeof expression === 'string') return expression;
  if (Array.isArray(expression)) return expression.map((item) => expressionText(item, depth + 1)).join(',');
  if (!isObject(expression)) return unknown(expression);
  if (isObject(expression.payload)) return `${String(expression.payload.protocol)} ${String(expression.payload.field)}`;
  if (isObject(expression.meta)) {
    const key = String(expression.meta.key);
    return BARE_META_KEYS.has(key) ? key : `meta ${key}`;
  }
  if (isObject(expression.ct)) return `ct ${String(expression.ct.key)}`;
  if (Array.isArray(expression.concat)) return expression.concat.map((item) => expressionText(item, depth + 1)).join(' . ');
  if (Array.isArray(expression.set)) return `{ ${expression.set.map((item) => expressionText(item, depth + 1)).join(', ')} }`;
  if (Array.isArray(expression.range) && expression.range.length === 2) {
    return `${expressionText(expression.range[0]!, depth + 1)}-${expressionText(expression.range[1]!, depth + 1)}`;
  }
  if (isObject(expression.prefix)) return `${expressionText(expression.prefix.addr ?? null, depth + 1)}/${String(expression.prefix.len)}`;
  return unknown(expression);
}

function statementText(statement: Json): string {
  if (!isObject(statement)) return unknown(statement);
  const entries = Object.entries(statement);
  if (entries.length !== 1) return unknown(statement);
  const [kind, body] = entries[0]!;
  switch (kind) {
    case 'match': {
      if (!isObject(body) || body.left === undefined || body.right === undefined) return unknown(statement);
      const left = expressionText(body.left);
      const quoted = isObject(body.left) && isObject(body.left.meta) && QUOTED_META_KEYS.has(String(body.left.meta.key)) && typeof body.right === 'string';
      const right = quoted ? JSON.stringify(body.right) : expressionText(body.right);
      // `in` is how JSON spells a flag test such as `ct state established,related`.
      const op = body.op === '==' || body.op === 'in' ? '' : `${String(body.op)} `;
      return `${left} ${op}${right}`;
    }
    case 'counter':
      if (typeof body === 'string') return `counter name ${JSON.stringify(body)}`;
      return isObject(body) ? 'counter' : unknown(statement);
    case 'limit':
      if (typeof body === 'string') return `limit name ${JSON.stringify(body)}`;
      if (isObject(body) && typeof body.rate === 'number' && typeof body.per === 'string' && body.rate_unit === undefined && body.inv === undefined) {
        // nft leaves out the default burst of 5 packets.
        const burst = typeof body.burst === 'number' && body.burst !== 5 ? ` burst ${body.burst} packets` : '';
        return `limit rate ${body.rate}/${body.per}${burst}`;
      }
      return unknown(statement);
    case 'log': {
      if (!isObject(body)) return unknown(statement);
      const parts = ['log'];
      if (typeof body.prefix === 'string') parts.push(`prefix ${JSON.stringify(body.prefix)}`);
      if (typeof body.level === 'string') parts.push(`level ${body.level}`);
      if (Object.keys(body).some((key) => key !== 'prefix' && key !== 'level')) return unknown(statement);
      return parts.join(' ');
    }
    case 'accept':
    case 'drop':
    case 'return':
    case 'continue':
      return body === null ? kind : unknown(statement);
    case 'jump':
    case 'goto':
      return isObject(body) && typeof body.target === 'string' ? `${kind} ${body.target}` : unknown(statement);
    case 'reject':
      if (body === null) return 'reject';
      if (isObject(body) && typeof body.type === 'string') {
        return body.expr === undefined ? `reject with ${body.type}` : `reject with ${body.type} ${expressionText(body.expr)}`;
      }
      return unknown(statement);
    case 'redirect':
      if (isObject(body) && typeof body.port === 'number' && Object.keys(body).length === 1) return `redirect to :${body.port}`;
      return unknown(statement);
    default:
      return unknown(statement);
  }
}
