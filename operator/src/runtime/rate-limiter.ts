// client-go's workqueue rate limiters: how long an item waits before it is retried.
import type { Clock } from './clock.js';

export interface RateLimiter {
  /** The delay before `item` may be processed again; counts one more failure for it. */
  when(item: string): number;
  /** Clears the failure history of `item` (after a success). */
  forget(item: string): void;
  numRequeues(item: string): number;
}

/** Per-item exponential backoff: base × 2^failures, capped (client-go ItemExponentialFailureRateLimiter). */
export class ItemExponentialBackoff implements RateLimiter {
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly baseDelayMs: number,
    private readonly maxDelayMs: number,
  ) {}

  when(item: string): number {
    const exponent = this.failures.get(item) ?? 0;
    this.failures.set(item, exponent + 1);
    // 2^exponent overflows to Infinity long before it matters; the cap applies either way.
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** exponent);
  }

  forget(item: string): void {
    this.failures.delete(item);
  }

  numRequeues(item: string): number {
    return this.failures.get(item) ?? 0;
  }
}

/**
 * An overall token bucket (golang.org/x/time/rate reservations): `qps` tokens a second, at most
 * `burst` saved up. Every call takes a token, waiting for it when none is left.
 */
export class TokenBucket implements RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly qps: number,
    private readonly burst: number,
    private readonly clock: Clock,
  ) {
    this.tokens = burst;
    this.last = clock.now();
  }

  when(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.qps) * 1000);
  }

  forget(): void {}

  numRequeues(): number {
    return 0;
  }
}

/** The longest delay any of the limiters asks for. */
export class MaxOfRateLimiter implements RateLimiter {
  private readonly limiters: RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.limiters = limiters;
  }

  when(item: string): number {
    return Math.max(...this.limiters.map((l) => l.when(item)));
  }

  forget(item: string): void {
    for (const l of this.limiters) l.forget(item);
  }

  numRequeues(item: string): number {
    return Math.max(...this.limiters.map((l) => l.numRequeues(item)));
  }
}

/** client-go DefaultTypedControllerRateLimiter: 5 ms → 1000 s per item, and 10 qps with a burst of 100 overall. */
export function defaultControllerRateLimiter(clock: Clock): RateLimiter {
  return new MaxOfRateLimiter(new ItemExponentialBackoff(5, 1000 * 1000), new TokenBucket(10, 100, clock));
}
