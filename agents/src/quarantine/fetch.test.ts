// Fetching into staging against real loopback HTTP and HTTPS servers: every limit, every refused
// redirect, and no partial file left behind.
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { checkSourceUrl, fetchToStaging, type FetchOptions } from './fetch.js';
import { Reason } from './verdict.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const BODY = Buffer.alloc(100_000, 7);
let dir: string;
let staging: string;
let servers: (http.Server | https.Server)[] = [];
let ca: string;
let tlsKey: string;
let tlsCert: string;

async function serve(handler: Handler, tls = false): Promise<string> {
  const server = tls ? https.createServer({ key: tlsKey, cert: tlsCert }, handler) : http.createServer(handler);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fetch-test-'));
  const run = promisify(execFile);
  writeFileSync(join(dir, 'san.cnf'), '[ext]\nsubjectAltName=IP:127.0.0.1\nbasicConstraints=CA:false\n');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=fetch test CA', '-days', '2'], { cwd: dir });
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], { cwd: dir });
  await run('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.cnf', '-extensions', 'ext'], { cwd: dir });
  ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
  tlsKey = readFileSync(join(dir, 'server.key'), 'utf8');
  tlsCert = readFileSync(join(dir, 'server.pem'), 'utf8');
});

beforeEach(() => {
  staging = mkdtempSync(join(dir, 'staging-'));
});

afterEach(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  servers = [];
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const options = (change: Partial<FetchOptions> = {}): FetchOptions => ({
  timeoutMs: 10_000,
  idleTimeoutMs: 5_000,
  maxRedirects: 3,
  allowCrossOriginRedirects: false,
  maxBytes: 1_000_000,
  allowInsecureHttp: true,
  ...change,
});

const send = (body: Buffer, headers: Record<string, string | number> = {}): Handler => (_req, res) => {
  res.writeHead(200, { 'content-length': body.length, ...headers });
  res.end(body);
};

it('streams the body into a new 0600 file in a 0700 staging directory', async () => {
  const url = await serve(send(BODY));
  const nested = join(staging, 'deeper');
  const { stage, file } = await fetchToStaging(`${url}/model.gguf`, nested, options());
  expect(stage).toMatchObject({ stage: 'Fetch', status: 'passed', details: { sizeBytes: BODY.length } });
  expect(readFileSync(file!.path).equals(BODY)).toBe(true);
  expect(statSync(file!.path).mode & 0o777).toBe(0o600);
  expect(statSync(nested).mode & 0o777).toBe(0o700);
});

it('fetches over https with a supplied trust anchor, and refuses an unknown certificate', async () => {
  const url = await serve(send(BODY), true);
  expect((await fetchToStaging(`${url}/m`, staging, options({ ca, allowInsecureHttp: false }))).stage.status).toBe('passed');
  expect((await fetchToStaging(`${url}/m`, staging, options({ allowInsecureHttp: false }))).stage).toMatchObject({ status: 'failed', reason: Reason.TransferFailed });
});

it('follows a same-origin redirect', async () => {
  const url = await serve((req, res) => (req.url === '/old' ? res.writeHead(302, { location: '/new' }).end() : send(BODY)(req, res)));
  expect((await fetchToStaging(`${url}/old`, staging, options())).stage.status).toBe('passed');
});

describe('refuses', () => {
  const cases: [string, () => Promise<{ url: string; options?: Partial<FetchOptions> }>, string][] = [
    ['a body larger than the limit, announced', async () => ({ url: await serve(send(BODY)), options: { maxBytes: 1000 } }), Reason.TooLarge],
    ['a body larger than the limit, unannounced', async () => ({ url: await serve((_q, res) => { res.writeHead(200); res.end(BODY); }), options: { maxBytes: 1000 } }), Reason.TooLarge],
    ['a transfer that ends early', async () => ({ url: await serve((_q, res) => { res.writeHead(200, { 'content-length': 1000 }); res.write(Buffer.alloc(10)); setTimeout(() => res.socket?.destroy(), 50); }) }), Reason.TransferFailed],
    ['an HTTP error', async () => ({ url: await serve((_q, res) => res.writeHead(404).end()) }), Reason.HttpStatus],
    ['too many redirects', async () => ({ url: await serve((req, res) => res.writeHead(302, { location: `${req.url}x` }).end()) }), Reason.TooManyRedirects],
    ['a redirect to another origin', async () => { const other = await serve(send(BODY)); return { url: await serve((_q, res) => res.writeHead(302, { location: `${other}/m` }).end()) }; }, Reason.RedirectNotAllowed],
    ['a redirect from https down to http, even across origins allowed', async () => { const plain = await serve(send(BODY)); return { url: await serve((_q, res) => res.writeHead(302, { location: `${plain}/m` }).end(), true), options: { ca, allowCrossOriginRedirects: true } }; }, Reason.RedirectNotAllowed],
    ['a redirect to another scheme', async () => ({ url: await serve((_q, res) => res.writeHead(302, { location: 'ftp://127.0.0.1/m' }).end()) }), Reason.RedirectNotAllowed],
    ['a server that stops sending', async () => ({ url: await serve((_q, res) => { res.writeHead(200, { 'content-length': 1000 }); res.write(Buffer.alloc(10)); }), options: { idleTimeoutMs: 300 } }), Reason.FetchTimedOut],
    ['a transfer slower than the deadline', async () => ({ url: await serve((_q, res) => { res.writeHead(200); const t = setInterval(() => (res.writableEnded ? clearInterval(t) : res.write('x')), 50); res.on('close', () => clearInterval(t)); }), options: { timeoutMs: 500 } }), Reason.FetchTimedOut],
    ['a destination the egress policy does not allow', async () => ({ url: await serve(send(BODY)), options: { allowDestination: () => false } }), Reason.HostNotAllowed],
  ];
  it.each(cases)('%s, leaving no file behind', async (_name, setup, reason) => {
    const { url, options: change } = await setup();
    const { stage, file } = await fetchToStaging(`${url}/m`, staging, options(change));
    expect(stage).toMatchObject({ stage: 'Fetch', status: 'failed', reason });
    expect(file).toBeUndefined();
    expect(readdirSync(staging)).toEqual([]);
  }, 20_000);

  it('follows a cross-origin redirect only when policy allows it', async () => {
    const other = await serve(send(BODY));
    const url = await serve((_q, res) => res.writeHead(302, { location: `${other}/m` }).end());
    expect((await fetchToStaging(`${url}/m`, staging, options({ allowCrossOriginRedirects: true }))).stage.status).toBe('passed');
  });
});

it.each([
  ['http://example.org/m', false, Reason.SchemeNotAllowed],
  ['ftp://example.org/m', true, Reason.SchemeNotAllowed],
  ['file:///etc/passwd', true, Reason.SchemeNotAllowed],
  ['https://user:pass@example.org/m', false, Reason.SourceInvalid],
  ['https://example.org/a b', false, Reason.SourceInvalid],
  ['https://example.org/a\\b', false, Reason.SourceInvalid],
  [`https://example.org/${'a'.repeat(5000)}`, false, Reason.SourceInvalid],
  ['not a url', false, Reason.SourceInvalid],
])('checks the source URL %#', (url, insecure, reason) => {
  expect(checkSourceUrl(url, insecure)).toMatchObject({ ok: false, reason });
});
