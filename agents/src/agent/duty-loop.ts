// One named, level-triggered loop per duty (in the spirit of Cilium's pkg/controller): it runs its
// duty's convergence now and then again and again — after `intervalMs` when the run succeeded,
// after an exponential backoff when it failed, at once when woken (a new plan, a kernel or
// filesystem event). Runs never overlap; wakes that arrive during a run collapse into one more run.
// Work that must not interleave with a run (a counter harvest, a command) goes through
// `exclusive`. It keeps the last success and failure, which the agent reports.

export interface DutyRunResult {
  /** False: the duty did not converge; the next run comes after the backoff. */
  ok: boolean;
  /** Run again this soon (ms) whatever the interval says: a TTL due, a retry that is due. */
  requeueAfterMs?: number;
}

export interface DutyLoopOptions {
  name: string;
  run: () => Promise<DutyRunResult>;
  /** Resync period after a successful run (ms). */
  intervalMs: number;
  /** Backoff after consecutive failures: initialMs, doubling, capped at maxMs. */
  backoff?: { initialMs: number; maxMs: number };
  now?: () => number;
}

export interface DutyLoopState {
  name: string;
  runs: number;
  consecutiveFailures: number;
  lastSuccessAt?: number;
  lastFailureAt?: number;
  lastError?: string;
  /** When the next run is due (ms since the epoch), while the loop is started. */
  nextRunAt?: number;
}

export const DEFAULT_DUTY_BACKOFF = { initialMs: 1_000, maxMs: 60_000 } as const;

/** The delay before the next run after `failures` consecutive failures (0: after a success). */
export function nextDelayMs(failures: number, intervalMs: number, backoff: { initialMs: number; maxMs: number }, requeueAfterMs?: number): number {
  const base = failures === 0 ? intervalMs : Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(failures - 1, 30));
  return requeueAfterMs === undefined ? base : Math.max(0, Math.min(base, requeueAfterMs));
}

type Waiter = { resolve: () => void };

export class DutyLoop {
  private readonly now: () => number;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly state: DutyLoopState;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private wanted = false;
  private started = false;
  private stopped = false;
  /** Callers of wake() waiting for a run that starts after their call. */
  private waiting: Waiter[] = [];
  private exclusiveQueue: (() => Promise<void>)[] = [];

  constructor(private readonly options: DutyLoopOptions) {
    this.now = options.now ?? Date.now;
    this.backoff = options.backoff ?? DEFAULT_DUTY_BACKOFF;
    this.state = { name: options.name, runs: 0, consecutiveFailures: 0 };
  }

  get name(): string {
    return this.options.name;
  }

  /**
   * Starts the schedule: the first run is at once, or one interval after the last run when the loop
   * already ran unscheduled (woken before it was started). Later calls do nothing.
   */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    if (this.state.runs === 0 || this.running) void this.wake();
    else this.schedule(nextDelayMs(this.state.consecutiveFailures, this.options.intervalMs, this.backoff));
  }

  /**
   * Asks for a run as soon as the current one (if any) ends. Resolves when a run that began after
   * this call has finished, successful or not; at once when the loop is stopped.
   */
  wake(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.waiting.push({ resolve }));
    this.wanted = true;
    this.kick();
    return done;
  }

  /** Runs `work` between two runs, never during one; a run asked for meanwhile waits for it. */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.exclusiveQueue.push(() => work().then(resolve, reject));
      this.kick();
    });
  }

  snapshot(): DutyLoopState {
    return { ...this.state };
  }

  /** Stops scheduling; resolves when the run in progress (if any) has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    for (const waiter of this.waiting.splice(0)) waiter.resolve();
  }

  private kick(): void {
    if (this.running) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
      // A wake or exclusive work that came in while the last step finished.
      if (!this.stopped && (this.wanted || this.exclusiveQueue.length > 0)) this.kick();
    });
  }

  private async drain(): Promise<void> {
    for (;;) {
      const work = this.exclusiveQueue.shift();
      if (work) {
        await work();
        continue;
      }
      if (!this.wanted || this.stopped) return;
      this.wanted = false;
      clearTimeout(this.timer);
      this.timer = undefined;
      const waiters = this.waiting.splice(0);
      await this.runOnce();
      for (const waiter of waiters) waiter.resolve();
    }
  }

  private async runOnce(): Promise<void> {
    let result: DutyRunResult;
    try {
      result = await this.options.run();
      if (!result.ok) this.state.lastError = 'the duty did not converge';
    } catch (error) {
      result = { ok: false };
      this.state.lastError = (error as Error).message;
    }
    const at = this.now();
    this.state.runs += 1;
    if (result.ok) {
      this.state.consecutiveFailures = 0;
      this.state.lastSuccessAt = at;
      delete this.state.lastError;
    } else {
      this.state.consecutiveFailures += 1;
      this.state.lastFailureAt = at;
    }
    if (this.stopped || !this.started) return;
    this.schedule(nextDelayMs(this.state.consecutiveFailures, this.options.intervalMs, this.backoff, result.requeueAfterMs));
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.state.nextRunAt = this.now() + delayMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.wake();
    }, delayMs);
    this.timer.unref();
  }
}
