// Stands in for the agent process in the worker-lifetime test: starts a sandboxed worker, prints
// its process id, and waits to be killed.
import { InferenceWorker } from '../../agents/src/inference/inference-worker.js';
import { nodeSandbox } from './inference-fixtures.js';

const [modelPath, sha256] = process.argv.slice(2) as [string, string];
const worker = await InferenceWorker.start({ model: { path: modelPath, sha256 }, gpuLayers: 0, contextSize: 512, threads: 1, sequences: 1, sandbox: await nodeSandbox() });
process.stdout.write(`worker ${worker.pid}\n`);
setInterval(() => undefined, 60_000);
