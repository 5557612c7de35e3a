// A real OCI registry for tests and benchmarks: CNCF distribution (hack/bin/registry, built from the
// Go module proxy) serving a temporary filesystem store on loopback, and oras (hack/bin/oras) to push.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const REGISTRY = process.env.TEST_ASSET_REGISTRY ?? join(ROOT, 'hack/bin/registry');
const ORAS = process.env.TEST_ASSET_ORAS ?? join(ROOT, 'hack/bin/oras');

export interface TestRegistry {
  /** 127.0.0.1:PORT */
  host: string;
  /** The registry's filesystem store (docker/registry/v2/...). */
  storage: string;
  /** oras push of `files` (written into a fresh directory) as `repository:tag`; returns the manifest digest. */
  push(repository: string, tag: string, files: Record<string, Buffer | string>, args: string[], layers: string[]): Promise<string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  return port;
}

/** Starts a registry storing under `dir`; stop() ends it (the caller removes `dir`). */
export async function startRegistry(dir: string): Promise<TestRegistry> {
  const storage = join(dir, 'storage');
  const host = `127.0.0.1:${await freePort()}`;
  writeFileSync(join(dir, 'registry.yml'), `version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: ${storage}}}\nhttp: {addr: "${host}"}\n`);
  const registry: ChildProcess = spawn(REGISTRY, ['serve', join(dir, 'registry.yml')], { stdio: 'ignore' });
  const stop = async () => {
    if (registry.exitCode !== null || registry.signalCode !== null) return;
    registry.kill('SIGTERM');
    await once(registry, 'exit');
  };
  for (let i = 0; ; i++) {
    if (await fetch(`http://${host}/v2/`).then((r) => r.ok, () => false)) break;
    if (i > 100) {
      await stop();
      throw new Error('the registry did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host,
    storage,
    async push(repository, tag, files, args, layers) {
      const work = mkdtempSync(join(dir, 'push-'));
      for (const [name, bytes] of Object.entries(files)) writeFileSync(join(work, name), bytes);
      const { stdout } = await run(ORAS, ['push', '--plain-http', '--format', 'json', ...args, `${host}/${repository}:${tag}`, ...layers], { cwd: work, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 });
      return (JSON.parse(stdout) as { digest: string }).digest;
    },
    stop,
  };
}
