// The kernel dump of set elements (nft-set-elements.c) read into comparison keys: the grammar and
// its bounds, each kernel layout (rbtree start/end elements, hash keys, concatenations with their
// padded port register, pipapo ranges), and the same keys nft's own listing reads back to.
import fc from 'fast-check';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../exec.js';
import { formatInterval, mergeIntervals } from './ip-address.js';
import { NftListingError } from './nft-listing.js';
import type { NormalisedSet } from './egress-table.js';
import { buildSetElementReader, CATCH_ALL_KEY, type DumpedSet, dumpedElementKeys, expectedElementsOf, parseSetElementDump, singleOfKey, sortLike } from './set-element-reader.js';

const hexName = (name: string) => Buffer.from(name).toString('hex');
const dump = (...lines: string[]) => `${lines.join('\n')}\n`;
const INTERVAL = 4;
const TIMEOUT = 16;

describe('parsing the dump', () => {
  test('reads sets, flags, key lengths and element lines in kernel order', () => {
    const parsed = parseSetElementDump(
      dump('genid 42', `set ${hexName('dns_v4')} 4 4`, 'x 0affff36', 'e 0affff35', 'x 00000000', `set ${hexName('allow_v4_tcp_port')} 0 8`, 'e 0a00000101bb0000', 'end 4'),
      10,
    );
    expect(parsed.generation).toBe(42);
    expect([...parsed.sets.values()]).toEqual([
      { name: 'dns_v4', flags: 4, keyLength: 4, lines: ['x 0affff36', 'e 0affff35', 'x 00000000'] },
      { name: 'allow_v4_tcp_port', flags: 0, keyLength: 8, lines: ['e 0a00000101bb0000'] },
    ]);
  });

  test('an empty table dumps no sets', () => {
    expect(parseSetElementDump(dump('genid 1', 'end 0'), 10).sets.size).toBe(0);
  });

  const set = `set ${hexName('s')} 0 4`;
  test.each([
    ['no generation', dump(set, 'e 0a000001', 'end 1'), /does not start with its generation/],
    ['no end line (cut short)', dump('genid 1', set, 'e 0a000001'), /incomplete/],
    ['a count that disagrees', dump('genid 1', set, 'e 0a000001', 'end 2'), /counts 2 elements but holds 1/],
    ['an element before any set', dump('genid 1', 'e 0a000001', 'end 1'), /outside any set/],
    ['a key of the wrong length', dump('genid 1', set, 'e 0a00000101', 'end 1'), /not 4 bytes/],
    ['an end key of the wrong length', dump('genid 1', set, 'e 0a000001 0a0000', 'end 1'), /not 4 bytes/],
    ['upper-case hex', dump('genid 1', set, 'e 0A000001', 'end 1'), /malformed element line/],
    ['an unknown record', dump('genid 1', set, 'z 0a000001', 'end 1'), /malformed element line/],
    ['an interval end with a range end', dump('genid 1', set, 'x 0a000001 0a000002', 'end 1'), /not 4 bytes/],
    ['a set twice', dump('genid 1', set, set, 'end 0'), /appears twice/],
    ['a name that is not hex', dump('genid 1', 'set s 0 4', 'end 0'), /malformed set line/],
    ['a key length of 0', dump('genid 1', `set ${hexName('s')} 0 0`, 'end 0'), /key length 0 out of range/],
    ['a key length over 64 bytes', dump('genid 1', `set ${hexName('s')} 0 65`, 'end 0'), /key length 65 out of range/],
  ])('refuses %s', (_, text, message) => {
    expect(() => parseSetElementDump(text, 10)).toThrow(message);
    expect(() => parseSetElementDump(text, 10)).toThrow(NftListingError);
  });

  test('refuses more elements than the bound before holding them all', () => {
    const lines = Array.from({ length: 11 }, (_, i) => `e ${i.toString(16).padStart(8, '0')}`);
    expect(() => parseSetElementDump(dump('genid 1', set, ...lines, 'end 11'), 10)).toThrow(/more than 10 set elements/);
  });
});

const dumped = (lines: string[], flags: number, keyLength: number): DumpedSet => ({ name: 's', flags, keyLength, lines });

