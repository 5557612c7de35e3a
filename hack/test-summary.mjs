// Prints the one plain line CI reads, "N passed, N failed", from jest's JSON reports (one per jest
// run). A suite that failed without a failed test (it did not load, or a hook threw) counts as one
// failure, and so does a run that left no report.
import { existsSync, readFileSync, statSync } from 'node:fs';

let passed = 0;
let failed = 0;
for (const path of process.argv.slice(2)) {
  if (!existsSync(path) || statSync(path).size === 0) {
    failed += 1;
    continue;
  }
  const report = JSON.parse(readFileSync(path, 'utf8'));
  const crashedSuites = report.testResults.filter(
    (suite) => suite.status === 'failed' && suite.assertionResults.every((test) => test.status !== 'failed'),
  ).length;
  passed += report.numPassedTests;
  failed += report.numFailedTests + crashedSuites;
}
console.log(`${passed} passed, ${failed} failed`);
