// Every npm dependency is pinned to an exact version, and the lockfile agrees with package.json.
import { readFileSync } from 'node:fs';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';

const pkg = JSON.parse(readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as Record<string, Record<string, string>>;
const lock = JSON.parse(readFileSync(`${REPO_ROOT}/package-lock.json`, 'utf8')) as {
  packages: Record<string, { version?: string }>;
};
const deps = Object.entries({ ...pkg.dependencies, ...pkg.devDependencies });

it('declares dependencies', () => {
  expect(deps.length).toBeGreaterThan(10);
});

it.each(deps)('%s is pinned to an exact version that the lockfile holds', (name, version) => {
  expect(version).toMatch(/^\d+\.\d+\.\d+$/);
  expect(lock.packages[`node_modules/${name}`]?.version).toBe(version);
});

it('runs on Node 24 through the npm package "node"', () => {
  expect(pkg.devDependencies?.node).toMatch(/^24\./);
  expect(process.versions.node.split('.')[0]).toBe('24');
});
