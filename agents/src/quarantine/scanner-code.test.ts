// The scanner's code as the sandbox runs it: every module scanner-main.ts loads at run time,
// stripped of types, beside the plain-JavaScript workers; and nothing only a type import names.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { scannerCode, siblingImports } from './scanner-code.js';

const SOURCES = resolve(import.meta.dirname);

it.each([
  ["import { a, type B } from './a.js';", ['a']],
  ["import {\n  a,\n  b,\n} from './multi-line.js';", ['multi-line']],
  ["import type { A } from './types-only.js';", []],
  ["export { x } from './re-exported.js';\nexport type { Y } from './type-re-export.js';", ['re-exported']],
  ["const lazy = import('./lazy.js');", ['lazy']],
  ["import './side-effect.js';", ['side-effect']],
  ["import { x } from '../outside.js';\nimport { y } from 'node:fs';", []],
])('finds the sibling modules %j loads', (source, names) => {
  expect(siblingImports(source)).toEqual(names);
});

it('strips the modules the scanner loads and keeps their import specifiers', async () => {
  const dir = await scannerCode(SOURCES, 'scanner-main');
  expect(await scannerCode(SOURCES, 'scanner-main')).toBe(dir);
  // Named by its content, in a directory only this user can enter.
  expect(basename(dir)).toMatch(/^[0-9a-f]{64}$/);
  expect(statSync(dirname(dir)).mode & 0o077).toBe(0);
  const files = readdirSync(dir).sort();
  for (const name of ['scanner-main.js', 'scan-job.js', 'one-pass-scan.js', 'stream-consumer.js', 'tensor-tree.js', 'signature.js', 'gguf-parser.js', 'sha256-worker.mjs']) expect(files).toContain(name);
  // The agent side of the pipeline is not the scanner's code.
  for (const name of ['pipeline.js', 'fetch.js', 'trusted-store.js', 'scanner-sandbox.js']) expect(files).not.toContain(name);
  expect(files.filter((f) => f.endsWith('.ts'))).toEqual([]);
  const stripped = readFileSync(join(dir, 'one-pass-scan.js'), 'utf8');
  expect(stripped).toContain("from './stream-consumer.js'");
  expect(stripped).not.toMatch(/: Promise<ScanReport>/);
  // Type stripping keeps every line where it was: stack traces point at the sources.
  expect(stripped.split('\n')).toHaveLength(readFileSync(join(SOURCES, 'one-pass-scan.ts'), 'utf8').split('\n').length);
});
