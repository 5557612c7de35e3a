// The quarantine's behavioural smoke test runs a model that is not trusted yet: it loads it in the
// same sandboxed worker as serving does (no network, read-only model, Landlock, seccomp), greedy
// (temperature 0, fixed seed) so answers are reproducible, with bounded prompts, answers and time.
// The worker is never restarted here: a model that aborts it is a finding, reported as an error.
import type { SandboxSupport } from '../sandbox/sandbox-support.js';
import { GenerationError, InferenceWorker, type WorkerExit } from './inference-worker.js';

/** Structurally the quarantine's SmokeTestModel, plus a way to end the worker. */
export interface SandboxedModelAnswerer {
  answer(prompt: string): Promise<string>;
  close(): Promise<void>;
}

export interface SmokeTestLoad {
  /** The quarantined file on the host. */
  modelPath: string;
  /** The digest the quarantine computed; the worker re-hashes the file it loads against it. */
  sha256: string;
  sandbox: SandboxSupport;
  maxTokens?: number;
  contextSize?: number;
  loadTimeoutMs?: number;
  answerTimeoutMs?: number;
}

export const SMOKE_TEST_LIMITS = {
  maxTokens: 512,
  defaultMaxTokens: 64,
  promptChars: 16 * 1024,
  defaultContextSize: 1024,
} as const;

export class SmokeTestModelError extends Error {
  override name = 'SmokeTestModelError';
}

export async function loadModelForSmokeTest(load: SmokeTestLoad): Promise<SandboxedModelAnswerer> {
  const maxTokens = load.maxTokens ?? SMOKE_TEST_LIMITS.defaultMaxTokens;
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > SMOKE_TEST_LIMITS.maxTokens) {
    throw new SmokeTestModelError(`maxTokens must be 1..${SMOKE_TEST_LIMITS.maxTokens}`);
  }
  const worker = await InferenceWorker.start({
    model: { path: load.modelPath, sha256: load.sha256 },
    gpuLayers: 0,
    contextSize: load.contextSize ?? SMOKE_TEST_LIMITS.defaultContextSize,
    threads: 1,
    sequences: 1,
    sandbox: load.sandbox,
    loadTimeoutMs: load.loadTimeoutMs ?? 60_000,
  });
  let exit: WorkerExit | undefined;
  void worker.exited.then((e) => (exit = e));
  const answerTimeoutMs = load.answerTimeoutMs ?? 30_000;
  // One sequence: answers are taken one at a time.
  let previous: Promise<unknown> = Promise.resolve();

  const answerOne = async (prompt: string): Promise<string> => {
    if (prompt.length > SMOKE_TEST_LIMITS.promptChars) throw new SmokeTestModelError(`the prompt exceeds ${SMOKE_TEST_LIMITS.promptChars} characters`);
    let text = '';
    const timeout = AbortSignal.timeout(answerTimeoutMs);
    try {
      const outcome = await worker.generate(
        { kind: 'chat', messages: [{ role: 'user', content: prompt }], maxTokens, temperature: 0, topP: 1, seed: 0, stop: [] },
        (piece) => (text += piece),
        timeout,
      );
      if (outcome.finishReason === 'cancelled') throw new SmokeTestModelError(`the model did not answer within ${answerTimeoutMs} ms`);
      return text;
    } catch (error) {
      if (error instanceof GenerationError && error.code === 'worker_exited') {
        const how = (exit ?? (await worker.exited)).description;
        throw new SmokeTestModelError(`the model's worker ${how} while answering`);
      }
      throw error;
    }
  };

  return {
    answer(prompt: string): Promise<string> {
      const result = previous.then(() => answerOne(prompt));
      previous = result.catch(() => undefined);
      return result;
    },
    async close(): Promise<void> {
      await worker.stop();
    },
  };
}
