// Where and how `nft` runs: the binary, and optionally a network namespace to run it in (tests and
// the lab run `ip netns exec <ns> nft ...`; a node agent runs in its own namespace and needs none).
import { type Exec, runChecked } from '../exec.js';
import { type NftSession, sessionRequest } from './nft-session.js';

export interface NftTarget {
  exec: Exec;
  nftPath: string;
  /** Run nft inside this named network namespace. */
  netns?: string;
  /** The iproute2 `ip` binary, for `netns`. */
  ipPath?: string;
  /**
   * The compiled set element reader (set-element-reader.ts). With it, the read-back takes the
   * elements from the kernel's dump and leaves them out of nft's listing; without it, nft lists
   * them itself, which nft 1.0.6 does at ~1 s per 100,000 elements.
   */
  setElementReader?: string;
  /**
   * A long-lived libnftables session (nft-session.ts) in the same network namespace: nft commands
   * go through it instead of a new `nft` process each. Commands it cannot express go to nft.
   */
  session?: NftSession;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
// The JSON listing of 100,000 concatenated elements is ~4 MB (reference/ts-stack.md §11).
const MAX_NFT_OUTPUT_BYTES = 256 * 1024 * 1024;

export function nftInvocation(target: NftTarget, args: readonly string[]): { command: string; args: string[] } {
  return invocationIn(target, target.nftPath, args);
}

function invocationIn(target: NftTarget, program: string, args: readonly string[]): { command: string; args: string[] } {
  if (target.netns === undefined) return { command: program, args: [...args] };
  return { command: target.ipPath ?? 'ip', args: ['netns', 'exec', target.netns, program, ...args] };
}

/** Runs nft and returns its standard output; throws CommandError unless it exits 0. */
export function runNft(target: NftTarget, args: readonly string[], input?: string): Promise<string> {
  const request = target.session && sessionRequest(args, input);
  if (request) return target.session!.run(request.text, request.flags, target.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  return runInTarget(target, target.nftPath, args, input);
}

/** Runs a program where nft runs (its network namespace), with nft's timeout and output bound. */
export function runInTarget(target: NftTarget, program: string, args: readonly string[], input?: string): Promise<string> {
  const { command, args: argv } = invocationIn(target, program, args);
  return runChecked(target.exec, command, argv, {
    input,
    timeoutMs: target.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    maxOutputBytes: MAX_NFT_OUTPUT_BYTES,
  });
}
