// Keeps one inference worker running: restarts it with exponential backoff when it crashes (a
// malformed model can abort llama.cpp) or fails to start, and gives up only on failures a restart
// cannot cure (wrong digest, no GPU, sandbox not applied) until the plan changes. The agent itself
// is never at risk: the worker is another process.
import { WorkerStartError, type InferenceWorker, type WorkerFailureReason } from './inference-worker.js';

export interface RestartPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
  /** A worker that served this long counts as healthy again: the next crash starts the backoff over. */
  stableAfterMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { initialDelayMs: 1000, maxDelayMs: 60_000, stableAfterMs: 60_000 };

/** Failures a restart would only repeat. */
const TERMINAL: ReadonlySet<WorkerFailureReason> = new Set(['ModelDigestMismatch', 'GPUUnavailable', 'SandboxNotApplied']);

export type WorkerStatus =
  /** lastFailure: why the previous worker ended, when this start is a restart. */
  | { phase: 'starting'; restarts: number; lastFailure?: string }
  | { phase: 'ready'; worker: InferenceWorker }
  | { phase: 'failed'; reason: WorkerFailureReason; message: string; restarts: number; retryInMs?: number }
  | { phase: 'stopped' };

/** Delay before restart number `failures` (1-based): initial, doubled each time, capped. */
export function restartDelayMs(failures: number, policy: RestartPolicy): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 30);
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** exponent);
}

export interface SupervisedWorkerOptions {
  start: () => Promise<InferenceWorker>;
  policy: RestartPolicy;
  onStatus: (status: WorkerStatus) => void;
  now?: () => number;
}

export class SupervisedWorker {
  private current: InferenceWorker | undefined;
  private failures = 0;
  private restarts = 0;
  private stopped = false;
  private lastFailure: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly options: SupervisedWorkerOptions) {
    this.now = options.now ?? Date.now;
  }

  get worker(): InferenceWorker | undefined {
    return this.current;
  }

  run(): void {
    void this.attempt();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const worker = this.current;
    this.current = undefined;
    this.options.onStatus({ phase: 'stopped' });
    await worker?.stop();
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    this.options.onStatus({ phase: 'starting', restarts: this.restarts, lastFailure: this.lastFailure });
    let worker: InferenceWorker;
    try {
      worker = await this.options.start();
    } catch (error) {
      const reason = error instanceof WorkerStartError ? error.reason : 'WorkerCrashed';
      this.fail(reason, (error as Error).message, !TERMINAL.has(reason));
      return;
    }
    if (this.stopped) {
      await worker.stop();
      return;
    }
    this.current = worker;
    const readyAt = this.now();
    this.options.onStatus({ phase: 'ready', worker });
    const exit = await worker.exited;
    if (this.stopped || this.current !== worker) return;
    this.current = undefined;
    if (this.now() - readyAt >= this.options.policy.stableAfterMs) this.failures = 0;
    this.fail('WorkerCrashed', `the worker ${exit.description} while serving`, true);
  }

  private fail(reason: WorkerFailureReason, message: string, retry: boolean): void {
    if (this.stopped) return;
    this.lastFailure = `${reason}: ${message}`;
    if (!retry) {
      this.options.onStatus({ phase: 'failed', reason, message, restarts: this.restarts });
      return;
    }
    this.failures++;
    const retryInMs = restartDelayMs(this.failures, this.options.policy);
    this.options.onStatus({ phase: 'failed', reason, message, restarts: this.restarts, retryInMs });
    this.timer = setTimeout(() => {
      this.restarts++;
      void this.attempt();
    }, retryInMs);
  }
}
