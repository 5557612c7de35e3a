// A service's admission control: at most `concurrency` generations run, at most `queueDepth` wait
// in arrival order, and anything beyond is refused at once (HTTP 429) rather than queued without
// bound. A waiter whose client goes away leaves the queue.

export type Release = () => void;

interface Waiter {
  grant: (release: Release) => void;
  refuse: (error: Error) => void;
}

export class LimiterClosedError extends Error {
  override name = 'LimiterClosedError';
}

export class RequestLimiter {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  private closed = false;

  constructor(
    readonly concurrency: number,
    readonly queueDepth: number,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error('concurrency must be a positive integer');
    if (!Number.isInteger(queueDepth) || queueDepth < 0) throw new Error('queueDepth must be a non-negative integer');
  }

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /**
   * A slot, now or after waiting in the queue; undefined when the queue is full. The promise
   * rejects when the signal aborts while waiting or the limiter closes.
   */
  tryAcquire(signal?: AbortSignal): Promise<Release> | undefined {
    if (this.closed) return Promise.reject(new LimiterClosedError('the service is stopping'));
    if (this.running < this.concurrency) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.queueDepth) return undefined;
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted while queued'));
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
        refuse: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      if (signal?.aborted) {
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted while queued'));
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Refuses every waiter and every later request. */
  close(): void {
    this.closed = true;
    for (const waiter of this.waiting.splice(0)) waiter.refuse(new LimiterClosedError('the service is stopping'));
  }

  private releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next.grant(this.releaser());
      else this.running--;
    };
  }
}
