// The SHA-256 threads of the quarantine scanner. Plain JavaScript importing only Node built-ins, so
// a thread starts in about 40 ms without a TypeScript loader (one with tsx takes 200-300 ms, all of
// it on the critical path of a pass that takes under a second per GiB). Two kinds, by workerData.kind:
//
// - "stream": the whole-file digest of the one pass. The first message names the shared memory
//   ({ kind: "memory", buffer }): the thread may start before the memory exists. Then the reader
//   hands over ring slots in file order ({ kind: "chunk", slot, offset, length }); each is hashed
//   where it lies and answered with { kind: "hashed", slot }. { kind: "finish" } is answered with
//   { kind: "digest", sha256 }.
// - "ranges": the per-tensor digests of the tensor hash tree. Reads each { start, length } range of
//   the open file descriptor `fd` (shared with the calling thread) and answers with one message, the
//   32-byte digests concatenated in range order.
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

function hashStream(port) {
  let heap = new Uint8Array(0);
  const hash = createHash('sha256');
  port.on('message', (message) => {
    if (message.kind === 'memory') {
      heap = new Uint8Array(message.buffer);
    } else if (message.kind === 'chunk') {
      hash.update(heap.subarray(message.offset, message.offset + message.length));
      port.postMessage({ kind: 'hashed', slot: message.slot });
    } else if (message.kind === 'finish') {
      port.postMessage({ kind: 'digest', sha256: hash.digest('hex') });
    }
  });
}

function hashRanges(port, fd, ranges, chunkBytes) {
  const buffer = Buffer.allocUnsafe(chunkBytes);
  const digests = new Uint8Array(ranges.length * 32);
  ranges.forEach(({ start, length }, i) => {
    const hash = createHash('sha256');
    for (let done = 0; done < length; ) {
      const read = readSync(fd, buffer, 0, Math.min(chunkBytes, length - done), start + done);
      if (read === 0) throw new Error(`the file ended inside a tensor, at ${start + done}`);
      hash.update(buffer.subarray(0, read));
      done += read;
    }
    digests.set(hash.digest(), i * 32);
  });
  port.postMessage(digests, [digests.buffer]);
}

if (parentPort && workerData?.kind === 'stream') hashStream(parentPort);
else if (parentPort && workerData?.kind === 'ranges') hashRanges(parentPort, workerData.fd, workerData.ranges, workerData.chunkBytes);
