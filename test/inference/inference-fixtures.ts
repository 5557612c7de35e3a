// Shared pieces of the inference tests: this node's real sandbox support, tiny models on disk (the
// good one and malformed variants), service plans with bearer tokens, a trusted store backed by a
// map, and a logger whose every line the test can read.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import type { ServicePlan } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { runCommand } from '../../agents/src/exec.js';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { inferenceMetrics } from '../../agents/src/inference/inference-metrics.js';
import { InferenceServiceManager, type InferenceServiceManagerOptions, type TrustedModels } from '../../agents/src/inference/inference-service-manager.js';
import { sandboxCacheDir } from '../../agents/src/sandbox/landlock-launcher.js';
import { detectSandboxSupport, type SandboxSupport } from '../../agents/src/sandbox/sandbox-support.js';
import { encodeGguf } from '../support/gguf-writer.js';
import { tinyModelDocument, writeTinyModel } from '../support/tiny-model.js';

let support: Promise<SandboxSupport> | undefined;

export function nodeSandbox(): Promise<SandboxSupport> {
  support ??= detectSandboxSupport({ exec: runCommand, cacheDir: sandboxCacheDir() });
  return support;
}

export interface ModelFile {
  path: string;
  sha256: string;
  sizeBytes: number;
}

export class ModelDir {
  readonly dir = mkdtempSync(join(tmpdir(), 'secai-inference-'));

  tiny(name = 'tiny.gguf', seed = 1): ModelFile {
    const path = join(this.dir, name);
    return { path, ...writeTinyModel(path, seed) };
  }

  /** The tiny model without llama.feed_forward_length: llama.cpp aborts (GGML_ASSERT) loading it. */
  aborting(name = 'aborting.gguf'): ModelFile {
    const document = tinyModelDocument();
    document.kv = document.kv.filter((kv) => kv.key !== 'llama.feed_forward_length');
    return this.write(name, encodeGguf(document));
  }

  write(name: string, bytes: Buffer): ModelFile {
    const path = join(this.dir, name);
    writeFileSync(path, bytes);
    return { path, sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.length };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class MapTrustedModels implements TrustedModels {
  readonly byDigest = new Map<string, string>();

  constructor(...models: ModelFile[]) {
    for (const model of models) this.trust(model);
  }

  trust(model: ModelFile): void {
    this.byDigest.set(model.sha256, model.path);
  }

  pathOf(sha256: string): string | undefined {
    return this.byDigest.get(sha256);
  }
}

export function bearerToken(): { token: string; sha256: string } {
  const token = `sk-secai-${randomBytes(18).toString('base64url')}`;
  return { token, sha256: createHash('sha256').update(token).digest('hex') };
}

export function servicePlan(model: ModelFile, tokenSha256: string, overrides: Partial<ServicePlan> = {}): ServicePlan {
  return {
    name: 'chat',
    model: 'tiny',
    modelSha256: model.sha256,
    gpuLayers: 0,
    contextSize: 2048,
    threads: 1,
    parallelRequests: 1,
    queueDepth: 4,
    port: 0,
    authTokenSha256: tokenSha256,
    ...overrides,
  };
}

/** A pino logger at trace level whose JSON lines are kept for the test to search. */
export function capturedLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: pino({ level: 'trace' }, sink), lines };
}

export interface ManagerFixture {
  manager: InferenceServiceManager;
  registry: Registry;
  audit: MemoryAuditSink;
  logLines: string[];
}

export async function startManager(trustedModels: TrustedModels, options: Partial<InferenceServiceManagerOptions> = {}): Promise<ManagerFixture> {
  const registry = new Registry();
  const audit = new MemoryAuditSink();
  const { logger, lines } = capturedLogger();
  const manager = new InferenceServiceManager({
    trustedModels,
    sandbox: await nodeSandbox(),
    metrics: inferenceMetrics(registry),
    logger,
    audit,
    listenHost: '127.0.0.1',
    ...options,
  });
  return { manager, registry, audit, logLines: lines };
}

export async function waitFor<T>(probe: () => T | undefined | false, timeoutMs = 30_000, what = 'the condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function baseUrl(manager: InferenceServiceManager, service = 'chat'): string {
  const address = manager.endpoint(service);
  if (!address) throw new Error(`service ${service} is not listening`);
  return `http://127.0.0.1:${address.port}/v1`;
}
