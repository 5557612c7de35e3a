// The fleet bar of DESIGN §8, measured by test/bench/fleet-scale.ts on a dedicated control plane:
// 1,000 simulated agents on one operator (a real child process), a policy change enforced on all of
// them within 2 s of the apply, and operator memory under 300 MB.
import { benchmarkFleetScale, describeFleetScale, type FleetScaleFigures } from './fleet-scale.js';
import { describeQuiet, waitForQuietMachine } from './quiet-machine.js';

let figures: FleetScaleFigures;

beforeAll(async () => {
  const quiet = await waitForQuietMachine();
  figures = await benchmarkFleetScale({ nodes: 1000, rounds: 3, log: (line) => process.stderr.write(`${line}\n`) });
  process.stderr.write(`fleet bench (${describeQuiet(quiet)}):\n${describeFleetScale(figures)}\n`);
}, 1_200_000);

test('every agent enforces every change', () => {
  expect(figures.rounds.map((r) => r.missing)).toEqual([0, 0, 0]);
});

test('a policy change is enforced on all 1,000 agents within 2 s of the apply', () => {
  for (const round of figures.rounds) expect(round.enforcedOnAllMs).toBeLessThan(2000);
});

test('the operator stays under 300 MB', () => {
  expect(figures.operatorPeakRssBytes).toBeLessThan(300 * 1024 * 1024);
});
