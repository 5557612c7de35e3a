// Install step: compiles the Landlock launcher into the cache and prints its path
// (`npx tsx agents/src/sandbox/build-landlock-launcher.ts`). Needs the Debian package gcc.
import { runCommand } from '../exec.js';
import { buildLandlockLauncher, readLandlockAbi, sandboxCacheDir } from './landlock-launcher.js';

const launcher = await buildLandlockLauncher({ exec: runCommand, cacheDir: sandboxCacheDir() });
const abi = await readLandlockAbi(runCommand, launcher);
process.stdout.write(`${launcher}\nkernel Landlock ABI: ${abi}\n`);
