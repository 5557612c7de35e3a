// A controller: a work queue of keys, informers that fill it, and workers that run a level-triggered
// reconcile function for one key at a time (controller-runtime's reconcileHandler semantics).
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import type { Informer, KubeObject } from './informer.js';
import type { RuntimeMetrics } from './metrics.js';
import type { RateLimiter } from './rate-limiter.js';
import { WorkQueue } from './workqueue.js';

/**
 * An error that retrying cannot fix (an invalid spec, say): the key is not requeued. The reconciler
 * should have recorded why in a False condition before throwing it.
 */
export class TerminalError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export interface ReconcileResult {
  /** Reconcile this key again after this many milliseconds (for polling the outside world). */
  requeueAfterMs?: number;
}

export interface ReconcileContext {
  /** A child logger carrying the controller, the key and a reconcile ID. */
  log: Logger;
  reconcileId: string;
}

export type Reconciler = (key: string, ctx: ReconcileContext) => Promise<ReconcileResult | void>;

export interface ControllerOptions {
  name: string;
  reconcile: Reconciler;
  logger: Logger;
  maxConcurrentReconciles?: number;
  metrics?: RuntimeMetrics;
  clock?: Clock;
  rateLimiter?: RateLimiter;
  /** How long `start` waits for the informers' first lists (controller-runtime's CacheSyncTimeout: 2 min). */
  cacheSyncTimeoutMs?: number;
}

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly reconcile: Reconciler;
  private readonly log: Logger;
  private readonly maxConcurrent: number;
  private readonly metrics?: RuntimeMetrics;
  private readonly cacheSyncTimeoutMs: number;
  private readonly sources: Informer<KubeObject>[] = [];
  private workers: Promise<void>[] = [];
  private started = false;
  private stopping = false;

  constructor(opts: ControllerOptions) {
    this.name = opts.name;
    this.reconcile = opts.reconcile;
    this.log = opts.logger.child({ controller: opts.name });
    this.maxConcurrent = opts.maxConcurrentReconciles ?? 1;
    this.metrics = opts.metrics;
    this.cacheSyncTimeoutMs = opts.cacheSyncTimeoutMs ?? 120_000;
    this.queue = new WorkQueue({
      name: opts.name,
      clock: opts.clock ?? systemClock,
      ...(opts.rateLimiter ? { rateLimiter: opts.rateLimiter } : {}),
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
    });
  }

  /**
   * Enqueues the keys `map` returns for every add, update and delete the informer sees. Handlers
   * only map and enqueue; they do no I/O.
   */
  watch<T extends KubeObject>(informer: Informer<T>, map: (obj: T) => Iterable<string>): this {
    this.sources.push(informer as unknown as Informer<KubeObject>);
    const enqueue = (obj: T) => {
      for (const key of map(obj)) this.queue.add(key);
    };
    informer.addHandler({
      onAdd: enqueue,
      onUpdate: (oldObj, newObj) => {
        enqueue(oldObj);
        enqueue(newObj);
      },
      onDelete: enqueue,
    });
    return this;
  }

  /** Whether workers are reconciling (started, and not stopping). */
  get running(): boolean {
    return this.workers.length > 0 && !this.stopping;
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  enqueueAfter(key: string, delayMs: number): void {
    this.queue.addAfter(key, delayMs);
  }

  /** Waits for the watched informers' caches, then starts the workers. */
  async start(): Promise<void> {
    if (this.started) throw new Error(`controller ${this.name} already started`);
    this.started = true;
    await Promise.all(this.sources.map((s) => s.waitForSync(this.cacheSyncTimeoutMs)));
    this.metrics?.maxConcurrentReconciles.set({ controller: this.name }, this.maxConcurrent);
    this.metrics?.activeWorkers.set({ controller: this.name }, 0);
    for (let i = 0; i < this.maxConcurrent; i++) this.workers.push(this.worker());
    this.log.info({ workers: this.maxConcurrent }, 'controller started');
  }

  /** Stops handing out keys and waits for reconciles in flight (at most `timeoutMs`). */
  async stop(timeoutMs = 30_000): Promise<void> {
    this.stopping = true;
    const drained = this.queue.shutdownWithDrain().then(() => Promise.all(this.workers));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const outcome = await Promise.race([drained, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') this.log.warn({ timeoutMs }, 'reconciles still running at shutdown');
  }

  private async worker(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      this.metrics?.activeWorkers.inc({ controller: this.name });
      try {
        await this.reconcileOne(key);
      } finally {
        this.metrics?.activeWorkers.dec({ controller: this.name });
        this.queue.done(key);
      }
    }
  }

  private async reconcileOne(key: string): Promise<void> {
    const reconcileId = randomUUID();
    const log = this.log.child({ name: key, reconcileID: reconcileId });
    const endTimer = this.metrics?.reconcileTime.startTimer({ controller: this.name });
    const count = (result: 'success' | 'error' | 'requeue_after') =>
      this.metrics?.reconcileTotal.inc({ controller: this.name, result });
    try {
      const result = await this.reconcile(key, { log, reconcileId });
      if (result?.requeueAfterMs !== undefined && result.requeueAfterMs > 0) {
        this.queue.forget(key);
        this.queue.addAfter(key, result.requeueAfterMs);
        count('requeue_after');
      } else {
        this.queue.forget(key);
        count('success');
      }
    } catch (err) {
      count('error');
      this.metrics?.reconcileErrors.inc({ controller: this.name });
      if (err instanceof TerminalError) {
        this.metrics?.terminalReconcileErrors.inc({ controller: this.name });
        this.queue.forget(key);
        log.error({ err }, 'reconcile failed terminally; not retrying');
      } else {
        this.queue.addRateLimited(key);
        log.warn({ err, requeues: this.queue.numRequeues(key) }, 'reconcile failed; retrying with backoff');
      }
    } finally {
      endTimer?.();
    }
  }
}
