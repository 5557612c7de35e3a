import fc from 'fast-check';
import { formatAddress, formatInterval, mergeIntervals, parseAddress, parseInterval } from './ip-address.js';
import { disjointRectangles, elementKeys } from './set-elements.js';

test.each([
  ['10.0.0.1', 'ipv4', '10.0.0.1'],
  ['2001:db8:0:0:1:0:0:1', 'ipv6', '2001:db8::1:0:0:1'],
  ['2001:DB8::0:1', 'ipv6', '2001:db8::1'],
  ['::', 'ipv6', '::'],
  ['::1', 'ipv6', '::1'],
  ['fe80::', 'ipv6', 'fe80::'],
  ['1:0:0:2:0:0:0:3', 'ipv6', '1:0:0:2::3'],
  ['1:2:3:4:5:6:7:8', 'ipv6', '1:2:3:4:5:6:7:8'],
  ['1:0:2:3:4:5:6:7', 'ipv6', '1:0:2:3:4:5:6:7'],
  ['::ffff:192.0.2.1', 'ipv6', '::ffff:c000:201'],
])('parses %s as %s and prints it the RFC 5952 way', (text, family, canonical) => {
  const parsed = parseAddress(text)!;
  expect(parsed.family).toBe(family);
  expect(formatAddress(parsed.family, parsed.value)).toBe(canonical);
});

test.each(['', '1.2.3', '1.2.3.4.5', '01.2.3.4', '256.0.0.1', '1::2::3', '1:2:3:4:5:6:7:8:9', 'fe80::1%eth0', 'g::1', '1:2:3:4:5:6:7::8:9'])('rejects %j', (text) => {
  expect(parseAddress(text)).toBeUndefined();
});

test.each([
  ['10.0.0.0/8', '10.0.0.0/8'],
  ['10.0.0.5-10.0.0.5', '10.0.0.5'],
  ['10.0.0.0-10.0.0.255', '10.0.0.0/24'],
  ['10.0.0.1-10.0.0.9', '10.0.0.1-10.0.0.9'],
  ['2001:db8::/32', '2001:db8::/32'],
  ['0.0.0.0/0', '0.0.0.0/0'],
])('interval %s prints as %s', (text, printed) => {
  expect(formatInterval(parseInterval(text))).toBe(printed);
});

test('merging joins overlapping and adjacent intervals only', () => {
  const merged = mergeIntervals(['10.0.0.0/25', '10.0.0.128/25', '10.0.1.5', '10.0.0.7', '10.0.2.0/24'].map(parseInterval));
  expect(merged.map((interval) => formatInterval({ family: 'ipv4', ...interval }))).toEqual(['10.0.0.0/24', '10.0.1.5', '10.0.2.0/24']);
});

test('address-only keys are merged intervals whatever the spelling; concatenations are kept per element', () => {
  const spelled = (texts: string[]) => elementKeys(texts.map((text) => ({ address: parseInterval(text) })));
  expect(spelled(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.0'])).toEqual(spelled(['10.0.0.0/30']));
  expect(spelled(['2001:db8::/127'])).toEqual(spelled(['2001:db8:0:0:0:0:0:0', '2001:db8::1']));
  const concat = elementKeys([{ address: parseInterval('10.0.0.1'), port: { first: 80, last: 90 } }]);
  expect(concat).toEqual(['10.0.0.1 . 80-90']);
});

test('disjoint rectangles cover exactly the pairs of the input and never overlap', () => {
  // A small universe (32 addresses x 16 ports) where every pair can be checked.
  const rectangle = fc
    .tuple(fc.integer({ min: 0, max: 31 }), fc.integer({ min: 0, max: 31 }), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 16 }))
    .map(([a, b, p, q]) => ({
      address: { family: 'ipv4' as const, first: BigInt(Math.min(a, b)), last: BigInt(Math.max(a, b)) },
      port: { first: Math.min(p, q), last: Math.max(p, q) },
    }));
  fc.assert(
    fc.property(fc.array(rectangle, { maxLength: 12 }), (rectangles) => {
      const pieces = disjointRectangles('ipv4', rectangles);
      for (let address = 0n; address < 32n; address++) {
        for (let port = 1; port <= 16; port++) {
          const inside = (r: { address: { first: bigint; last: bigint }; port?: { first: number; last: number } }) =>
            r.address.first <= address && address <= r.address.last && r.port!.first <= port && port <= r.port!.last;
          const wanted = rectangles.some(inside);
          const covering = pieces.filter(inside).length;
          if (covering !== (wanted ? 1 : 0)) return false;
        }
      }
      return true;
    }),
  );
});
