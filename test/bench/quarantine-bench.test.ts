// The quarantine quality bars of DESIGN.md section 8, measured side by side in one run:
// the one pass over a 1 GiB GGUF at least 0.9x `openssl dgst -sha256` on the same file, and the
// header of a 150,000-token vocabulary parsed in under 60 ms.
import { measureThroughput, measureVocabularyParse } from './quarantine-bench.js';

it('parses the header of a 150,000-token vocabulary in under 60 ms', () => {
  const result = measureVocabularyParse();
  process.stderr.write(`header parse: ${JSON.stringify(result)}\n`);
  expect(result.headerBytes).toBeGreaterThan(4_000_000);
  expect(result.medianMs).toBeLessThan(60);
});

it('scans a 1 GiB GGUF in one pass at least 0.9x as fast as openssl dgst -sha256', async () => {
  const result = await measureThroughput(Number(process.env.QUARANTINE_BENCH_PAIRS ?? 7));
  process.stderr.write(`one pass: ${JSON.stringify(result)}\n`);
  expect(result.verdicts).toEqual(['Passed', 'Integrity:Passed', 'Signature:NotRequested', 'Format:Passed', 'StaticScan:Passed']);
  expect(result.ratio).toBeGreaterThanOrEqual(0.9);
}, 300_000);
