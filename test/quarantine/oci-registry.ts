// A real OCI registry for tests and benchmarks: CNCF distribution (hack/bin/registry, built from the
// Go module proxy) serving a temporary filesystem store on loopback, and oras (hack/bin/oras) to push.
// Optionally over https (a test CA's certificate) and with distribution's own authentication:
// htpasswd (bcrypt, written by `htpasswd -Bbn`) or Bearer tokens from a realm, verified with a JWKS.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const REGISTRY = process.env.TEST_ASSET_REGISTRY ?? join(ROOT, 'hack/bin/registry');
const ORAS = process.env.TEST_ASSET_ORAS ?? join(ROOT, 'hack/bin/oras');

export interface RegistryOptions {
  /** https with this certificate and key (PEM files); `ca` is what clients trust. */
  tls?: { certificate: string; key: string; ca: string };
  /** The one account of htpasswd authentication. */
  htpasswd?: { username: string; password: string };
  /** Token authentication: Bearer tokens from `realm`, signed by a key of the JWKS file. */
  token?: { realm: string; service: string; issuer: string; jwks: string };
  /** The account oras pushes with (htpasswd's when it is set). */
  pushAs?: { username: string; password: string };
}

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

/** Whether anything answers HTTP at `url` (a 401 counts: the registry is up). */
function answers(url: string, ca?: string): Promise<boolean> {
  if (!ca) return fetch(url).then(() => true, () => false);
  return new Promise((done) => {
    https.get(url, { ca }, (res) => done((res.resume(), true))).on('error', () => done(false));
  });
}

/** Starts a registry storing under `dir`; stop() ends it (the caller removes `dir`). */
export async function startRegistry(dir: string, options: RegistryOptions = {}): Promise<TestRegistry> {
  const storage = join(dir, 'storage');
  const host = `127.0.0.1:${await freePort()}`;
  const tls = options.tls ? `, tls: {certificate: ${options.tls.certificate}, key: ${options.tls.key}}` : '';
  let auth = '';
  if (options.htpasswd) {
    const { stdout } = await run('htpasswd', ['-Bbn', options.htpasswd.username, options.htpasswd.password]);
    writeFileSync(join(dir, 'htpasswd'), stdout);
    auth = `auth: {htpasswd: {realm: test-registry, path: ${join(dir, 'htpasswd')}}}\n`;
  } else if (options.token) {
    const t = options.token;
    auth = `auth: {token: {realm: "${t.realm}", service: ${t.service}, issuer: ${t.issuer}, jwks: ${t.jwks}}}\n`;
  }
  writeFileSync(join(dir, 'registry.yml'), `version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: ${storage}}}\nhttp: {addr: "${host}"${tls}}\n${auth}`);
  const registry: ChildProcess = spawn(REGISTRY, ['serve', join(dir, 'registry.yml')], { stdio: 'ignore' });
  const ca = options.tls ? readFileSync(options.tls.ca, 'utf8') : undefined;
  const stop = async () => {
    if (registry.exitCode !== null || registry.signalCode !== null) return;
    registry.kill('SIGTERM');
    await once(registry, 'exit');
  };
  for (let i = 0; ; i++) {
    if (await answers(`${options.tls ? 'https' : 'http'}://${host}/v2/`, ca)) break;
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
      const account = options.pushAs ?? options.htpasswd;
      const access = [...(options.tls ? ['--ca-file', options.tls.ca] : ['--plain-http'])];
      if (account) {
        // oras reads the same docker config.json format that pull Secrets and --registry-config hold.
        const config = join(work, '.registry-config.json');
        writeFileSync(config, JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${account.username}:${account.password}`).toString('base64') } } }));
        access.push('--registry-config', config);
      }
      const { stdout } = await run(ORAS, ['push', ...access, '--format', 'json', ...args, `${host}/${repository}:${tag}`, ...layers], { cwd: work, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 });
      return (JSON.parse(stdout) as { digest: string }).digest;
    },
    stop,
  };
}
