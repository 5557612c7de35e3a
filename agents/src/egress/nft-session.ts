// One long-lived nftables session (nft-session.c, beside this file) instead of an `nft` process per
// command. Every process the agent starts is a fork of the agent, whose cost grows with the
// agent's memory and blocks its event loop (~6 ms at 50 MB, ~90 ms at 550 MB here); the apply and
// read-back of one check would start three. The session runs the same libnftables as `nft`:
// the same parser, one transaction per request, the same output and error messages (less nft's
// `/dev/stdin:L:C:` prefix), so callers see what `nft` would have printed.
//
// Requests go one at a time. A request that outlives its timeout kills the session (the next
// request starts a new one); so does a session that exits or breaks the protocol, and the
// requests waiting behind it fail with the reason.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { CommandError } from '../exec.js';
import { buildNativeHelper, type NativeHelperBuild } from '../sandbox/native-helper.js';
import type { NftTarget } from './nft-target.js';

export const NFT_SESSION_SOURCE = fileURLToPath(new URL('./nft-session.c', import.meta.url));
/** Debian packages the session needs to build. */
export const NFT_SESSION_PACKAGES = ['gcc', 'libnftables-dev'];

/** Returns the path of the compiled session helper, compiling it first when the cache has no match. */
export function buildNftSession(build: NativeHelperBuild): Promise<string> {
  return buildNativeHelper({ name: 'nft-session', source: NFT_SESSION_SOURCE, libraries: ['-lnftables'], packages: NFT_SESSION_PACKAGES }, build);
}

/** What a request asks of nft's output: `-j` and `-t` of the command line. */
export interface NftSessionFlags {
  json?: boolean;
  terse?: boolean;
}

/** nft's command line as a session request, or undefined where the session cannot run it. */
export function sessionRequest(args: readonly string[], input?: string): { text: string; flags: NftSessionFlags } | undefined {
  const flags: NftSessionFlags = {};
  let at = 0;
  for (; at < args.length; at++) {
    if (args[at] === '-j' || args[at] === '--json') flags.json = true;
    else if (args[at] === '-t' || args[at] === '--terse') flags.terse = true;
    else break;
  }
  const rest = args.slice(at);
  if (rest.length === 2 && (rest[0] === '-f' || rest[0] === '--file') && rest[1] === '-') {
    return input === undefined ? undefined : { text: input, flags };
  }
  // Any other option (a file, numeric output, a check) goes to nft itself.
  if (input !== undefined || rest.length === 0 || rest.some((arg) => arg.startsWith('-'))) return undefined;
  // nft joins its arguments with spaces into one command line.
  return { text: rest.join(' '), flags };
}

const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;
const HEADER = /^done ([01]) (\d{1,10}) (\d{1,10})$/;

interface Pending {
  resolve: (output: string) => void;
  reject: (error: Error) => void;
}

export interface NftSessionOptions {
  binary: string;
  /** Run the session inside this named network namespace (`ip netns exec`). */
  netns?: string;
  ipPath?: string;
}

export class NftSession {
  private child: ChildProcess | undefined;
  private buffered: Buffer = Buffer.alloc(0);
  private pending: Pending | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private exitReason = '';
  private closed = false;

  constructor(private readonly options: NftSessionOptions) {}

  /** The label errors carry, as a command's would. */
  private get label(): string {
    return this.options.netns === undefined ? 'nft-session' : `nft-session (netns ${this.options.netns})`;
  }

