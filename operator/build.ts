// The operator ships as one ES module of its own code, `dist/operator.mjs` (its packages stay in
// node_modules), run by plain node with OPERATOR_NODE_FLAGS. The chart, the lab, the tests and the
// fleet benchmark all run this same file.
//
// Why not `node --import tsx operator/src/cmd/main.ts`, as the agent runs: the operator holds one
// TLS channel per agent, and at 1,000 agents its memory bar (300 MB) is tight. Measured with the
// fleet benchmark (test/bench/fleet-scale.ts): under tsx 313 MB peak; the bundle alone saves
// ~15 MB of V8 heap (no per-module transforms and source maps); with the flags below the peak was
// 266 MB, at a cost of slower initial convergence (more frequent GC) and no change to how fast a
// policy reaches the fleet.
//
//   npx tsx operator/build.ts        (also `make build`; the jest global setup runs it too)
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export const OPERATOR_ENTRY = 'operator/src/cmd/main.ts';
/** Relative to the repository root (the chart's working directory holds the same layout). */
export const OPERATOR_BUNDLE = 'dist/operator.mjs';

/**
 * V8 settings for the operator's node process. The old generation is bounded as a container's
 * memory limit would be; semi-spaces of 2 MB (V8 picks 16 MB on a machine this size) and
 * --optimize-for-size keep the heap close to what is live: at 1,000 agents V8's heap went from
 * ~100 MB to ~60 MB.
 */
export const OPERATOR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--max-old-space-size=256', '--optimize-for-size'];

/** Writes the bundle (and its source map, for `node --enable-source-maps` when debugging); returns its path. */
export async function buildOperator(root: string = ROOT): Promise<string> {
  const outfile = join(root, OPERATOR_BUNDLE);
  mkdirSync(dirname(outfile), { recursive: true });
  await build({
    absWorkingDir: root,
    entryPoints: [OPERATOR_ENTRY],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    // Dependencies load from node_modules as they would under tsx: one copy of each, same versions.
    packages: 'external',
    sourcemap: 'linked',
    logLevel: 'warning',
    // Errors name the source file and line.
    keepNames: true,
  });
  return outfile;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const started = Date.now();
  const outfile = await buildOperator();
  process.stdout.write(`built ${outfile} in ${Date.now() - started} ms\n`);
}
