// The scanner's code as the sandbox runs it: the TypeScript files scanner-main.ts imports, with
// their types stripped by Node (node:module stripTypeScriptTypes, positions kept), plus the
// plain-JavaScript worker files, in a directory the sandbox binds read-only in place of the
// sources. Loading TypeScript inside each sandbox (tsx, or Node's own stripping with a resolve
// hook) cost every job 150-500 ms before its first byte was read; plain JavaScript starts in about
// 100 ms. The project imports `./x.js` for `./x.ts`, so the stripped files keep their import
// specifiers. Only erasable syntax may appear in these files (no enums, no parameter properties);
// anything else fails here, loudly, before any job runs.
//
// The directory is named by the digest of what it holds, under a per-user parent that must be a
// private directory of this user (the scanner runs whatever is there), and is written completely
// before it is renamed into place: processes share it, and a crash never leaves half of it.
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { stripTypeScriptTypes } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Runtime imports of a sibling module: `import ... from './x.js'`, `import './x.js'`, `export ... from './x.js'`, `import('./x.js')`; not `import type`. */
const SIBLING_IMPORT = /(?:^import\s+(?!type\s)[^;]*?\sfrom\s+|^import\s+|^export\s+(?!type\s)[^;]*?\sfrom\s+|\bimport\()'\.\/([\w.-]+)\.js'/gm;

export function siblingImports(source: string): string[] {
  return [...source.matchAll(SIBLING_IMPORT)].map((m) => m[1]!);
}

/** File name to content: the stripped modules reachable from `entry`, and every .mjs file. */
async function scannerFiles(sourceDir: string, entry: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const queue = [entry];
  while (queue.length > 0) {
    const name = queue.pop()!;
    if (files.has(`${name}.js`)) continue;
    const source = await readFile(join(sourceDir, `${name}.ts`), 'utf8');
    files.set(`${name}.js`, stripTypeScriptTypes(source, { mode: 'strip' }));
    queue.push(...siblingImports(source));
  }
  for (const file of (await readdir(sourceDir)).filter((f) => f.endsWith('.mjs')).sort()) files.set(file, await readFile(join(sourceDir, file), 'utf8'));
  return files;
}

/** The per-user parent directory, created private; refused unless it is a private directory of this user. */
async function privateParent(): Promise<string> {
  const uid = process.getuid?.() ?? 0;
  const parent = join(tmpdir(), `secai-scanner-code-${uid}`);
  await mkdir(parent, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
  const stat = await lstat(parent);
  if (!stat.isDirectory() || stat.uid !== uid || (stat.mode & 0o077) !== 0) throw new Error(`${parent} is not a private directory of uid ${uid}`);
  return parent;
}

async function build(sourceDir: string, entry: string): Promise<string> {
  const files = await scannerFiles(sourceDir, entry);
  const digest = createHash('sha256').update(process.version);
  for (const [name, content] of files) digest.update(`\0${name}\0${content}`);
  const parent = await privateParent();
  const dir = join(parent, digest.digest('hex'));
  if (await lstat(dir).then((s) => s.isDirectory(), () => false)) return dir;
  const staging = await mkdtemp(join(parent, 'staging-'));
  try {
    for (const [name, content] of files) await writeFile(join(staging, name), content, { mode: 0o444 });
    await rename(staging, dir);
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    // Another process put the same code in place first.
    if (!['EEXIST', 'ENOTEMPTY'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
  }
  return dir;
}

const built = new Map<string, Promise<string>>();

/** The directory of stripped code for `sourceDir`, built on first use; `entry` is a module name without extension. */
export function scannerCode(sourceDir: string, entry: string): Promise<string> {
  const key = `${sourceDir}\0${entry}`;
  let code = built.get(key);
  if (!code) {
    code = build(sourceDir, entry);
    // A failed build is retried by the next job rather than remembered.
    code.catch(() => built.delete(key));
    built.set(key, code);
  }
  return code;
}