  /** Runs nft input (one transaction) and returns nft's output; throws CommandError as nft would fail. */
  run(text: string, flags: NftSessionFlags = {}, timeoutMs = 30_000): Promise<string> {
    const result = this.queue.then(() => this.exchange(text, flags, timeoutMs));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Stops the session; later requests fail. */
  close(): void {
    this.closed = true;
    this.stop('the session was closed');
  }

  private start(): ChildProcess {
    const { binary, netns, ipPath } = this.options;
    const [command, args] = netns === undefined ? [binary, []] : [ipPath ?? 'ip', ['netns', 'exec', netns, binary]];
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.buffered = Buffer.alloc(0);
    this.exitReason = '';
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2000);
    });
    child.stdout!.on('data', (chunk: Buffer) => this.onData(child, chunk));
    child.stdin!.on('error', () => undefined);
    // An idle session keeps nobody's process alive: a waiting request holds its own timer.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
    child.on('error', (error) => this.onExit(child, `could not start: ${error.message}`));
    // 'close' comes after the last of its standard error, so the reason carries it.
    child.on('close', (code, signal) => this.onExit(child, `${signal ? `killed by ${signal}` : `exited ${code}`}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
    this.child = child;
    return child;
  }

  private onExit(child: ChildProcess, reason: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.exitReason = reason;
    this.pending?.reject(new Error(`${this.label} ${reason}`));
    this.pending = undefined;
  }

  private stop(reason: string): void {
    const child = this.child;
    if (!child) return;
    this.onExit(child, reason);
    child.kill('SIGKILL');
  }

  private onData(child: ChildProcess, chunk: Buffer): void {
    if (this.child !== child) return;
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const newline = this.buffered.indexOf(10);
    if (newline < 0) {
      if (this.buffered.length > 64) this.stop('answered with a malformed header');
      return;
    }
    const header = HEADER.exec(this.buffered.subarray(0, newline).toString('latin1'));
    if (!header || !this.pending) {
      this.stop(`answered ${header ? 'with no request waiting' : 'with a malformed header'}`);
      return;
    }
    const outputLength = Number(header[2]);
    const errorLength = Number(header[3]);
    if (outputLength + errorLength > MAX_OUTPUT_BYTES) {
      this.stop(`answered with more than ${MAX_OUTPUT_BYTES} bytes`);
      return;
    }
    const end = newline + 1 + outputLength + errorLength;
    if (this.buffered.length < end) return;
    if (this.buffered.length > end) {
      this.stop('answered more than it was asked');
      return;
    }
    const output = this.buffered.subarray(newline + 1, newline + 1 + outputLength).toString();
    const error = this.buffered.subarray(newline + 1 + outputLength, end).toString();
    this.buffered = Buffer.alloc(0);
    const pending = this.pending;
    this.pending = undefined;
    if (header[1] === '0') pending.resolve(output);
    else pending.reject(new CommandError(this.label, { code: 1, signal: null, stdout: output, stderr: error, timedOut: false }));
  }

  private exchange(text: string, flags: NftSessionFlags, timeoutMs: number): Promise<string> {
    if (this.closed) return Promise.reject(new Error(`${this.label}: the session was closed`));
    const child = this.child ?? this.start();
    const body = Buffer.from(text);
    const letters = `${flags.json ? 'j' : ''}${flags.terse ? 't' : ''}` || '-';
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.stop(`timed out after ${timeoutMs} ms`);
      }, timeoutMs);
      this.pending = {
        resolve: (output) => {
          clearTimeout(timer);
          resolve(output);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      child.stdin!.write(`run ${letters} ${body.length}\n`);
      child.stdin!.write(body);
    });
  }

  /** Why the last session ended ('' while one runs or none has). */
  get lastExit(): string {
    return this.exitReason;
  }
}

/**
 * The target with a session when the helper builds on this machine (libnftables-dev); without it
 * every command starts `nft`, as before, at the cost of a fork of the caller each.
 */
export async function withNftSession(target: NftTarget, build: NativeHelperBuild, logger: Logger): Promise<NftTarget> {
  try {
    const binary = await buildNftSession(build);
    return { ...target, session: new NftSession({ binary, netns: target.netns, ipPath: target.ipPath }) };
  } catch (error) {
    logger.warn({ error: (error as Error).message }, 'no nft session: every nftables command starts an nft process');
    return target;
  }
}