describe('element keys from each kernel layout', () => {
  test.each([
    // nft 1.0.6 writes an interval end at 0 into every address interval set; it ends nothing.
    ['a resolver in an rbtree set', ['x 0affff36', 'e 0affff35', 'x 00000000'], INTERVAL, 4, ['ipv4_addr'], ['10.255.255.53'], 1],
    ['networks, adjacent ones merged', ['x 0a000100', 'e 0a000000', 'x 0a00010a', 'e 0a000100', 'e cb007100', 'x cb007200'], INTERVAL, 4, ['ipv4_addr'], ['10.0.0.0-10.0.1.9', '203.0.113.0/24'], 3],
    ['an interval up to the last address (no end element)', ['e ffffff00'], INTERVAL, 4, ['ipv4_addr'], ['255.255.255.0/24'], 1],
    ['a start inside an open interval (the lookup still matches)', ['e 0a000000', 'e 0a000010', 'x 0a000020'], INTERVAL, 4, ['ipv4_addr'], ['10.0.0.0/27'], 1],
    ['an IPv6 network', ['e 20010db8010000000000000000000000', 'x 20010db8010100000000000000000000'], INTERVAL, 16, ['ipv6_addr'], ['2001:db8:100::/48'], 1],
    ['DNS answers in a hash set with timeouts', ['e c0000207', 'e c0000206'], TIMEOUT, 4, ['ipv4_addr'], ['192.0.2.6/31'], 2],
    ['address . port in a hash set', ['e 0a00000a01bb0000', 'e 0a00000201bb0000'], 0, 8, ['ipv4_addr', 'inet_service'], ['10.0.0.10 . 443', '10.0.0.2 . 443'], 2],
    ['address and port ranges (pipapo)', ['e 0a00010001bb0000 0a00010601c20000', 'e 0a00020000160000 0a0002ff00160000'], INTERVAL, 8, ['ipv4_addr', 'inet_service'], ['10.0.1.0-10.0.1.6 . 443-450', '10.0.2.0/24 . 22'], 2],
    ['IPv6 address . port', ['e 20010db800000000000000000000000101bb0000'], TIMEOUT, 20, ['ipv6_addr', 'inet_service'], ['2001:db8::1 . 443'], 1],
    ['a catch-all element', ['e 0a00000101bb0000', 'c'], 0, 8, ['ipv4_addr', 'inet_service'], [CATCH_ALL_KEY, '10.0.0.1 . 443'], 2],
  ])('%s', (_, lines, flags, keyLength, type, keys, count) => {
    expect(dumpedElementKeys(dumped(lines, flags, keyLength), type)).toEqual({ keys, count });
  });

  test.each([
    ['an interval end in a concatenation', ['x 0a00000101bb0000'], 0, 8, ['ipv4_addr', 'inet_service'], /interval end in a concatenation/],
    ['a port register with non-zero padding', ['e 0a00000101bb0001'], 0, 8, ['ipv4_addr', 'inet_service'], /non-zero padding/],
    ['a range ending before it starts', ['e 0a00000101bb0000 0a00000101ba0000'], INTERVAL, 8, ['ipv4_addr', 'inet_service'], /ends before it starts/],
    ['a key length that does not fit the type', ['e 0a000001'], 0, 4, ['ipv4_addr', 'inet_service'], /does not match its type/],
    ['an interval end in a hash set', ['x 0a000001'], 0, 4, ['ipv4_addr'], /interval element in a set without intervals/],
    ['a key type the renderer never writes', ['e 001122334455'], 0, 6, ['ether_addr'], /unexpected type/],
  ])('refuses %s', (_, lines, flags, keyLength, type, message) => {
    expect(() => dumpedElementKeys(dumped(lines, flags, keyLength), type)).toThrow(message);
  });

  test('rbtree intervals read back as the merged intervals nft was given', () => {
    // nft's layout: a start per interval, an end one past its last address unless it is the
    // last address, and an end at 0; the kernel dumps them in any order.
    const interval = fc
      .tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 4096 }))
      .map(([first, length]) => ({ first: BigInt(first), last: BigInt(Math.min(first + length, 0xffffffff)) }));
    fc.assert(
      fc.property(fc.array(interval, { maxLength: 20 }), (intervals) => {
        const merged = mergeIntervals(intervals);
        const hex = (value: bigint) => value.toString(16).padStart(8, '0');
        const lines = ['x 00000000'];
        for (const { first, last } of merged) {
          lines.push(`e ${hex(first)}`);
          if (last < 0xffffffffn) lines.push(`x ${hex(last + 1n)}`);
        }
        lines.reverse();
        const { keys, count } = dumpedElementKeys(dumped(lines, INTERVAL, 4), ['ipv4_addr']);
        expect(keys).toEqual(merged.map((m) => formatInterval({ family: 'ipv4', ...m })).sort());
        expect(count).toBe(merged.length);
      }),
    );
  });
});

describe('sorting against the intent', () => {
  test('a permutation of the expected keys comes back as a copy of them', () => {
    const expected = ['10.0.0.1 . 443', '10.0.0.10 . 443', '10.0.0.2 . 80'];
    const sorted = sortLike(['10.0.0.2 . 80', '10.0.0.1 . 443', '10.0.0.10 . 443'], expected);
    expect(sorted).toEqual(expected);
    expect(sorted).not.toBe(expected);
  });

  test.each([
    ['a different key', ['b', 'c', 'x'], ['a', 'b', 'c'], ['b', 'c', 'x']],
    ['a duplicate in place of a key', ['c', 'a', 'a'], ['a', 'b', 'c'], ['a', 'a', 'c']],
    ['one key fewer', ['c', 'a'], ['a', 'b', 'c'], ['a', 'c']],
    ['no expectation', ['c', 'a'], undefined, ['a', 'c']],
  ])('%s is sorted on its own', (_, keys, expected, sorted) => {
    expect(sortLike(keys, expected)).toEqual(sorted);
  });
});

