// Where and how `nft` runs: the binary, and optionally a network namespace to run it in (tests and
// the lab run `ip netns exec <ns> nft ...`; a node agent runs in its own namespace and needs none).
import { type Exec, runChecked } from '../exec.js';

export interface NftTarget {
  exec: Exec;
  nftPath: string;
  /** Run nft inside this named network namespace. */
  netns?: string;
  /** The iproute2 `ip` binary, for `netns`. */
  ipPath?: string;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
// The JSON listing of 100,000 concatenated elements is ~4 MB (reference/ts-stack.md §11).
const MAX_NFT_OUTPUT_BYTES = 256 * 1024 * 1024;

export function nftInvocation(target: NftTarget, args: readonly string[]): { command: string; args: string[] } {
  if (target.netns === undefined) return { command: target.nftPath, args: [...args] };
  return { command: target.ipPath ?? 'ip', args: ['netns', 'exec', target.netns, target.nftPath, ...args] };
}

/** Runs nft and returns its standard output; throws CommandError unless it exits 0. */
export function runNft(target: NftTarget, args: readonly string[], input?: string): Promise<string> {
  const { command, args: argv } = nftInvocation(target, args);
  return runChecked(target.exec, command, argv, {
    input,
    timeoutMs: target.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    maxOutputBytes: MAX_NFT_OUTPUT_BYTES,
  });
}
