// Each sandbox layer, alone and together, on the real kernel: a probe program runs inside and
// reports what it could do. The host side of every network attempt is a listener on the host's
// own loopback, which the sandbox must not reach.
import { existsSync, realpathSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../exec.js';
import { spawnSandboxed, type SandboxSpec } from './bubblewrap.js';
import { buildLandlockLauncher, readLandlockAbi, sandboxCacheDir } from './landlock-launcher.js';
import { detectSandboxSupport, describeSandboxSupport, type SandboxSupport } from './sandbox-support.js';

const node = realpathSync(process.execPath);
const system = ['/usr', '/lib', '/lib64'].filter(existsSync);

const PROBE = String.raw`
const fs = require('fs'), net = require('net'), cp = require('child_process');
const out = {};
const tryFs = (key, fn) => { try { fn(); out[key] = 'ok'; } catch (e) { out[key] = e.code || String(e); } };
tryFs('readHostFile', () => fs.readFileSync(process.env.HOST_FILE));
tryFs('listRoot', () => fs.readdirSync('/'));
tryFs('readSystemFile', () => fs.readFileSync('/usr/lib/os-release'));
tryFs('writeScratch', () => fs.writeFileSync('/tmp/probe', 'x'));
tryFs('writeSystem', () => fs.writeFileSync('/usr/probe', 'x'));
out.interfaces = fs.readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).map((l) => l.split(':')[0].trim()).filter(Boolean);
out.seccompMode = (fs.readFileSync('/proc/self/status', 'utf8').match(/^Seccomp:\s*(\d)/m) || [])[1];
const u = cp.spawnSync('/usr/bin/unshare', ['-U', 'true'], { encoding: 'utf8' });
out.unshare = u.status === 0 ? 'ok' : (u.stderr || '').trim();
const s = net.createServer().listen('/tmp/unix.sock', () => { out.unixListen = 'ok'; s.close(); connect(); });
s.on('error', (e) => { out.unixListen = e.code; connect(); });
function connect() {
  const c = net.connect(Number(process.env.HOST_PORT), '127.0.0.1');
  c.on('connect', () => { out.connectHostLoopback = 'ok'; c.destroy(); done(); });
  c.on('error', (e) => { out.connectHostLoopback = e.code; done(); });
}
function done() { process.stdout.write(JSON.stringify(out)); }
`;

function probeSpec(env: Record<string, string>): SandboxSpec {
  const binds = [...system, node].map((path) => ({ source: path, target: path }));
  return {
    argv: [node, '-e', PROBE],
    readOnlyBinds: binds,
    devices: [],
    symlinks: [],
    scratch: { path: '/tmp', sizeBytes: 8 * 1024 * 1024 },
    env: { HOME: '/tmp', ...env },
    cwd: '/tmp',
    landlock: { read: ['/proc', '/dev'], readExec: [...system, node], write: ['/tmp', '/dev/null'], devices: [] },
  };
}

async function runProbe(support: SandboxSupport, env: Record<string, string>): Promise<Record<string, unknown>> {
  const { child } = spawnSandboxed(probeSpec(env), support);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`probe exited ${code}: ${stderr}`);
  return JSON.parse(stdout) as Record<string, unknown>;
}

let support: SandboxSupport;
let dir: string;
let hostFile: string;
let listener: Server;
let env: Record<string, string>;

beforeAll(async () => {
  support = await detectSandboxSupport({ exec: runCommand, cacheDir: sandboxCacheDir() });
  dir = await mkdtemp(join(tmpdir(), 'secai-sandbox-'));
  hostFile = join(dir, 'secret');
  await writeFile(hostFile, 'host secret');
  listener = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as { port: number }).port;
  env = { HOST_FILE: hostFile, HOST_PORT: String(port) };
});

afterAll(async () => {
  await new Promise((resolve) => listener.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const withLayers = (seccomp: boolean, landlock: boolean): SandboxSupport => ({
  bubblewrap: support.bubblewrap,
  seccomp: seccomp ? support.seccomp : { available: false, why: 'left out by the test' },
  landlock: landlock ? support.landlock : { available: false, why: 'left out by the test' },
});

describe('this node', () => {
  it('offers bubblewrap, a seccomp filter and Landlock', () => {
    expect(support.seccomp.available).toBe(true);
    expect(support.landlock.available).toBe(true);
    expect(describeSandboxSupport(support)).toMatch(/^bubblewrap, seccomp (x86_64|aarch64), Landlock ABI \d+$/);
  });
});

describe('bubblewrap alone', () => {
  it('gives a private loopback, no host files and read-only system paths', async () => {
    const result = await runProbe(withLayers(false, false), env);
    expect(result).toMatchObject({
      interfaces: ['lo'],
      connectHostLoopback: 'ECONNREFUSED',
      readHostFile: 'ENOENT',
      readSystemFile: 'ok',
      writeSystem: 'EROFS',
      writeScratch: 'ok',
      listRoot: 'ok',
      seccompMode: '0',
      unixListen: 'ok',
    });
    // --disable-userns: no further namespaces even without seccomp.
    expect(result.unshare).not.toBe('ok');
  });
});

describe('the seccomp filter', () => {
  it('refuses IP sockets and namespaces, and leaves UNIX sockets', async () => {
    const result = await runProbe(withLayers(true, false), env);
    expect(result).toMatchObject({ seccompMode: '2', connectHostLoopback: 'EPERM', unixListen: 'ok', writeScratch: 'ok' });
    expect(result.unshare).toMatch(/Operation not permitted/);
  });
});

describe('the Landlock launcher', () => {
  it('reads the kernel ABI', async () => {
    const launcher = await buildLandlockLauncher({ exec: runCommand, cacheDir: sandboxCacheDir() });
    const abi = await readLandlockAbi(runCommand, launcher);
    expect(abi).toBeGreaterThanOrEqual(1);
    expect(support.landlock).toMatchObject({ available: true, abi });
  });

  it('confines the program to its grants, TCP included', async () => {
    const result = await runProbe(withLayers(false, true), env);
    expect(result).toMatchObject({ seccompMode: '0', listRoot: 'EACCES', readSystemFile: 'ok', writeScratch: 'ok', unixListen: 'ok' });
    if (support.landlock.available && support.landlock.abi >= 4) expect(result.connectHostLoopback).toBe('EACCES');
  });

  it('fails closed on a path it cannot open', async () => {
    if (!support.landlock.available) throw new Error('Landlock unavailable');
    const result = await runCommand(support.landlock.launcher, ['--read', join(dir, 'missing'), '--', '/usr/bin/true']);
    expect(result.code).toBe(126);
    expect(result.stderr).toMatch(/No such file or directory/);
  });

  it('refuses to run a program without any rule', async () => {
    if (!support.landlock.available) throw new Error('Landlock unavailable');
    const result = await runCommand(support.landlock.launcher, ['--', '/usr/bin/true']);
    expect(result.code).toBe(126);
    expect(result.stderr).toMatch(/no rule/);
  });
});

describe('all layers together', () => {
  it('apply at once', async () => {
    const result = await runProbe(support, env);
    expect(result).toMatchObject({
      interfaces: ['lo'],
      seccompMode: '2',
      listRoot: 'EACCES',
      connectHostLoopback: 'EPERM',
      readHostFile: 'ENOENT',
      writeSystem: 'EROFS',
      writeScratch: 'ok',
    });
  });
});
