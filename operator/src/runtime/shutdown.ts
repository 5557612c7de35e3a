// Graceful shutdown: on SIGTERM or SIGINT, run the registered steps in reverse order of
// registration (stop taking work, drain, release the lease, close servers) within a deadline
// (controller-runtime's 30 s); past it, or on a second signal, exit at once.
import type { Logger } from 'pino';

export interface GracefulShutdownOptions {
  logger: Logger;
  timeoutMs?: number;
  exit?: (code: number) => void;
}

export class GracefulShutdown {
  private readonly steps: { name: string; run: () => Promise<void> | void }[] = [];
  private running?: Promise<void>;
  private readonly timeoutMs: number;
  private readonly exit: (code: number) => void;

  constructor(private readonly opts: GracefulShutdownOptions) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.exit = opts.exit ?? ((code) => process.exit(code));
  }

  /** Registers a step; steps run last-registered first. */
  add(name: string, run: () => Promise<void> | void): void {
    this.steps.push({ name, run });
  }

  /** Runs every step once, then exits with `code` (1 when the deadline passed). */
  run(reason: string, code = 0): Promise<void> {
    if (this.running) return this.running;
    this.opts.logger.info({ reason, timeoutMs: this.timeoutMs }, 'shutting down');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.timeoutMs)));
    const work = (async () => {
      for (const step of [...this.steps].reverse()) {
        try {
          await step.run();
        } catch (err) {
          this.opts.logger.warn({ err, step: step.name }, 'shutdown step failed');
        }
      }
      return 'done' as const;
    })();
    this.running = Promise.race([work, deadline]).then((outcome) => {
      clearTimeout(timer);
      if (outcome === 'timeout') this.opts.logger.error('graceful shutdown timed out');
      this.exit(outcome === 'timeout' ? 1 : code);
    });
    return this.running;
  }

  trapSignals(): void {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.on(signal, () => {
        if (this.running) {
          this.opts.logger.warn({ signal }, 'second signal; exiting now');
          this.exit(1);
          return;
        }
        void this.run(signal);
      });
    }
  }
}
