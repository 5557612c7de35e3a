// Reads the elements of the egress table's sets straight from the kernel with nft-set-elements.c
// (beside this file), and turns them into the comparison keys of set-elements.ts. nft 1.0.6
// decodes every element of every set in userspace on any listing of a table (~1 s at 100,000);
// the dump takes ~0.1 s, and the keys come out exactly as the read-back of nft's own
// listing spells them, so the comparison with the intent stays element for element.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { CommandError } from '../exec.js';
import { buildNativeHelper, type NativeHelperBuild } from '../sandbox/native-helper.js';
import type { NormalisedTable } from './egress-table.js';
import { type AddressInterval, formatInterval, type IpFamily } from './ip-address.js';
import { NftListingError } from './nft-listing.js';
import { type NftTarget, runInTarget } from './nft-target.js';
import { elementKeys, formatPortInterval } from './set-elements.js';

export const SET_ELEMENT_READER_SOURCE = fileURLToPath(new URL('./nft-set-elements.c', import.meta.url));

/** Debian packages the reader needs to build. */
export const SET_ELEMENT_READER_PACKAGES = ['gcc', 'libmnl-dev', 'libnftnl-dev'];

/** `$SECAI_NATIVE_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/secai-fleet/native`. */
export function nativeHelperCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SECAI_NATIVE_CACHE) return env.SECAI_NATIVE_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'secai-fleet', 'native');
}

/** Returns the path of the compiled reader, compiling it first when the cache has no match. */
export function buildSetElementReader(build: NativeHelperBuild): Promise<string> {
  return buildNativeHelper(
    { name: 'nft-set-elements', source: SET_ELEMENT_READER_SOURCE, libraries: ['-lnftnl', '-lmnl'], packages: SET_ELEMENT_READER_PACKAGES },
    build,
  );
}

/**
 * The target with the reader when it builds on this machine. Without it the read-back is still
 * exact, through nft's full listing, but takes ~1 s per 100,000 elements with nft 1.0.6.
 */
export async function withSetElementReader(target: NftTarget, build: NativeHelperBuild, logger: Logger): Promise<NftTarget> {
  try {
    return { ...target, setElementReader: await buildSetElementReader(build) };
  } catch (error) {
    logger.warn({ error: (error as Error).message }, 'no set element reader: the egress read-back lists set elements through nft, slowly');
    return target;
  }
}

// The kernel's set flags (linux/netfilter/nf_tables.h).
const NFT_SET_INTERVAL = 0x4;

/** The intent's elements of one set, indexed for checking a dump against them. */
export interface ExpectedSet {
  /** The comparison keys, sorted and distinct. */
  keys: readonly string[];
  /** When every key is an IPv4 address with one port: each as address × 65536 + port, ascending. */
  singles?: Float64Array;
}

// One index per intent: the same intent is checked on every resync until the plan changes, and
// indexing 100,000 keys costs ~0.1 s. Intents are never changed once rendered.
const expectedByIntent = new WeakMap<NormalisedTable, Map<string, ExpectedSet>>();

/** Indexes the intent's set elements, so that checking a dump against them compares numbers. */
export function expectedElementsOf(intent: NormalisedTable): Map<string, ExpectedSet> {
  const cached = expectedByIntent.get(intent);
  if (cached) return cached;
  const expected = new Map<string, ExpectedSet>();
  expectedByIntent.set(intent, expected);
  for (const set of intent.sets) {
    const ipv4Port = set.type.length === 2 && set.type[0] === 'ipv4_addr' && set.type[1] === 'inet_service';
    expected.set(set.name, { keys: set.elements, singles: ipv4Port ? singlesOf(set.elements) : undefined });
  }
  return expected;
}

function singlesOf(keys: readonly string[]): Float64Array | undefined {
  const singles = new Float64Array(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const single = singleOfKey(keys[i]!);
    if (single === undefined) return undefined;
    singles[i] = single;
  }
  singles.sort();
  for (let i = 1; i < singles.length; i++) if (singles[i] === singles[i - 1]) return undefined;
  return singles;
}

/**
 * `a.b.c.d . port` as address × 65536 + port, for canonical spellings only (no leading zeros), so
 * that a key and its number are one to one; undefined for anything else. A hand-rolled scan:
 * the intent holds 100,000 of them.
 */
