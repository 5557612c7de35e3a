// The SHA-256 thread of the one pass (sha256-worker.mjs, "stream" kind), in a module of its own so
// that the scanner child can start it first, while its other modules load and its job is read: the
// thread's start-up (about 40 ms) is then off the critical path of the pass.
import { Worker } from 'node:worker_threads';

export function startDigestThread(): Worker {
  const worker = new Worker(new URL('./sha256-worker.mjs', import.meta.url), {
    workerData: { kind: 'stream' },
    // Plain JavaScript needs no loader; inheriting the caller's (--import tsx) would slow the start five-fold.
    execArgv: [],
    // A small code range: every isolate reserves one, and the scanner's data limit counts it.
    resourceLimits: { codeRangeSizeMb: 16, maxOldGenerationSizeMb: 32 },
  });
  // Until a scan takes it over; a thread that failed meanwhile shows as ended (threadId -1).
  worker.on('error', () => undefined);
  return worker;
}
