// The token relay copies the Pod's projected token to the host agent's token file: atomically, 0600,
// only when it changed, never through a planted symlink, and never anything that is not a token.
// The last test runs the real command against a directory laid out the way the kubelet writes
// projected volumes (`token -> ..data/token`, `..data` swapped on rotation).
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_TOKEN_BYTES, parseTokenRelayConfig, relayToken, TokenRelayConfigError } from './token-relay.js';

const REPO_ROOT = new URL('../../..', import.meta.url).pathname;
const jwt = (n: number) => `eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ${n}.c2lnbmF0dXJl${n}`;

let dir: string;
let source: string;
let host: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'secai-token-relay-'));
  mkdirSync(join(dir, 'pod'));
  mkdirSync(join(dir, 'host'), { mode: 0o700 });
  source = join(dir, 'pod', 'token');
  host = join(dir, 'host', 'token');
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mode = (path: string) => lstatSync(path).mode & 0o777;

describe('relayToken', () => {
  it('writes the token with mode 0600 whatever the umask, and leaves no partial file', () => {
    writeFileSync(source, `${jwt(1)}\n`);
    const umask = process.umask(0);
    try {
      expect(relayToken(source, host)).toBe('written');
    } finally {
      process.umask(umask);
    }
    expect(readFileSync(host, 'utf8')).toBe(jwt(1));
    expect(mode(host)).toBe(0o600);
    expect(readdirSync(join(dir, 'host'))).toEqual(['token']);
  });

  it('leaves an identical token alone and replaces a rotated one by rename', () => {
    writeFileSync(source, jwt(1));
    relayToken(source, host);
    const first = statSync(host).ino;
    expect(relayToken(source, host)).toBe('unchanged');
    expect(statSync(host).ino).toBe(first);

    writeFileSync(source, jwt(2));
    expect(relayToken(source, host)).toBe('written');
    expect(readFileSync(host, 'utf8')).toBe(jwt(2));
    // A new inode: a reader holding the old file open never sees a mix of two tokens.
    expect(statSync(host).ino).not.toBe(first);
    expect(readdirSync(join(dir, 'host'))).toEqual(['token']);
  });

  it('rewrites a token whose mode was widened', () => {
    writeFileSync(source, jwt(1));
    writeFileSync(host, jwt(1), { mode: 0o644 });
    expect(relayToken(source, host)).toBe('written');
    expect(mode(host)).toBe(0o600);
  });

  it('replaces a symlink planted at the host path instead of writing through it', () => {
    const elsewhere = join(dir, 'elsewhere');
    writeFileSync(elsewhere, 'precious');
    symlinkSync(elsewhere, host);
    writeFileSync(source, jwt(1));
    expect(relayToken(source, host)).toBe('written');
    expect(lstatSync(host).isFile()).toBe(true);
    expect(readFileSync(elsewhere, 'utf8')).toBe('precious');
  });

  it.each([
    ['an empty file', ''],
    ['text that is not a JWT', 'hello world'],
    ['two tokens', `${jwt(1)}\n${jwt(2)}`],
    ['a token over the size bound', `${'a'.repeat(MAX_TOKEN_BYTES)}.b.c`],
  ])('refuses %s and keeps the relayed token', (_, content) => {
    writeFileSync(source, jwt(1));
    relayToken(source, host);
    writeFileSync(source, content);
    expect(() => relayToken(source, host)).toThrow(/does not hold a JWT|larger than/);
    expect(readFileSync(host, 'utf8')).toBe(jwt(1));
  });

  it('fails when the projected token is missing, creating nothing', () => {
    expect(() => relayToken(source, host)).toThrow(/ENOENT/);
    expect(existsSync(host)).toBe(false);
  });

  it('fails when the host directory is missing', () => {
    writeFileSync(source, jwt(1));
    expect(() => relayToken(source, join(dir, 'absent', 'token'))).toThrow(/ENOENT/);
  });
});

describe('parseTokenRelayConfig', () => {
  it('defaults to the paths the chart and the node image use', () => {
    expect(parseTokenRelayConfig([], {})).toEqual({
      tokenFile: '/var/run/secrets/secai.io/token',
      hostTokenFile: '/run/secai/agent/token',
      intervalMs: 60_000,
      logLevel: 'info',
    });
  });

  it('takes flags over SECAI_* variables', () => {
    const config = parseTokenRelayConfig(['--interval-seconds', '5'], { SECAI_INTERVAL_SECONDS: '9', SECAI_HOST_TOKEN_FILE: '/run/x/token' });
    expect(config.intervalMs).toBe(5000);
    expect(config.hostTokenFile).toBe('/run/x/token');
  });

  it.each([
    [['--interval-seconds', '0']],
    [['--interval-seconds', '301']],
    [['--interval-seconds', '1.5']],
    [['--host-token-file', 'relative/token']],
    [['--token-file', '/a', '--host-token-file', '/a']],
  ])('refuses %j', (argv) => {
    expect(() => parseTokenRelayConfig(argv, {})).toThrow(TokenRelayConfigError);
  });

  it('refuses unknown flags', () => {
    expect(() => parseTokenRelayConfig(['--token', 'x'], {})).toThrow();
  });
});

describe('the token-relay command', () => {
  /** The kubelet's AtomicWriter layout: a timestamped directory behind the `..data` symlink. */
  function project(volume: string, generation: number, token: string): void {
    const payload = join(volume, `..gen_${generation}`);
    mkdirSync(payload);
    writeFileSync(join(payload, 'token'), token, { mode: 0o600 });
    symlinkSync(`..gen_${generation}`, join(volume, '..data_tmp'));
    renameSync(join(volume, '..data_tmp'), join(volume, '..data'));
    if (!existsSync(join(volume, 'token'))) symlinkSync('..data/token', join(volume, 'token'));
  }

  it('follows a rotation of the projected volume and stops cleanly on SIGTERM', async () => {
    const volume = join(dir, 'projected');
    mkdirSync(volume);
    project(volume, 1, jwt(1));
    const child = spawn(
      'setpriv',
      ['--pdeathsig', 'KILL', '--', process.execPath, '--import', 'tsx', join(REPO_ROOT, 'agents/src/cmd/token-relay.ts'), '--token-file', join(volume, 'token'), '--host-token-file', host, '--interval-seconds', '1'],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const until = async (what: () => boolean, ms: number) => {
      const deadline = Date.now() + ms;
      while (!what()) {
        if (Date.now() > deadline) throw new Error(`timed out; relay output:\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      await until(() => existsSync(host) && readFileSync(host, 'utf8') === jwt(1), 15_000);
      project(volume, 2, jwt(2));
      await until(() => readFileSync(host, 'utf8') === jwt(2), 5_000);
      expect(mode(host)).toBe(0o600);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(output).toContain('"msg":"token relayed"');
    // The log names the file, never the token.
    expect(output).not.toContain('c2lnbmF0dXJl');
  }, 30_000);
});