export function singleOfKey(key: string): number | undefined {
  let address = 0;
  let at = 0;
  for (let octet = 0; octet < 4; octet++) {
    const value = decimalAt(key, at, 3);
    if (value === undefined || value.value > 255) return undefined;
    address = address * 256 + value.value;
    at = value.end;
    if (octet < 3) {
      if (key.charCodeAt(at) !== 46) return undefined;
      at++;
    }
  }
  if (key.charCodeAt(at) !== 32 || key.charCodeAt(at + 1) !== 46 || key.charCodeAt(at + 2) !== 32) return undefined;
  const port = decimalAt(key, at + 3, 5);
  if (port === undefined || port.end !== key.length || port.value > 65535) return undefined;
  return address * 65536 + port.value;
}

/** A decimal of at most `digits` digits at `at`, without a leading zero. */
function decimalAt(text: string, at: number, digits: number): { value: number; end: number } | undefined {
  let value = 0;
  let end = at;
  while (end < text.length && end - at < digits + 1) {
    const code = text.charCodeAt(end);
    if (code < 48 || code > 57) break;
    value = value * 10 + (code - 48);
    end++;
  }
  const length = end - at;
  if (length === 0 || length > digits || (length > 1 && text.charCodeAt(at) === 48)) return undefined;
  return { value, end };
}

/** One named set as the kernel dumped it: element lines (`e KEY [KEYEND]`, `x KEY`, `c`) in kernel order. */
export interface DumpedSet {
  name: string;
  flags: number;
  keyLength: number;
  lines: string[];
}

export interface SetElementDump {
  /** The ruleset generation the dump belongs to. */
  generation: number;
  sets: Map<string, DumpedSet>;
}

const MAX_KEY_LENGTH = 64;
const MAX_NAME_LENGTH = 255;
const MAX_SETS = 4096;
const ELEMENT_LINE = /^(?:[ex] [0-9a-f]+(?: [0-9a-f]+)?|c)$/;
const EXIT_CHANGED = 3;
const MAX_READS = 3;
// The longest key with its range end, in hex (the renderer's sets need at most 2 x 40).
const MAX_LINE_BYTES = 2 * (2 * MAX_KEY_LENGTH) + 4;

/** Parses the reader's output; throws NftListingError on anything but a complete, well-formed dump. */
export function parseSetElementDump(text: string, maxElements: number): SetElementDump {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const header = /^genid (\d{1,10})$/.exec(lines[0] ?? '');
  if (!header) throw new NftListingError('the set element dump does not start with its generation');
  const footer = /^end (\d{1,10})$/.exec(lines[lines.length - 1] ?? '');
  if (!footer || lines.length < 2) throw new NftListingError('the set element dump is incomplete');
  const sets = new Map<string, DumpedSet>();
  let current: DumpedSet | undefined;
  let total = 0;
  for (let i = 1; i < lines.length - 1; i++) {
    const line = lines[i]!;
    if (line.startsWith('set ')) {
      current = setHeader(line);
      if (sets.has(current.name)) throw new NftListingError(`set ${current.name} appears twice in the element dump`);
      if (sets.size >= MAX_SETS) throw new NftListingError(`the element dump holds more than ${MAX_SETS} sets`);
      sets.set(current.name, current);
      continue;
    }
    if (!current) throw new NftListingError('the element dump holds an element outside any set');
    if (line.length > MAX_LINE_BYTES || !ELEMENT_LINE.test(line)) throw new NftListingError(`set ${current.name}: malformed element line ${JSON.stringify(line.slice(0, 80))}`);
    if (line !== 'c') {
      const hexLength = 2 * current.keyLength;
      if (line.length !== 2 + hexLength && !(line[0] === 'e' && line.length === 3 + 2 * hexLength)) {
        throw new NftListingError(`set ${current.name}: an element key is not ${current.keyLength} bytes`);
      }
    }
    if (++total > maxElements) throw new NftListingError(`the kernel holds more than ${maxElements} set elements`);
    current.lines.push(line);
  }
  if (Number(footer[1]) !== total) throw new NftListingError(`the element dump counts ${footer[1]} elements but holds ${total}`);
  return { generation: Number(header[1]), sets };
}

function setHeader(line: string): DumpedSet {
  const match = /^set ((?:[0-9a-f]{2})+) (\d{1,10}) (\d{1,3})$/.exec(line);
  if (!match || match[1]!.length > 2 * MAX_NAME_LENGTH) throw new NftListingError(`malformed set line ${JSON.stringify(line.slice(0, 80))}`);
  const keyLength = Number(match[3]);
  if (keyLength < 1 || keyLength > MAX_KEY_LENGTH) throw new NftListingError(`set key length ${keyLength} out of range`);
  return { name: Buffer.from(match[1]!, 'hex').toString('utf8'), flags: Number(match[2]), keyLength, lines: [] };
}

