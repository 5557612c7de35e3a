// Jest runs TypeScript as ESM through @swc/jest; `tsc --noEmit` type-checks separately.
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2024' }, module: { type: 'es6' } }],
  },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testMatch: ['<rootDir>/**/*.test.ts'],
  // hack/run-tests.sh runs the benchmarks on their own, after everything else.
  testPathIgnorePatterns: ['/node_modules/', '/hack/tools/', '/.lab/', ...(process.env.SECAI_SKIP_BENCHMARKS === 'true' ? ['/test/bench/'] : [])],
  modulePathIgnorePatterns: ['<rootDir>/.lab/', '<rootDir>/hack/tools/'],
  globalSetup: '<rootDir>/test/support/global-setup.mjs',
  globalTeardown: '<rootDir>/test/support/global-teardown.mjs',
  testTimeout: 60_000,
  maxWorkers: 2,
};
