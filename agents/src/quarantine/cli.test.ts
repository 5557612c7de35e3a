// secai-quarantine as a user runs it: the bin launcher in a child process, real files and a
// loopback server, real cosign signatures; exit status 0 trusted, 1 rejected, 2 usage error.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startSigningLab, TEST_IDENTITY, TEST_ISSUER, type SigningLab } from '../../../test/quarantine/signing-fixtures.js';
import { tinyModelBytes } from '../../../test/support/tiny-model.js';
import { parseCommandLine, UsageError } from './cli.js';

const BIN = resolve(import.meta.dirname, '../../../bin/secai-quarantine.mjs');
const model = tinyModelBytes();
const sha256 = createHash('sha256').update(model).digest('hex');
let dir: string;
let file: string;
let lab: SigningLab;
let server: http.Server;
let url: string;
const paths: Record<string, string> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cli-test-'));
  file = join(dir, 'model.gguf');
  writeFileSync(file, model);
  lab = await startSigningLab();
  const put = (name: string, content: string) => {
    paths[name] = join(dir, name);
    writeFileSync(paths[name]!, content);
  };
  put('keyed.json', await lab.signBlob(file));
  put('keyless.json', await lab.signKeyless(file));
  put('key.pub', lab.publicKeyPem);
  put('other.pub', lab.otherPublicKeyPem);
  put('root.json', lab.trustedRootJson);
  server = http.createServer((_req, res) => res.writeHead(200, { 'content-length': model.length }).end(model));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/model.gguf`;
}, 120_000);

afterAll(async () => {
  server?.closeAllConnections();
  server?.close();
  await lab?.close();
  rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(realpathSync(process.execPath), [BIN, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      done({ code: error ? Number((error as NodeJS.ErrnoException & { code: unknown }).code) : 0, stdout, stderr });
    });
  });
}

it('exits 0 and prints every stage for a trusted file', async () => {
  const { code, stdout } = await cli([file, '--sha256', sha256]);
  expect(code).toBe(0);
  expect(stdout).toMatch(/^passed {2}Integrity/m);
  expect(stdout.trim().split('\n').at(-1)).toBe(`TRUSTED ${sha256}`);
}, 60_000);

it('exits 1 and prints the verdict as JSON for a rejected file', async () => {
  const { code, stdout } = await cli([file, '--sha256', 'f'.repeat(64), '--json']);
  expect(code).toBe(1);
  const verdict = JSON.parse(stdout);
  expect(verdict).toMatchObject({ trusted: false, stage: 'Integrity', reason: 'DigestMismatch', sha256 });
  expect(verdict.stages.map((s: { stage: string }) => s.stage)).toEqual(['Fetch', 'Sandbox', 'Integrity', 'Signature', 'Format', 'StaticScan', 'SmokeTest', 'Promotion']);
}, 60_000);

it('fetches a URL', async () => {
  expect((await cli([url, '--sha256', sha256, '--allow-insecure-http'])).code).toBe(0);
  const refused = await cli([url, '--sha256', sha256, '--json']);
  expect(refused.code).toBe(1);
  expect(JSON.parse(refused.stdout)).toMatchObject({ stage: 'Fetch', reason: 'SchemeNotAllowed' });
}, 60_000);

it('verifies keyed and keyless signatures', async () => {
  expect((await cli([file, '--sha256', sha256, '--bundle', paths['keyed.json']!, '--key', paths['key.pub']!])).code).toBe(0);
  const wrong = await cli([file, '--sha256', sha256, '--bundle', paths['keyed.json']!, '--key', paths['other.pub']!, '--json']);
  expect(JSON.parse(wrong.stdout)).toMatchObject({ stage: 'Signature', reason: 'KeyMismatch' });
  const identity = `^${TEST_IDENTITY.replaceAll('.', '\\.')}$`;
  expect((await cli([file, '--sha256', sha256, '--bundle', paths['keyless.json']!, '--identity', identity, '--issuer', TEST_ISSUER, '--trusted-root', paths['root.json']!])).code).toBe(0);
  const stranger = await cli([file, '--sha256', sha256, '--bundle', paths['keyless.json']!, '--identity', '^ops@example\\.org$', '--issuer', TEST_ISSUER, '--trusted-root', paths['root.json']!, '--json']);
  expect(JSON.parse(stranger.stdout)).toMatchObject({ stage: 'Signature', reason: 'IdentityMismatch' });
}, 120_000);

it('prints the usage and exits 0 for --help and -h', async () => {
  for (const flag of ['--help', '-h']) {
    const { code, stdout, stderr } = await cli([flag]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout).toMatch(/^usage: secai-quarantine <file\|url\|oci:/);
    expect(stdout).toContain('exit status: 0 trusted, 1 rejected, 2 usage error');
  }
  expect((await cli([file, '--sha256', sha256, '--help'])).code).toBe(0);
  expect((await cli(['--help', '--fast'])).code).toBe(2);
});

it('exits 2 on usage errors', async () => {
  const { code, stderr } = await cli([file]);
  expect(code).toBe(2);
  expect(stderr).toContain('usage: secai-quarantine');
  expect((await cli([file, '--sha256', sha256, '--bundle', join(dir, 'missing.json'), '--key', paths['key.pub']!])).code).toBe(2);
});

describe('parses the command line', () => {
  const hex = 'a'.repeat(64);
  it('a file with a pin and size', () => {
    expect(parseCommandLine(['m.gguf', '--sha256', hex.toUpperCase(), '--size', '42'])).toEqual({ source: { kind: 'file', path: 'm.gguf' }, sha256: hex, sizeBytes: 42, json: false });
  });
  it('a URL with a keyless signature', () => {
    expect(parseCommandLine(['https://h/m', '--sha256', hex, '--bundle', 'b', '--identity', '^x$', '--issuer', 'https://i', '--trusted-root', 'r', '--json'])).toEqual({
      source: { kind: 'url', url: 'https://h/m', allowInsecureHttp: false },
      sha256: hex,
      signature: { bundle: 'b', identity: '^x$', issuer: 'https://i', trustedRoot: 'r' },
      json: true,
    });
  });
  it('an OpenSSF model signature with a certificate chain and the file it names', () => {
    expect(parseCommandLine(['m.gguf', '--sha256', hex, '--model-signature', 's', '--certificate-chain', 'c', '--model-file', 'w/m.gguf'])).toEqual({
      source: { kind: 'file', path: 'm.gguf' },
      sha256: hex,
      signature: { bundle: 's', certificateChain: 'c', modelSigning: { file: 'w/m.gguf' } },
      json: false,
    });
    expect(parseCommandLine(['m.gguf', '--sha256', hex, '--model-signature', 's', '--key', 'k'])).toMatchObject({ signature: { bundle: 's', key: 'k', modelSigning: {} } });
  });
  it('an OCI source with a registry config', () => {
    expect(parseCommandLine([`oci://registry.example:5000/models/m@sha256:${hex}`, '--sha256', hex, '--registry-config', 'config.json'])).toEqual({
      source: { kind: 'oci', oci: { registry: 'registry.example:5000', repository: 'models/m', digest: `sha256:${hex}`, plainHttp: false } },
      sha256: hex,
      registryConfig: 'config.json',
      json: false,
    });
  });
  it.each([
    ['a registry config for a source that is not OCI', ['https://h/m', '--sha256', hex, '--registry-config', 'c.json']],
    ['both a bundle and a model signature', ['a', '--sha256', hex, '--bundle', 'b', '--model-signature', 's', '--key', 'k']],
    ['a certificate chain for a cosign bundle', ['a', '--sha256', hex, '--bundle', 'b', '--certificate-chain', 'c']],
    ['a model file without a model signature', ['a', '--sha256', hex, '--bundle', 'b', '--key', 'k', '--model-file', 'm']],
    ['a key and a certificate chain', ['a', '--sha256', hex, '--model-signature', 's', '--key', 'k', '--certificate-chain', 'c']],
    ['no target', ['--sha256', hex]],
    ['two targets', ['a', 'b', '--sha256', hex]],
    ['no pin', ['a']],
    ['a short pin', ['a', '--sha256', 'abc']],
    ['a bad size', ['a', '--sha256', hex, '--size', '-1']],
    ['an unknown flag', ['a', '--sha256', hex, '--fast']],
    ['a key without a bundle', ['a', '--sha256', hex, '--key', 'k']],
    ['a bundle without a key or identity', ['a', '--sha256', hex, '--bundle', 'b']],
    ['both a key and an identity', ['a', '--sha256', hex, '--bundle', 'b', '--key', 'k', '--identity', '^x$', '--issuer', 'i', '--trusted-root', 'r']],
    ['an incomplete identity', ['a', '--sha256', hex, '--bundle', 'b', '--identity', '^x$']],
    ['an unanchored identity', ['a', '--sha256', hex, '--bundle', 'b', '--identity', 'x', '--issuer', 'i', '--trusted-root', 'r']],
  ])('refuses %s', (_name, argv) => {
    expect(() => parseCommandLine(argv)).toThrow(UsageError);
  });
});