const ADDRESS_BYTES: Record<IpFamily, number> = { ipv4: 4, ipv6: 16 };
const ALL_ONES: Record<IpFamily, bigint> = { ipv4: (1n << 32n) - 1n, ipv6: (1n << 128n) - 1n };
/** What a catch-all element reads back as: never a key the renderer writes. */
export const CATCH_ALL_KEY = '*';

/**
 * The comparison keys of a dumped set of the given nft type, sorted, and how many elements it
 * holds as nft would list them (intervals, not their kernel start and end elements).
 */
export function dumpedElementKeys(set: DumpedSet, type: readonly string[], expected?: ExpectedSet): { keys: string[]; count: number } {
  const family: IpFamily | undefined = type[0] === 'ipv4_addr' ? 'ipv4' : type[0] === 'ipv6_addr' ? 'ipv6' : undefined;
  if (!family || type.length > 2 || (type.length === 2 && type[1] !== 'inet_service')) {
    throw new NftListingError(`set ${set.name}: unexpected type ${type.join(' . ')}`);
  }
  const addressHex = 2 * ADDRESS_BYTES[family];
  // A concatenation's fields each take a whole 32-bit register: the port is 2 bytes and 2 of padding.
  const expectedLength = type.length === 1 ? ADDRESS_BYTES[family] : ADDRESS_BYTES[family] + 4;
  if (set.keyLength !== expectedLength) throw new NftListingError(`set ${set.name}: key length ${set.keyLength} does not match its type ${type.join(' . ')}`);
  if (type.length === 1) return addressKeys(set, family, expected?.keys);
  if (family === 'ipv4' && expected?.singles && matchesSingles(set, expected.singles)) return { keys: [...expected.keys], count: set.lines.length };

  const keys: string[] = [];
  const singleIpv4Line = 2 + 2 * set.keyLength;
  for (const line of set.lines) {
    if (line === 'c') {
      keys.push(CATCH_ALL_KEY);
      continue;
    }
    if (line[0] !== 'e') throw new NftListingError(`set ${set.name}: an interval end in a concatenation`);
    if (family === 'ipv4' && line.length === singleIpv4Line) {
      const single = singleOf(line, set.name);
      keys.push(`${formatIpv4(Math.floor(single / 65536))} . ${single % 65536}`);
      continue;
    }
    const key = line.slice(2, 2 + 2 * set.keyLength);
    const end = line.length > 2 + 2 * set.keyLength ? line.slice(3 + 2 * set.keyLength) : key;
    const port = { first: portOf(key, addressHex, set.name), last: portOf(end, addressHex, set.name) };
    if (port.last < port.first) throw new NftListingError(`set ${set.name}: a port range ends before it starts`);
    const first = BigInt(`0x${key.slice(0, addressHex)}`);
    const last = BigInt(`0x${end.slice(0, addressHex)}`);
    if (last < first) throw new NftListingError(`set ${set.name}: an address range ends before it starts`);
    keys.push(`${formatInterval({ family, first, last })} . ${formatPortInterval(port)}`);
  }
  // No deduplication: the kernel holds no duplicates, and a dump that did would show as a difference.
  return { keys: sortLike(keys, expected?.keys), count: set.lines.length };
}

/** An `ipv4_addr . inet_service` hash element as address × 65536 + port: exact in a double. */
function singleOf(line: string, setName: string): number {
  if (hexAt(line, 14) !== 0 || hexAt(line, 16) !== 0) throw new NftListingError(`set ${setName}: a port field has non-zero padding`);
  return (((hexAt(line, 2) * 256 + hexAt(line, 4)) * 256 + hexAt(line, 6)) * 256 + hexAt(line, 8)) * 65536 + hexAt(line, 10) * 256 + hexAt(line, 12);
}

