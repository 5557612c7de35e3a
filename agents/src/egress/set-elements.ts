// Elements of the allow sets: an address interval, optionally concatenated with a port interval. The
// same key spelling serves the renderer's intent and the read-back, so both sides agree whatever
// form nft lists an element in.
import { type AddressInterval, formatInterval, type IpFamily, mergeIntervals } from './ip-address.js';

export interface PortInterval {
  first: number;
  last: number;
}

export interface SetElement {
  address: AddressInterval;
  port?: PortInterval;
  /** Only for dynamic (FQDN) sets: seconds until the kernel removes the element. */
  timeoutSeconds?: number;
}

export function formatPortInterval(port: PortInterval): string {
  return port.first === port.last ? String(port.first) : `${port.first}-${port.last}`;
}

/** The nft text of one element as the renderer writes it. */
export function elementText(element: SetElement): string {
  const key = element.port ? `${formatInterval(element.address)} . ${formatPortInterval(element.port)}` : formatInterval(element.address);
  return element.timeoutSeconds === undefined ? key : `${key} timeout ${element.timeoutSeconds}s`;
}

/**
 * Comparison keys of a set's elements: address-only sets as merged intervals (a hash set of
 * 10.0.0.1 and 10.0.0.2 and an interval set holding 10.0.0.1-10.0.0.2 allow the same), concatenations
 * one key per element.
 */
export function elementKeys(elements: readonly SetElement[]): string[] {
  const concatenated = elements.filter((element) => element.port);
  const plain = elements.filter((element) => !element.port);
  const keys = new Set(concatenated.map((element) => `${formatInterval(element.address)} . ${formatPortInterval(element.port!)}`));
  for (const family of ['ipv4', 'ipv6'] as IpFamily[]) {
    const intervals = plain.filter((element) => element.address.family === family).map((element) => element.address);
    for (const merged of mergeIntervals(intervals)) keys.add(formatInterval({ family, ...merged }));
  }
  return [...keys].sort();
}

/**
 * Rewrites address × port rectangles into disjoint ones covering the same pairs. Concatenated
 * interval sets (the kernel's pipapo backend) refuse overlapping elements, and plans overlap
 * freely (a network on 443 and one of its hosts on 440-450).
 */
export function disjointRectangles(family: IpFamily, rectangles: readonly { address: AddressInterval; port: PortInterval }[]): SetElement[] {
  type Event = { at: bigint; port: PortInterval; opens: boolean };
  const events: Event[] = [];
  for (const { address, port } of rectangles) {
    events.push({ at: address.first, port, opens: true }, { at: address.last + 1n, port, opens: false });
  }
  events.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  const open = new Map<string, { port: PortInterval; count: number }>();
  const segments: { first: bigint; last: bigint; ports: PortInterval[]; signature: string }[] = [];
  for (let i = 0; i < events.length; ) {
    const at = events[i]!.at;
    for (; i < events.length && events[i]!.at === at; i++) {
      const { port, opens } = events[i]!;
      const id = formatPortInterval(port);
      const entry = open.get(id);
      if (opens) open.set(id, { port, count: (entry?.count ?? 0) + 1 });
      else if (entry && entry.count > 1) entry.count--;
      else open.delete(id);
    }
    const next = events[i]?.at;
    if (next === undefined || open.size === 0) continue;
    const ports = mergePorts([...open.values()].map((entry) => entry.port));
    const signature = ports.map(formatPortInterval).join(',');
    const previous = segments[segments.length - 1];
    if (previous && previous.last + 1n === at && previous.signature === signature) previous.last = next - 1n;
    else segments.push({ first: at, last: next - 1n, ports, signature });
  }
  return segments.flatMap(({ first, last, ports }) => ports.map((port) => ({ address: { family, first, last }, port })));
}

export function mergePorts(ports: readonly PortInterval[]): PortInterval[] {
  return mergeIntervals(ports.map((port) => ({ first: BigInt(port.first), last: BigInt(port.last) }))).map(({ first, last }) => ({
    first: Number(first),
    last: Number(last),
  }));
}