describe('checking address . port elements against the intent by number', () => {
  const type = ['ipv4_addr', 'inet_service'];
  const intentSet = (elements: string[]): NormalisedSet => ({ name: 's', type, flags: [], elements });
  const expectedOf = (elements: string[]) => expectedElementsOf({ sets: [intentSet(elements)], chains: [], counters: [], limits: [], others: [] }).get('s')!;
  const intent = ['10.0.0.1 . 443', '10.0.0.10 . 8080', '255.255.255.255 . 65535'];
  const lines = ['e ffffffffffff0000', 'e 0a00000101bb0000', 'e 0a00000a1f900000'];

  test.each([
    ['10.0.0.1 . 443', 0x0a000001 * 65536 + 443],
    ['0.0.0.0 . 0', 0],
    ['255.255.255.255 . 65535', 0xffffffff * 65536 + 65535],
    ['10.0.0.01 . 443', undefined],
    ['10.0.0.1 . 0443', undefined],
    ['10.0.0.256 . 443', undefined],
    ['10.0.0.1 . 65536', undefined],
    ['10.0.0.1 . 443 ', undefined],
    ['10.0.0 . 443', undefined],
    ['10.0.0.1.2 . 443', undefined],
    ['10.0.0.1 .443', undefined],
    ['10.0.0.1-10.0.0.2 . 443', undefined],
    ['10.0.0.0/24 . 443', undefined],
    ['10.0.0.1 . 443-450', undefined],
    ['2001:db8::1 . 443', undefined],
  ])('%j is indexed as %p', (key, single) => {
    expect(singleOfKey(key)).toBe(single);
  });

  test('indexes a set only when every key is one canonical address and port', () => {
    expect([...expectedOf(intent).singles!]).toEqual([0x0a000001 * 65536 + 443, 0x0a00000a * 65536 + 8080, 0xffffffff * 65536 + 65535]);
    expect(expectedOf([...intent, '10.0.0.01 . 443']).singles).toBeUndefined();
  });

  test('the same pairs in kernel order read back as the intent', () => {
    expect(dumpedElementKeys(dumped(lines, 0, 8), type, expectedOf(intent))).toEqual({ keys: intent, count: 3 });
  });

  test.each([
    ['a changed port', ['e ffffffffffff0000', 'e 0a00000101bc0000', 'e 0a00000a1f900000'], ['10.0.0.1 . 444', '10.0.0.10 . 8080', '255.255.255.255 . 65535']],
    ['a duplicate in place of a pair', ['e ffffffffffff0000', 'e 0a00000101bb0000', 'e 0a00000101bb0000'], ['10.0.0.1 . 443', '10.0.0.1 . 443', '255.255.255.255 . 65535']],
    ['one pair more', [...lines, 'e 0a00000200160000'], ['10.0.0.1 . 443', '10.0.0.10 . 8080', '10.0.0.2 . 22', '255.255.255.255 . 65535']],
    ['a catch-all in place of a pair', ['e ffffffffffff0000', 'e 0a00000101bb0000', 'c'], [CATCH_ALL_KEY, '10.0.0.1 . 443', '255.255.255.255 . 65535']],
  ])('%s reads back as what the kernel holds', (_, changed, keys) => {
    expect(dumpedElementKeys(dumped(changed, 0, 8), type, expectedOf(intent)).keys).toEqual(keys);
  });

  test('non-zero padding is refused on the numeric path too', () => {
    expect(() => dumpedElementKeys(dumped(['e 0a00000101bb0001', ...lines.slice(1)], 0, 8), type, expectedOf(intent))).toThrow(/non-zero padding/);
  });
});

describe('the native reader', () => {
  let cacheDir: string;
  beforeAll(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'secai-reader-'));
  });
  afterAll(async () => {
    await rm(cacheDir, { recursive: true, force: true });
  });

  test('compiles with warnings as errors, once per source', async () => {
    const first = await buildSetElementReader({ exec: runCommand, cacheDir });
    expect(await buildSetElementReader({ exec: runCommand, cacheDir })).toBe(first);
    const usage = await runCommand(first, []);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/usage: nft-set-elements FAMILY TABLE MAX_ELEMENTS/);
  });

  test.each([
    ['an unknown family', ['arp', 'secai', '10']],
    ['an empty table name', ['inet', '', '10']],
    ['a bound that is not a number', ['inet', 'secai', '10x']],
    ['a bound over ten million', ['inet', 'secai', '10000001']],
  ])('refuses %s', async (_, args) => {
    const reader = await buildSetElementReader({ exec: runCommand, cacheDir });
    const result = await runCommand(reader, args);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
  });

  test('a build failure names the packages it needs', async () => {
    await writeFile(join(cacheDir, 'not-a-compiler'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    await expect(buildSetElementReader({ exec: runCommand, cacheDir, compiler: join(cacheDir, 'not-a-compiler') })).rejects.toThrow(
      /Debian packages gcc, libmnl-dev, libnftnl-dev/,
    );
  });
});
