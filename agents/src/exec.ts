// Runs a host command (nft, cryptsetup, tpm2 tools, bwrap) with a timeout and bounded output,
// killing its whole process group on timeout or abort. Duties take an `Exec` so tests can see the
// commands and the edges stay small.
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  /** Written to stdin, which then ends; a stream is piped in as it comes. */
  input?: string | Buffer | Readable;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Most bytes kept of each of stdout and stderr (default 16 MiB); the rest is dropped. */
  maxOutputBytes?: number;
  signal?: AbortSignal;
}

export type Exec = (command: string, args: readonly string[], options?: ExecOptions) => Promise<ExecResult>;

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly result: ExecResult,
  ) {
    const why = result.timedOut ? 'timed out' : result.signal ? `killed by ${result.signal}` : `exited ${result.code}`;
    super(`${command} ${why}: ${result.stderr.trim().slice(0, 2000)}`);
    this.name = 'CommandError';
  }
}

export const runCommand: Exec = (command, args, options = {}) =>
  new Promise((resolve, reject) => {
    const limit = options.maxOutputBytes ?? 16 * 1024 * 1024;
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let timedOut = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = options.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          killGroup();
        }, options.timeoutMs)
      : undefined;
    const onAbort = () => killGroup();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // Aborted before it started: it is ended at once.
    if (options.signal?.aborted) killGroup();
    child.stdout.on('data', (chunk: Buffer) => {
      if (outBytes < limit) out.push(chunk.subarray(0, limit - outBytes));
      outBytes += chunk.length;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (errBytes < limit) err.push(chunk.subarray(0, limit - errBytes));
      errBytes += chunk.length;
    });
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      reject(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
    child.stdin.on('error', () => {
      // The command may exit before reading its input; its exit status tells the story.
    });
    if (options.input instanceof Readable) {
      // A stream that fails ends stdin all the same: the command sees its input stop.
      options.input.on('error', () => child.stdin.end());
      options.input.pipe(child.stdin);
    } else child.stdin.end(options.input);
  });

/** Runs a command and throws CommandError unless it exits 0. */
export async function runChecked(exec: Exec, command: string, args: readonly string[], options?: ExecOptions): Promise<string> {
  const result = await exec(command, args, options);
  if (result.code !== 0) throw new CommandError(command, result);
  return result.stdout;
}
