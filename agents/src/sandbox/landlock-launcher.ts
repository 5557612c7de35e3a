// Builds the Landlock launcher (landlock-exec.c beside this file) with gcc and caches the binary by
// the hash of its source, compiler and flags, so an unchanged launcher is compiled once per machine.
// Install scripts call it ahead of time (build-landlock-launcher.ts); the sandbox calls it on start
// and gets the cached binary.
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runChecked, type Exec } from '../exec.js';

export const LANDLOCK_LAUNCHER_SOURCE = fileURLToPath(new URL('./landlock-exec.c', import.meta.url));

const CFLAGS = ['-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-fstack-protector-strong', '-D_FORTIFY_SOURCE=2', '-fPIE', '-pie'];

/** `$SECAI_SANDBOX_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/secai-fleet/sandbox`. */
export function sandboxCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SECAI_SANDBOX_CACHE) return env.SECAI_SANDBOX_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'secai-fleet', 'sandbox');
}

export interface LandlockLauncherBuild {
  exec: Exec;
  cacheDir: string;
  compiler?: string;
}

/** Returns the path of the compiled launcher, compiling it first when the cache has no match. */
export async function buildLandlockLauncher({ exec, cacheDir, compiler = 'gcc' }: LandlockLauncherBuild): Promise<string> {
  const source = await readFile(LANDLOCK_LAUNCHER_SOURCE);
  let compilerVersion: string;
  try {
    compilerVersion = await runChecked(exec, compiler, ['--version'], { timeoutMs: 10_000 });
  } catch (error) {
    throw new Error(`cannot build the Landlock launcher: ${compiler} is not usable (Debian package gcc): ${(error as Error).message}`);
  }
  const key = createHash('sha256')
    .update(source)
    .update('\0')
    .update(compilerVersion)
    .update('\0')
    .update(CFLAGS.join(' '))
    .digest('hex')
    .slice(0, 32);
  const dir = join(cacheDir, 'landlock-exec', key);
  const binary = join(dir, 'landlock-exec');
  if (await isFile(binary)) return binary;

  await mkdir(dir, { recursive: true });
  const partial = `${binary}.${process.pid}.partial`;
  try {
    await runChecked(exec, compiler, [...CFLAGS, '-o', partial, LANDLOCK_LAUNCHER_SOURCE], { timeoutMs: 120_000 });
    await chmod(partial, 0o755);
    await rename(partial, binary);
  } finally {
    await rm(partial, { force: true });
  }
  return binary;
}

/** The kernel's Landlock ABI version as the launcher reads it; 0 when the kernel has no Landlock. */
export async function readLandlockAbi(exec: Exec, launcher: string): Promise<number> {
  const out = await runChecked(exec, launcher, ['--abi'], { timeoutMs: 10_000 });
  const abi = Number.parseInt(out.trim(), 10);
  if (!Number.isInteger(abi) || abi < 0 || abi > 1000) throw new Error(`landlock-exec --abi printed ${JSON.stringify(out.slice(0, 40))}`);
  return abi;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
