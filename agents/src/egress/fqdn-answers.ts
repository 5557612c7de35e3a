// What the node learned about its FQDN entries: each name's addresses and when they expire. The
// kernel removes an element when its timeout runs out; this cache forgets the address at the same
// moment, so a later full table replacement never brings back an answer that has expired.
import { type FqdnTimeoutBounds, normaliseHostName, type ResolvedHosts } from './render-egress-ruleset.js';

interface CachedAddress {
  address: string;
  expiresAtMs: number;
}

interface CachedName {
  addresses: CachedAddress[];
  /** When to ask again: before the shortest-lived answer expires, or soon after a failure. */
  refreshAtMs: number;
}

/** Share of an answer's lifetime after which it is refreshed, leaving time for a retry or two. */
const REFRESH_AT_FRACTION = 0.6;
const RETRY_FRACTION = 0.1;
const MIN_RETRY_MS = 1000;

export class FqdnAnswers {
  private readonly names = new Map<string, CachedName>();

  constructor(private readonly bounds: FqdnTimeoutBounds) {}

  /** Records a resolution. Addresses keep their previous expiry when the new answer omits them. */
  record(host: string, addresses: readonly { address: string; ttlSeconds: number }[], nowMs: number): void {
    const name = normaliseHostName(host);
    const previous = this.names.get(name)?.addresses.filter((cached) => cached.expiresAtMs > nowMs) ?? [];
    const fresh = addresses.map(({ address, ttlSeconds }) => ({ address, expiresAtMs: nowMs + this.timeoutSeconds(ttlSeconds) * 1000 }));
    const merged = new Map(previous.map((cached) => [cached.address, cached]));
    for (const cached of fresh) merged.set(cached.address, cached);
    const shortest = Math.min(...fresh.map((cached) => cached.expiresAtMs - nowMs));
    const refreshAtMs =
      fresh.length > 0 ? nowMs + shortest * REFRESH_AT_FRACTION : nowMs + Math.max(MIN_RETRY_MS, this.bounds.minSeconds * 1000 * RETRY_FRACTION);
    this.names.set(name, { addresses: [...merged.values()], refreshAtMs });
  }

  /** Names whose answers are due (or were never asked), among the plan's. */
  due(hosts: Iterable<string>, nowMs: number): string[] {
    const due = new Set<string>();
    for (const host of hosts) {
      const cached = this.names.get(normaliseHostName(host));
      if (!cached || cached.refreshAtMs <= nowMs) due.add(normaliseHostName(host));
    }
    return [...due];
  }

  /** When the next name falls due, or undefined when none is cached. */
  nextRefreshAtMs(hosts: Iterable<string>): number | undefined {
    let next: number | undefined;
    for (const host of hosts) {
      const at = this.names.get(normaliseHostName(host))?.refreshAtMs ?? 0;
      next = next === undefined ? at : Math.min(next, at);
    }
    return next;
  }

  /** Live answers with their remaining lifetime, for the renderer. */
  resolved(nowMs: number): ResolvedHosts {
    const resolved = new Map<string, { address: string; ttlSeconds: number }[]>();
    for (const [name, cached] of this.names) {
      const live = cached.addresses.filter((entry) => entry.expiresAtMs > nowMs);
      resolved.set(
        name,
        live.map((entry) => ({ address: entry.address, ttlSeconds: Math.ceil((entry.expiresAtMs - nowMs) / 1000) })),
      );
    }
    return resolved;
  }

  /** Forgets names no longer in the plan. */
  retain(hosts: Iterable<string>): void {
    const keep = new Set([...hosts].map(normaliseHostName));
    for (const name of this.names.keys()) if (!keep.has(name)) this.names.delete(name);
  }

  private timeoutSeconds(ttlSeconds: number): number {
    return Math.min(this.bounds.maxSeconds, Math.max(this.bounds.minSeconds, Math.ceil(ttlSeconds)));
  }
}
