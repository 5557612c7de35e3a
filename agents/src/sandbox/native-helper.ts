// Builds a small C helper of the agent (the Landlock launcher, the nftables set-element reader)
// with gcc and caches the binary by the hash of its source, compiler, flags and libraries, so an
// unchanged helper is compiled once per machine. Install scripts build ahead of time; the agent
// builds on start and gets the cached binary.
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runChecked, type Exec } from '../exec.js';

// Warnings are errors: these programs run as root and parse kernel or user input.
export const NATIVE_HELPER_CFLAGS = ['-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-fstack-protector-strong', '-D_FORTIFY_SOURCE=2', '-fPIE', '-pie'];

export interface NativeHelperBuild {
  exec: Exec;
  cacheDir: string;
  compiler?: string;
}

export interface NativeHelperSource {
  /** The binary's file name, also its folder in the cache. */
  name: string;
  /** Absolute path of the single C file. */
  source: string;
  /** Linker flags after the source (`-lnftnl`). */
  libraries?: readonly string[];
  /** Debian packages the build needs, named in the error when it fails. */
  packages: readonly string[];
}

/** Returns the path of the compiled helper, compiling it first when the cache has no match. */
export async function buildNativeHelper(helper: NativeHelperSource, { exec, cacheDir, compiler = 'gcc' }: NativeHelperBuild): Promise<string> {
  const source = await readFile(helper.source);
  const libraries = helper.libraries ?? [];
  const packages = `Debian package${helper.packages.length === 1 ? '' : 's'} ${helper.packages.join(', ')}`;
  let compilerVersion: string;
  try {
    compilerVersion = await runChecked(exec, compiler, ['--version'], { timeoutMs: 10_000 });
  } catch (error) {
    throw new Error(`cannot build ${helper.name}: ${compiler} is not usable (${packages}): ${(error as Error).message}`);
  }
  const key = createHash('sha256')
    .update(source)
    .update('\0')
    .update(compilerVersion)
    .update('\0')
    .update(NATIVE_HELPER_CFLAGS.join(' '))
    .update('\0')
    .update(libraries.join(' '))
    .digest('hex')
    .slice(0, 32);
  const dir = join(cacheDir, helper.name, key);
  const binary = join(dir, helper.name);
  if (await isFile(binary)) return binary;

  await mkdir(dir, { recursive: true });
  const partial = `${binary}.${process.pid}.partial`;
  try {
    await runChecked(exec, compiler, [...NATIVE_HELPER_CFLAGS, '-o', partial, helper.source, ...libraries], { timeoutMs: 120_000 }).catch((error: Error) => {
      throw new Error(`cannot build ${helper.name} (${packages}): ${error.message}`);
    });
    await chmod(partial, 0o755);
    await rename(partial, binary);
  } finally {
    await rm(partial, { force: true });
  }
  return binary;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
