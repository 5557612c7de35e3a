// Entry point of the sandboxed scanner child: reads a job on stdin and prints its outcome as one
// JSON line. A verdict job makes the one pass over the read-only artifact, verifies the signature
// over its digest, and reports the Integrity, Signature, Format and StaticScan stages; a
// tensor-tree job computes the manifest's per-tensor hash tree. The child holds no credentials and
// has no network; anything unexpected exits non-zero, which the agent counts as a rejection.
import { startDigestThread } from './digest-thread.js';
import { MAX_JOB_BYTES, SCANNER_PROTOCOL_VERSION, type ScannerJob } from './scanner-protocol.js';

// Started before anything else loads: the SHA-256 thread of the one pass boots meanwhile.
const digestThread = startDigestThread();
const { runScanJob, runTensorTreeJob } = await import('./scan-job.js');

async function readJob(): Promise<ScannerJob> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin) {
    total += (chunk as Buffer).length;
    if (total > MAX_JOB_BYTES) throw new Error('job too large');
    chunks.push(chunk as Buffer);
  }
  const job = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ScannerJob;
  if (job.version !== SCANNER_PROTOCOL_VERSION) throw new Error(`job version ${job.version} is not ${SCANNER_PROTOCOL_VERSION}`);
  return job;
}

async function main(): Promise<void> {
  const job = await readJob();
  let outcome: object;
  if (job.kind === 'verdict') {
    outcome = await runScanJob(job, { digestThread });
  } else if (job.kind === 'tensor-tree') {
    void digestThread.terminate();
    outcome = await runTensorTreeJob(job);
  } else {
    throw new Error('unknown job kind');
  }
  // Exits once the line is out, without waiting for worker threads to wind down.
  process.stdout.write(`${JSON.stringify(outcome)}\n`, () => process.exit(0));
}

main().catch((e: unknown) => {
  // The message may quote hostile bytes; the agent never echoes stderr.
  process.stderr.write(`scanner failed: ${(e as Error).message}\n`);
  process.exit(3);
});
