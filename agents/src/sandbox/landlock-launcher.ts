// The Landlock launcher (landlock-exec.c beside this file), built and cached by native-helper.ts.
// Install scripts build it ahead of time (build-landlock-launcher.ts); the sandbox builds it on
// start and gets the cached binary.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runChecked, type Exec } from '../exec.js';
import { buildNativeHelper, type NativeHelperBuild } from './native-helper.js';

export const LANDLOCK_LAUNCHER_SOURCE = fileURLToPath(new URL('./landlock-exec.c', import.meta.url));

/** `$SECAI_SANDBOX_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/secai-fleet/sandbox`. */
export function sandboxCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SECAI_SANDBOX_CACHE) return env.SECAI_SANDBOX_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'secai-fleet', 'sandbox');
}

export type LandlockLauncherBuild = NativeHelperBuild;

/** Returns the path of the compiled launcher, compiling it first when the cache has no match. */
export function buildLandlockLauncher(build: LandlockLauncherBuild): Promise<string> {
  return buildNativeHelper({ name: 'landlock-exec', source: LANDLOCK_LAUNCHER_SOURCE, packages: ['gcc'] }, build);
}

/** The kernel's Landlock ABI version as the launcher reads it; 0 when the kernel has no Landlock. */
export async function readLandlockAbi(exec: Exec, launcher: string): Promise<number> {
  const out = await runChecked(exec, launcher, ['--abi'], { timeoutMs: 10_000 });
  const abi = Number.parseInt(out.trim(), 10);
  if (!Number.isInteger(abi) || abi < 0 || abi > 1000) throw new Error(`landlock-exec --abi printed ${JSON.stringify(out.slice(0, 40))}`);
  return abi;
}
