// Prints the one plain line CI reads, "N passed, N failed", from jest's JSON report. A suite that
// failed without a failed test (it did not load, or a hook threw) counts as one failure.
import { readFileSync } from 'node:fs';

const report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const crashedSuites = report.testResults.filter(
  (suite) => suite.status === 'failed' && suite.assertionResults.every((test) => test.status !== 'failed'),
).length;
console.log(`${report.numPassedTests} passed, ${report.numFailedTests + crashedSuites} failed`);
