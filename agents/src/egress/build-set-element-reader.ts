// Install step: compiles the nftables set element reader into the cache and prints its path
// (`npx tsx agents/src/egress/build-set-element-reader.ts`). Needs the Debian packages gcc,
// libmnl-dev and libnftnl-dev.
import { runCommand } from '../exec.js';
import { buildSetElementReader, nativeHelperCacheDir } from './set-element-reader.js';

process.stdout.write(`${await buildSetElementReader({ exec: runCommand, cacheDir: nativeHelperCacheDir() })}\n`);
