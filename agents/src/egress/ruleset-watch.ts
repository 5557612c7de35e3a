// Hears of every committed nftables change in the node's network namespace as it happens: the set
// element reader's `--watch` mode (nft-set-elements.c) prints a line per new ruleset generation.
// Each line wakes the egress duty, which reads the table back and repairs any drift, so a tamper is
// undone within milliseconds rather than at the next poll. When the watcher dies it is restarted
// with backoff, and the duty is woken (events may have been missed meanwhile).
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { type NftTarget, nftInvocation } from './nft-target.js';

export type SpawnWatcher = (command: string, args: readonly string[]) => ChildProcess;

export interface RulesetWatchOptions {
  target: NftTarget;
  /** The compiled set element reader (it has the `--watch` mode). */
  reader: string;
  /** A ruleset change (or possibly missed changes) happened. */
  onChange: () => void;
  logger: Logger;
  spawn?: SpawnWatcher;
}

const RESTART_INITIAL_MS = 500;
const RESTART_MAX_MS = 30_000;
/** Lines longer than this are not the watcher's; it is restarted. */
const MAX_LINE_CHARS = 64;

export class RulesetWatch {
  private child: ChildProcess | undefined;
  private restarts = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readyResolve: (() => void) | undefined;
  /** Resolves when the watcher has subscribed (its first `ready`). */
  readonly ready: Promise<void>;

  constructor(private readonly options: RulesetWatchOptions) {
    this.ready = new Promise((resolve) => (this.readyResolve = resolve));
  }

  start(): void {
    if (this.child || this.stopped) return;
    // The watcher runs where nft runs: `ip netns exec NS reader --watch` for a test namespace.
    const { command, args } = nftInvocation({ ...this.options.target, nftPath: this.options.reader }, ['--watch']);
    const child = (this.options.spawn ?? ((c, a) => spawnChild(c, [...a], { stdio: ['ignore', 'pipe', 'pipe'] })))(command, args);
    this.child = child;
    const lines = createInterface({ input: child.stdout!, crlfDelay: Infinity });
    lines.on('line', (line) => {
      if (line.length > MAX_LINE_CHARS) {
        child.kill('SIGKILL');
        return;
      }
      if (line === 'ready') {
        this.restarts = 0;
        this.readyResolve?.();
        return;
      }
      this.options.onChange();
    });
    child.stderr?.on('data', (chunk: Buffer) => this.options.logger.warn({ duty: 'egress', watcher: chunk.toString('utf8').slice(0, 200).trim() }, 'ruleset watcher said something'));
    child.once('error', (error) => this.options.logger.warn({ duty: 'egress', err: error.message }, 'ruleset watcher failed'));
    child.once('close', (code, signal) => {
      this.child = undefined;
      if (this.stopped) return;
      const delay = Math.min(RESTART_MAX_MS, RESTART_INITIAL_MS * 2 ** this.restarts++);
      this.options.logger.warn({ duty: 'egress', code, signal, restartInMs: delay }, 'ruleset watcher ended; the poll covers until it is back');
      this.options.onChange();
      this.timer = setTimeout(() => this.start(), delay);
      this.timer.unref();
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.child?.kill('SIGKILL');
    this.readyResolve?.();
  }
}
