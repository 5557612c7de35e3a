// Worker-thread entry of the one pass: adapts messages to a StreamConsumer over the shared ring.
import type { WasmMemory } from './wasm.js';
import { parentPort, workerData } from 'node:worker_threads';
import { StreamConsumer, type TensorRange } from './stream-consumer.js';

export type ScanWorkerMessage =
  | { kind: 'layout'; ranges: TensorRange[] }
  | { kind: 'chunk'; slot: number; offset: number; length: number; position: number }
  | { kind: 'finish' };

export interface ScanWorkerData {
  memory: WasmMemory;
  scratch: { offset: number; bytes: number };
}

const port = parentPort;
if (port) {
  const { memory, scratch } = workerData as ScanWorkerData;
  const consumer = new StreamConsumer(memory, true, scratch);
  port.on('message', (message: ScanWorkerMessage) => {
    switch (message.kind) {
      case 'layout':
        consumer.setLayout(message.ranges);
        return;
      case 'chunk':
        consumer.push(message.offset, message.length, message.position);
        port.postMessage({ kind: 'released', slot: message.slot });
        return;
      case 'finish': {
        const result = consumer.finish();
        port.postMessage({ kind: 'result', result }, [result.tensorDigests.buffer as ArrayBuffer]);
        return;
      }
    }
  });
  port.postMessage({ kind: 'ready' });
}
