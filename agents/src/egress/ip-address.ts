// IP addresses and networks as numeric intervals. Rendering and read-back both reduce set elements
// to merged intervals of these numbers, so nft's own spelling of an element (prefix, range, single
// address, compressed IPv6) never decides whether two rulesets are equal.

export type IpFamily = 'ipv4' | 'ipv6';

/** An inclusive range of addresses of one family. */
export interface AddressInterval {
  family: IpFamily;
  first: bigint;
  last: bigint;
}

const BITS: Record<IpFamily, number> = { ipv4: 32, ipv6: 128 };

export class AddressError extends Error {
  override name = 'AddressError';
}

/**
 * A dotted quad (no leading zeros, so an accepted text is already canonical) as a number. A
 * hand-rolled scan: read-back parses every element of sets of 100,000.
 */
export function parseIpv4Number(text: string): number | undefined {
  let value = 0;
  let octet = -1;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 46) {
      if (octet < 0 || dots === 3) return undefined;
      value = value * 256 + octet;
      octet = -1;
      digits = 0;
      dots++;
    } else if (code >= 48 && code <= 57) {
      if (digits > 0 && octet === 0) return undefined;
      octet = (octet < 0 ? 0 : octet * 10) + (code - 48);
      if (++digits > 3 || octet > 255) return undefined;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || octet < 0) return undefined;
  return value * 256 + octet;
}

function parseIpv4(text: string): bigint | undefined {
  const value = parseIpv4Number(text);
  return value === undefined ? undefined : BigInt(value);
}

function parseIpv6(text: string): bigint | undefined {
  if (text.length > 45 || text.includes('%')) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (half: string): bigint[] | undefined => {
    if (half === '') return [];
    const groups: bigint[] = [];
    const pieces = half.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseIpv4(piece);
        if (v4 === undefined) return undefined;
        groups.push(v4 >> 16n, v4 & 0xffffn);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) {
        groups.push(BigInt(`0x${piece}`));
      } else {
        return undefined;
      }
    }
    return groups;
  };
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<bigint>(halves.length === 2 ? missing : 0).fill(0n), ...tail];
  return groups.reduce((value, group) => (value << 16n) | group, 0n);
}

/** Parses one IPv4 or IPv6 address, or returns undefined. */
export function parseAddress(text: string): { family: IpFamily; value: bigint } | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 'ipv4', value: v4 };
  const v6 = text.includes(':') ? parseIpv6(text) : undefined;
  return v6 === undefined ? undefined : { family: 'ipv6', value: v6 };
}

/** An address, `addr/len` network (host bits must be zero) or `first-last` range as an interval. */
export function parseInterval(text: string): AddressInterval {
  const slash = text.indexOf('/');
  if (slash >= 0) {
    const base = parseAddress(text.slice(0, slash));
    const lengthText = text.slice(slash + 1);
    if (!base || !/^[0-9]{1,3}$/.test(lengthText)) throw new AddressError(`not a network: ${JSON.stringify(text.slice(0, 64))}`);
    const bits = BITS[base.family];
    const length = Number(lengthText);
    if (length > bits) throw new AddressError(`prefix length ${length} exceeds ${bits}: ${text}`);
    const hostBits = BigInt(bits - length);
    const hostMask = (1n << hostBits) - 1n;
    if ((base.value & hostMask) !== 0n) throw new AddressError(`host bits set in ${text}`);
    return { family: base.family, first: base.value, last: base.value | hostMask };
  }
  const dash = text.indexOf('-');
  if (dash >= 0) {
    const first = parseAddress(text.slice(0, dash));
    const last = parseAddress(text.slice(dash + 1));
    if (!first || !last || first.family !== last.family || last.value < first.value) {
      throw new AddressError(`not an address range: ${JSON.stringify(text.slice(0, 96))}`);
    }
    return { family: first.family, first: first.value, last: last.value };
  }
  const single = parseAddress(text);
  if (!single) throw new AddressError(`not an IP address: ${JSON.stringify(text.slice(0, 64))}`);
  return { family: single.family, first: single.value, last: single.value };
}

/** The canonical text of an address: dotted quad, or RFC 5952 IPv6 (longest zero run compressed). */
export function formatAddress(family: IpFamily, value: bigint): string {
  if (family === 'ipv4') {
    const v = Number(value);
    return `${Math.floor(v / 16777216)}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** The shortest exact text of an interval: an address, a network `addr/len`, or a range `first-last`. */
export function formatInterval(interval: AddressInterval): string {
  const { family, first, last } = interval;
  if (first === last) return formatAddress(family, first);
  const size = last - first + 1n;
  const isPowerOfTwo = (size & (size - 1n)) === 0n;
  if (isPowerOfTwo && (first & (size - 1n)) === 0n) {
    const hostBits = size.toString(2).length - 1;
    return `${formatAddress(family, first)}/${BITS[family] - hostBits}`;
  }
  return `${formatAddress(family, first)}-${formatAddress(family, last)}`;
}

/** Sorts and merges overlapping and adjacent intervals of one family. */
export function mergeIntervals<T extends { first: bigint; last: bigint }>(intervals: readonly T[]): { first: bigint; last: bigint }[] {
  const sorted = [...intervals].sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
  const merged: { first: bigint; last: bigint }[] = [];
  for (const { first, last } of sorted) {
    const previous = merged[merged.length - 1];
    if (previous && first <= previous.last + 1n) {
      if (last > previous.last) previous.last = last;
    } else {
      merged.push({ first, last });
    }
  }
  return merged;
}
