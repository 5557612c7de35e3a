// node-llama-cpp is installed lean: exactly one prebuilt binary variant for this platform (CPU on
// this machine; GPU nodes add the CUDA one), and nothing that would build llama.cpp from source.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const scope = join(REPO_ROOT, 'node_modules', '@node-llama-cpp');

it('has exactly one prebuilt variant, the CPU build for linux-x64', () => {
  expect(readdirSync(scope)).toEqual(['linux-x64']);
  const metadata = JSON.parse(readFileSync(join(scope, 'linux-x64', 'bins', 'linux-x64', '_nlcBuildMetadata.json'), 'utf8')) as {
    buildOptions: { gpu: unknown; llamaCpp: { release: string } };
  };
  expect(metadata.buildOptions.gpu).toBe(false);
});

it('has no local llama.cpp build to fall back on', () => {
  expect(existsSync(join(REPO_ROOT, 'node_modules', 'node-llama-cpp', 'llama', 'localBuilds'))).toBe(false);
});
