// Install step: compiles the agent's nftables session helper into the cache and prints its path
// (`npx tsx agents/src/egress/build-nft-session.ts`). Needs the Debian packages gcc and
// libnftables-dev.
import { runCommand } from '../exec.js';
import { buildNftSession } from './nft-session.js';
import { nativeHelperCacheDir } from './set-element-reader.js';

process.stdout.write(`${await buildNftSession({ exec: runCommand, cacheDir: nativeHelperCacheDir() })}\n`);
