// The token relay of the chart's `host` agent mode. Where the agent runs under systemd (the SecAI
// node image), it is not in a Pod and so has no Pod-bound token of its own. A small Pod on the node,
// running as the agent's ServiceAccount, receives the projected token (audience secai-fleet-agent,
// bound to that Pod and so to its Node) and copies it to a host path that the agent reads with
// --token-file. The kubelet rotates the projected token at 80% of its lifetime; the relay copies it
// every interval, atomically and with mode 0600, so the agent never reads a partial or stale token.
// The token itself is never logged.
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, lstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';

/** Projected ServiceAccount tokens are JWTs of a few KiB; the operator refuses any over 16 KiB. */
export const MAX_TOKEN_BYTES = 16 * 1024;
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export interface TokenRelayConfig {
  /** The projected token in the relay Pod. */
  tokenFile: string;
  /** Where the host agent reads it (its --token-file). */
  hostTokenFile: string;
  intervalMs: number;
  logLevel: string;
}

export class TokenRelayConfigError extends Error {}

const OPTIONS = {
  'token-file': { type: 'string' },
  'host-token-file': { type: 'string' },
  'interval-seconds': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

/** Flags, or SECAI_<FLAG> environment variables, as for the agent. */
export function parseTokenRelayConfig(argv: readonly string[], env: NodeJS.ProcessEnv): TokenRelayConfig {
  const { values } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: false, strict: true });
  const get = (option: keyof typeof OPTIONS, fallback: string): string =>
    values[option] ?? env[`SECAI_${option.toUpperCase().replaceAll('-', '_')}`] ?? fallback;
  const interval = get('interval-seconds', '60');
  const seconds = Number(interval);
  // At most 5 minutes: after the kubelet rotates the token (at 80% of its lifetime) the old one stays
  // valid for the remaining 20%, 12 minutes for the chart's one-hour tokens; the copy must land first.
  if (!/^\d+$/.test(interval) || seconds < 1 || seconds > 300) {
    throw new TokenRelayConfigError(`--interval-seconds ${interval}: expected a whole number from 1 to 300`);
  }
  const tokenFile = get('token-file', '/var/run/secrets/secai.io/token');
  const hostTokenFile = get('host-token-file', '/run/secai/agent/token');
  for (const [flag, path] of [['--token-file', tokenFile], ['--host-token-file', hostTokenFile]] as const) {
    if (!path.startsWith('/')) throw new TokenRelayConfigError(`${flag} ${path}: expected an absolute path`);
  }
  if (tokenFile === hostTokenFile) throw new TokenRelayConfigError('--token-file and --host-token-file must differ');
  return { tokenFile, hostTokenFile, intervalMs: seconds * 1000, logLevel: get('log-level', 'info') };
}

/** Reads at most `limit + 1` bytes, so that an oversized file is detected without reading all of it. */
function readBounded(path: string, limit: number): Buffer {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${path} is not a regular file`);
    const buffer = Buffer.alloc(limit + 1);
    let length = 0;
    while (length < buffer.length) {
      const read = readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) break;
      length += read;
    }
    return buffer.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

/** The projected token, checked to be one plausible JWT within the size bound. */
export function readProjectedToken(path: string): Buffer {
  const bytes = readBounded(path, MAX_TOKEN_BYTES);
  if (bytes.length > MAX_TOKEN_BYTES) throw new Error(`${path} is larger than ${MAX_TOKEN_BYTES} bytes: not a ServiceAccount token`);
  const token = bytes.toString('latin1').trim();
  if (!JWT.test(token)) throw new Error(`${path} does not hold a JWT`);
  return Buffer.from(token, 'latin1');
}

/** Whether the host file already is a regular 0600 file with exactly these bytes. */
function alreadyRelayed(path: string, token: Buffer): boolean {
  let stat;
  try {
    stat = lstatSync(path);
  } catch {
    return false;
  }
  if (!stat.isFile() || (stat.mode & 0o777) !== 0o600 || stat.size !== token.length) return false;
  return readBounded(path, MAX_TOKEN_BYTES).equals(token);
}

export type RelayOutcome = 'written' | 'unchanged';

/**
 * Copies the projected token to the host path: a new 0600 file in the same directory, synced, then
 * renamed over the old one (rename replaces a planted symlink instead of writing through it), and
 * the directory synced so the rename survives a crash.
 */
export function relayToken(tokenFile: string, hostTokenFile: string): RelayOutcome {
  const token = readProjectedToken(tokenFile);
  if (alreadyRelayed(hostTokenFile, token)) return 'unchanged';
  const dir = dirname(hostTokenFile);
  const partial = join(dir, `.${basename(hostTokenFile)}.${process.pid}.partial`);
  try {
    unlinkSync(partial);
  } catch {
    // No leftover from an earlier crash.
  }
  try {
    const fd = openSync(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      fchmodSync(fd, 0o600); // whatever the umask
      writeSync(fd, token);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(partial, hostTokenFile);
  } catch (err) {
    try {
      unlinkSync(partial);
    } catch {
      // Never created.
    }
    throw err;
  }
  const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
  return 'written';
}

/** Relays now and then every interval; returns a function that stops it. */
export function runTokenRelay(config: TokenRelayConfig, log: Logger): () => void {
  let failing = false;
  const tick = () => {
    try {
      const outcome = relayToken(config.tokenFile, config.hostTokenFile);
      if (outcome === 'written' || failing) log.info({ hostTokenFile: config.hostTokenFile, outcome }, 'token relayed');
      failing = false;
    } catch (err) {
      failing = true;
      log.error({ err: (err as Error).message }, 'cannot relay the token; retrying at the next interval');
    }
  };
  tick();
  const timer = setInterval(tick, config.intervalMs);
  return () => clearInterval(timer);
}

function main(): void {
  let config: TokenRelayConfig;
  try {
    config = parseTokenRelayConfig(process.argv.slice(2), process.env);
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  const log = pino({ level: config.logLevel, base: { component: 'token-relay', node: process.env.NODE_NAME } });
  const stop = runTokenRelay(config, log);
  const shutdown = (signal: string) => {
    stop();
    log.info({ signal }, 'stopping');
    process.exit(0);
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

if (import.meta.url === `file://${process.argv[1]}`) main();
