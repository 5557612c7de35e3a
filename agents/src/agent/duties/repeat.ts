// Duties that check the node on a cadence (vault, attestation) re-run their round on a timer as well
// as on every plan. A round that fails is left to the next one: the duty reports its last good state
// and its own component logs the cause.
export class RoundTimer {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly round: () => Promise<void>,
  ) {}

  /** Starts the timer once; later calls do nothing. */
  ensureStarted(): void {
    this.timer ??= setInterval(() => {
      this.round().catch(() => undefined);
    }, this.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
