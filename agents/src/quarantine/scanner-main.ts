// Entry point of the sandboxed scanner child: reads a job on stdin, makes the one pass over the
// read-only artifact, verifies the signature over its digest, and prints the outcome of the
// Integrity, Signature, Format and StaticScan stages as one JSON line. It holds no credentials
// and has no network; anything unexpected exits non-zero, which the agent counts as a rejection.
import { runScanJob } from './scan-job.js';
import { MAX_JOB_BYTES, SCANNER_PROTOCOL_VERSION, type ScanJob } from './scanner-protocol.js';

async function readJob(): Promise<ScanJob> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin) {
    total += (chunk as Buffer).length;
    if (total > MAX_JOB_BYTES) throw new Error('job too large');
    chunks.push(chunk as Buffer);
  }
  const job = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ScanJob;
  if (job.version !== SCANNER_PROTOCOL_VERSION) throw new Error(`job version ${job.version} is not ${SCANNER_PROTOCOL_VERSION}`);
  return job;
}

async function main(): Promise<void> {
  const outcome = await runScanJob(await readJob());
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
}

main().catch((e: unknown) => {
  // The message may quote hostile bytes; the agent never echoes stderr.
  process.stderr.write(`scanner failed: ${(e as Error).message}\n`);
  process.exit(3);
});