function formatIpv4(value: number): string {
  return `${Math.floor(value / 16777216)}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

/**
 * Whether the dump holds exactly the expected address · port pairs, each once: both sides as
 * sorted numbers, so no key text is built unless something differs.
 */
function matchesSingles(set: DumpedSet, singles: Float64Array): boolean {
  if (set.lines.length !== singles.length) return false;
  const dumped = new Float64Array(set.lines.length);
  const length = 2 + 2 * set.keyLength;
  for (let i = 0; i < set.lines.length; i++) {
    const line = set.lines[i]!;
    if (line.length !== length || line[0] !== 'e') return false;
    dumped[i] = singleOf(line, set.name);
  }
  dumped.sort();
  for (let i = 0; i < dumped.length; i++) if (dumped[i] !== singles[i]) return false;
  return true;
}

/** The byte spelled by two lowercase hex digits at `at` (the dump's grammar was checked). */
function hexAt(text: string, at: number): number {
  return nibble(text.charCodeAt(at)) * 16 + nibble(text.charCodeAt(at + 1));
}

// Declared once: a closure made per call is slow where the loader wraps functions to keep names.
function nibble(code: number): number {
  return code <= 57 ? code - 48 : code - 87;
}

/**
 * The keys sorted. When they are the expected (sorted, distinct) keys in another order, which is
 * what a verified read-back finds, the expected array is copied instead: a set lookup per key
 * costs less than sorting 100,000 strings.
 */
export function sortLike(keys: string[], expected?: readonly string[]): string[] {
  if (expected && expected.length === keys.length) {
    const remaining = new Set(expected);
    if (remaining.size === expected.length && keys.every((key) => remaining.delete(key)) && remaining.size === 0) return [...expected];
  }
  return keys.sort();
}

function portOf(key: string, addressHex: number, setName: string): number {
  if (key.slice(addressHex + 4, addressHex + 8) !== '0000') throw new NftListingError(`set ${setName}: a port field has non-zero padding`);
  return Number.parseInt(key.slice(addressHex, addressHex + 4), 16);
}

/**
 * Address-only sets. Interval sets (the kernel's rbtree) hold a start element per interval and an
 * end element one past its last address, flagged as such; a lookup matches when the greatest
 * element at or below the address is a start. nft adds an end element at 0, which ends nothing.
 */
function addressKeys(set: DumpedSet, family: IpFamily, expected?: readonly string[]): { keys: string[]; count: number } {
  const hexLength = 2 * set.keyLength;
  const intervals: AddressInterval[] = [];
  let catchAll = false;
  if ((set.flags & NFT_SET_INTERVAL) === 0) {
    for (const line of set.lines) {
      if (line === 'c') catchAll = true;
      else if (line[0] !== 'e' || line.length !== 2 + hexLength) throw new NftListingError(`set ${set.name}: an interval element in a set without intervals`);
      else {
        const value = BigInt(`0x${line.slice(2)}`);
        intervals.push({ family, first: value, last: value });
      }
    }
  } else {
    const bounds: { at: bigint; end: boolean }[] = [];
    for (const line of set.lines) {
      if (line === 'c') {
        catchAll = true;
      } else if (line.length > 2 + hexLength) {
        // A start with its own end (how newer nft writes intervals): one interval on its own.
        const first = BigInt(`0x${line.slice(2, 2 + hexLength)}`);
        const last = BigInt(`0x${line.slice(3 + hexLength)}`);
        if (last < first) throw new NftListingError(`set ${set.name}: an interval ends before it starts`);
        intervals.push({ family, first, last });
      } else {
        bounds.push({ at: BigInt(`0x${line.slice(2)}`), end: line[0] === 'x' });
      }
    }
    // At one address, an end (of the interval below) comes before a start.
    bounds.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.end === b.end ? 0 : a.end ? -1 : 1));
    let open: bigint | undefined;
    for (const { at, end } of bounds) {
      if (!end) open ??= at;
      else if (open !== undefined) {
        intervals.push({ family, first: open, last: at - 1n });
        open = undefined;
      }
    }
    if (open !== undefined) intervals.push({ family, first: open, last: ALL_ONES[family] });
  }
  const keys = elementKeys(intervals.map((address) => ({ address })));
  if (catchAll) keys.push(CATCH_ALL_KEY);
  return { keys: sortLike(keys, expected), count: intervals.length + (catchAll ? 1 : 0) };
}

/**
 * Dumps every named set of the table. A dump the ruleset changed under is read again, a few
 * times; the kernel flags such a dump, and the reader checks the generation around it.
 */
export async function readSetElements(target: NftTarget, reader: string, family: string, table: string, maxElements: number): Promise<SetElementDump> {
  for (let read = 1; ; read++) {
    try {
      const output = await runInTarget(target, reader, [family, table, String(maxElements)]);
      return parseSetElementDump(output, maxElements);
    } catch (error) {
      if (!(error instanceof CommandError && error.result.code === EXIT_CHANGED) || read >= MAX_READS) throw error;
    }
  }
}

/**
 * The kernel's nftables ruleset generation in the target's namespace. Every committed change to any
 * table, by anyone, moves it; reading it is one netlink round trip, so the drift check polls it and
 * reads the whole table back only when it moved.
 */
export async function readRulesetGeneration(target: NftTarget, reader: string): Promise<number> {
  const output = await runInTarget(target, reader, ['--genid']);
  const match = /^genid (\d{1,10})\n$/.exec(output);
  if (!match) throw new NftListingError(`the set element reader printed no generation: ${JSON.stringify(output.slice(0, 80))}`);
  return Number(match[1]);
}
