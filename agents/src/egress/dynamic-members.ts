// The elements the agent itself put into the dynamic (FQDN) sets, and until when. A resync cannot
// compare those sets with the last rendered intent: elements expire in the kernel and refreshes add
// new answers. What it can check is the direction that matters: every element the kernel holds
// there must be one the agent added and that has not long expired. A member nobody resolved is an
// allow someone else made.
import { type AddressInterval, mergeIntervals, parseInterval } from './ip-address.js';
import { type SetElement, elementKeys } from './set-elements.js';

/** Kernel and agent clocks tick apart; an element this close past its expiry may still be listed. */
const EXPIRY_GRACE_MS = 5_000;

interface Member {
  key: string;
  address: AddressInterval;
  concatenated: boolean;
  expiresAtMs: number;
}

export class DynamicMembers {
  private readonly sets = new Map<string, Map<string, Member>>();

  /** Records elements just written, each with its timeout. */
  record(elements: readonly { set: string; element: SetElement }[], nowMs: number): void {
    for (const { set, element } of elements) {
      const key = elementKeys([element])[0]!;
      let members = this.sets.get(set);
      if (!members) this.sets.set(set, (members = new Map()));
      const expiresAtMs = nowMs + (element.timeoutSeconds ?? 0) * 1000;
      const known = members.get(key);
      if (!known || known.expiresAtMs < expiresAtMs) members.set(key, { key, address: element.address, concatenated: element.port !== undefined, expiresAtMs });
    }
  }

  /** Forgets every member: the table was replaced and the render recorded what it holds now. */
  reset(): void {
    this.sets.clear();
  }

  /**
   * Whether a key the kernel lists in `set` is covered by members the agent added. Address-only
   * keys are merged intervals (adjacent answers list as one range), so they must lie within the
   * union of members; concatenated keys are one element each.
   */
  allows(set: string, key: string, nowMs: number): boolean {
    const live = [...(this.sets.get(set)?.values() ?? [])].filter((member) => member.expiresAtMs + EXPIRY_GRACE_MS > nowMs);
    if (key.includes(' . ')) return live.some((member) => member.concatenated && member.key === key);
    let interval: AddressInterval;
    try {
      interval = parseInterval(key);
    } catch {
      return false;
    }
    const covering = mergeIntervals(live.filter((m) => !m.concatenated && m.address.family === interval.family).map((m) => m.address));
    return covering.some((range) => range.first <= interval.first && interval.last <= range.last);
  }

  /** Drops members long expired, so the ledger stays as small as the sets. */
  prune(nowMs: number): void {
    for (const [set, members] of this.sets) {
      for (const [key, member] of members) if (member.expiresAtMs + EXPIRY_GRACE_MS <= nowMs) members.delete(key);
      if (members.size === 0) this.sets.delete(set);
    }
  }
}
