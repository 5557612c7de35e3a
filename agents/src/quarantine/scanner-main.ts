// Entry point of the sandboxed scanner child: reads a job on stdin and prints its outcome as one
// JSON line. A verdict job makes the one pass over the read-only artifact, verifies the signature
// over its digest, and reports the Integrity, Signature, Format and StaticScan stages; a
// tensor-tree job computes the manifest's per-tensor hash tree. The child holds no credentials and
// has no network; anything unexpected exits non-zero, which the agent counts as a rejection.
import { startDigestThread } from './digest-thread.js';
import type { FollowedFile } from './one-pass-scan.js';
import { MAX_JOB_BYTES, SCANNER_PROTOCOL_VERSION, type ScannerJob } from './scanner-protocol.js';

// Started before anything else loads: the SHA-256 thread of the one pass boots meanwhile.
const digestThread = startDigestThread();
const { runScanJob, runTensorTreeJob } = await import('./scan-job.js');

/**
 * The job: stdin's first line, or all of it. A job that follows a download leaves the rest of
 * stdin to its progress (followStdin).
 */
async function readJob(): Promise<{ job: ScannerJob; rest: AsyncIterator<Buffer>; leftover: Buffer }> {
  const chunks: Buffer[] = [];
  let total = 0;
  const input = (process.stdin as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let leftover: Buffer = Buffer.alloc(0);
  for (;;) {
    const { value, done } = await input.next();
    if (done) break;
    const chunk = value;
    const newline = chunk.indexOf(10);
    const line = newline === -1 ? chunk : chunk.subarray(0, newline);
    total += line.length;
    if (total > MAX_JOB_BYTES) throw new Error('job too large');
    chunks.push(line);
    if (newline !== -1) {
      leftover = chunk.subarray(newline + 1);
      break;
    }
  }
  const job = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ScannerJob;
  if (job.version !== SCANNER_PROTOCOL_VERSION) throw new Error(`job version ${job.version} is not ${SCANNER_PROTOCOL_VERSION}`);
  return { job, rest: input, leftover };
}

/**
 * The download's progress, from the rest of stdin: how many leading bytes of the staging file are
 * written, one decimal number a line, never going back and never past `sizeBytes`; the end of
 * stdin is the end of the download, complete only when every byte was announced. Anything else
 * fails the pass.
 */
function followStdin(sizeBytes: number, rest: AsyncIterator<Buffer>, leftover: Buffer): FollowedFile {
  let written = 0;
  let failure: Error | undefined;
  let ended = false;
  const waiting: { end: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  const wake = () => {
    for (let i = waiting.length - 1; i >= 0; i--) {
      const w = waiting[i]!;
      if (failure) w.reject(failure);
      else if (w.end <= written) w.resolve();
      else if (ended) w.reject(new Error(`the download ended at ${written} of ${sizeBytes} bytes`));
      else continue;
      waiting.splice(i, 1);
    }
  };
  const read = async () => {
    let pending = leftover.toString('latin1');
    for (;;) {
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (!/^[0-9]{1,16}$/.test(line)) throw new Error('a progress line is not a byte count');
        const n = Number(line);
        if (n < written || n > sizeBytes) throw new Error(`progress ${n} after ${written}, of ${sizeBytes} bytes`);
        written = n;
      }
      if (pending.length > 32) throw new Error('a progress line is too long');
      wake();
      const { value, done } = await rest.next();
      if (done) break;
      pending += value.toString('latin1');
    }
    if (pending.length > 0) throw new Error('the progress ended inside a line');
  };
  let settle!: { resolve: () => void; reject: (e: Error) => void };
  const completed = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  completed.catch(() => undefined);
  read().then(
    () => {
      ended = true;
      if (written === sizeBytes) settle.resolve();
      else settle.reject(new Error(`the download ended at ${written} of ${sizeBytes} bytes`));
      wake();
    },
    (e: unknown) => {
      failure = e as Error;
      settle.reject(failure);
      wake();
    },
  );
  return {
    sizeBytes,
    available: (end) =>
      new Promise<void>((resolve, reject) => {
        waiting.push({ end, resolve, reject });
        wake();
      }),
    complete: () => completed,
  };
}

async function main(): Promise<void> {
  const { job, rest, leftover } = await readJob();
  let outcome: object;
  if (job.kind === 'verdict') {
    const follow = job.follow;
    if (follow !== undefined && (typeof follow !== 'object' || follow === null || !Number.isSafeInteger(follow.sizeBytes) || follow.sizeBytes < 0)) throw new Error('a followed download needs its size');
    outcome = await runScanJob(job, { digestThread, ...(follow ? { follow: followStdin(follow.sizeBytes, rest, leftover) } : {}) });
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
