// A deduplicating, delaying, rate-limited work queue with client-go's semantics: a key waits in the
// queue at most once (dirty set), and a key being processed is not handed out again until `done`
// (processing set); if it was added meanwhile it goes back in the queue then.
import { systemClock, type Clock, type Timer } from './clock.js';
import type { QueueProbe, RuntimeMetrics } from './metrics.js';
import { defaultControllerRateLimiter, type RateLimiter } from './rate-limiter.js';

export interface WorkQueueOptions {
  name: string;
  clock?: Clock;
  rateLimiter?: RateLimiter;
  metrics?: RuntimeMetrics;
}

export class WorkQueue implements QueueProbe {
  readonly name: string;
  private readonly clock: Clock;
  private readonly rateLimiter: RateLimiter;
  private readonly metrics?: RuntimeMetrics;
  private queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  /** When each queued key was added, for the queue-duration metric. */
  private readonly addedAt = new Map<string, number>();
  /** When each processing key was handed out, for the work-duration metric. */
  private readonly startedAt = new Map<string, number>();
  /** Delayed adds: the earliest time each key becomes ready. */
  private readonly waiting = new Map<string, { readyAt: number; timer: Timer }>();
  private waiters: ((key: string | undefined) => void)[] = [];
  private drainWaiters: (() => void)[] = [];
  private shuttingDown = false;

  constructor(opts: WorkQueueOptions) {
    this.name = opts.name;
    this.clock = opts.clock ?? systemClock;
    this.rateLimiter = opts.rateLimiter ?? defaultControllerRateLimiter(this.clock);
    this.metrics = opts.metrics;
    this.metrics?.registerQueue(this);
  }

  private get labels() {
    return { name: this.name, controller: this.name };
  }

  /** Marks `key` as needing processing. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.metrics?.queueAdds.inc(this.labels);
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.push(key);
  }

  private push(key: string): void {
    this.addedAt.set(key, this.clock.now());
    this.metrics?.queueDepth.inc(this.labels);
    const waiter = this.waiters.shift();
    if (waiter) this.handOut(waiter, key);
    else this.queue.push(key);
  }

  private handOut(waiter: (key: string | undefined) => void, key: string): void {
    this.metrics?.queueDepth.dec(this.labels);
    const now = this.clock.now();
    const added = this.addedAt.get(key);
    if (added !== undefined) this.metrics?.queueDuration.observe(this.labels, (now - added) / 1000);
    this.addedAt.delete(key);
    this.startedAt.set(key, now);
    this.processing.add(key);
    this.dirty.delete(key);
    waiter(key);
  }

  /** Adds `key` once `delayMs` has passed; an earlier pending delay for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    const readyAt = this.clock.now() + delayMs;
    const existing = this.waiting.get(key);
    if (existing && existing.readyAt <= readyAt) return;
    existing?.timer.cancel();
    const timer = this.clock.setTimer(() => {
      this.waiting.delete(key);
      this.add(key);
    }, delayMs);
    this.waiting.set(key, { readyAt, timer });
  }

  /** Adds `key` after the rate limiter's delay: per-key backoff and the overall token bucket. */
  addRateLimited(key: string): void {
    this.metrics?.queueRetries.inc(this.labels);
    this.addAfter(key, this.rateLimiter.when(key));
  }

  /** Clears the retry history of `key`. */
  forget(key: string): void {
    this.rateLimiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.rateLimiter.numRequeues(key);
  }

  /** The next key to process, or undefined once the queue shuts down. Call `done` after processing it. */
  get(): Promise<string | undefined> {
    return new Promise((resolve) => {
      const key = this.queue.shift();
      if (key !== undefined) return this.handOut(resolve, key);
      if (this.shuttingDown) return resolve(undefined);
      this.waiters.push(resolve);
    });
  }

  /** Ends the processing of `key`; a key added meanwhile goes back in the queue. */
  done(key: string): void {
    const started = this.startedAt.get(key);
    if (started !== undefined) this.metrics?.workDuration.observe(this.labels, (this.clock.now() - started) / 1000);
    this.startedAt.delete(key);
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
    if (this.processing.size === 0) for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  /** Keys waiting in the queue (not delayed, not processing). */
  len(): number {
    return this.queue.length;
  }

  /** Stops handing out keys: waiting `get`s resolve undefined, delayed adds are dropped. */
  shutdown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    for (const { timer } of this.waiting.values()) timer.cancel();
    this.waiting.clear();
    for (const resolve of this.waiters.splice(0)) resolve(undefined);
    this.queue = [];
    this.metrics?.queueDepth.set(this.labels, 0);
    this.metrics?.unregisterQueue(this);
  }

  /** Shuts down, then waits until every key handed out is done. */
  async shutdownWithDrain(): Promise<void> {
    this.shutdown();
    if (this.processing.size === 0) return;
    await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }

  unfinishedWorkSeconds(): number {
    const now = this.clock.now();
    let total = 0;
    for (const started of this.startedAt.values()) total += (now - started) / 1000;
    return total;
  }

  longestRunningProcessorSeconds(): number {
    const now = this.clock.now();
    let longest = 0;
    for (const started of this.startedAt.values()) longest = Math.max(longest, (now - started) / 1000);
    return longest;
  }
}
