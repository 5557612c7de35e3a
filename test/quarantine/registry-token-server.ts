// What a registry with authentication needs around it in tests: a test CA with a certificate for
// 127.0.0.1 (openssl), and a token server for distribution's token authentication — the Docker token
// protocol (GET with Basic credentials; POST of an OAuth2 password or refresh_token grant), answering
// ES256 JWTs whose `kid` names the one key of the JWKS file the registry verifies with. It records
// every request, and every token it issued, so that tests can say who was asked and what leaked.
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestTls {
  ca: string;
  certificate: string;
  key: string;
}

/** A CA and a server certificate for IP 127.0.0.1, as PEM files in `dir`. */
export async function makeTestTls(dir: string): Promise<TestTls> {
  const path = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', path('ca.key'), '-out', path('ca.pem'), '-subj', '/O=secai-test/CN=registry-ca', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  await run('openssl', ['req', ...ec, '-keyout', path('server.key'), '-out', path('server.csr'), '-subj', '/O=secai-test/CN=127.0.0.1']);
  writeFileSync(path('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await run('openssl', ['x509', '-req', '-in', path('server.csr'), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial', '-days', '2', '-out', path('server.pem'), '-extfile', path('server.ext')]);
  return { ca: path('ca.pem'), certificate: path('server.pem'), key: path('server.key') };
}

export interface TokenRequest {
  method: string;
  /** The account it authenticated as, if any. */
  account?: string;
  authorization?: string;
  grant?: string;
}

export interface TokenServer {
  realm: string;
  port: number;
  service: string;
  issuer: string;
  /** The JWKS file for the registry's `auth.token.jwks`. */
  jwks: string;
  requests: TokenRequest[];
  issued: string[];
  close(): Promise<void>;
}

const KID = 'secai-test-token-key';
const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** Grants every scope asked for to an account whose password (or identity token) is right; 401 otherwise. */
export async function startTokenServer(dir: string, tls: TestTls, accounts: Record<string, string>, identityTokens: Record<string, string>): Promise<TokenServer> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks = join(dir, 'jwks.json');
  writeFileSync(jwks, JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: KID, alg: 'ES256', use: 'sig' }] }));
  const service = 'secai-test-registry';
  const issuer = 'secai-test-token-server';
  const requests: TokenRequest[] = [];
  const issued: string[] = [];
  const token = (account: string, scopes: string[]) => {
    const now = Math.floor(Date.now() / 1000);
    const access = scopes.map((s) => s.split(':')).filter((p) => p.length >= 3).map(([type, ...rest]) => ({ type, name: rest.slice(0, -1).join(':'), actions: rest.at(-1)!.split(',') }));
    const input = `${b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: KID }))}.${b64url(JSON.stringify({ iss: issuer, sub: account, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access }))}`;
    const jwt = `${input}.${b64url(sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }))}`;
    issued.push(jwt);
    return jwt;
  };
  const server = https.createServer({ cert: readFileSync(tls.certificate), key: readFileSync(tls.key) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'https://token.invalid');
      const form = new URLSearchParams(req.method === 'POST' ? Buffer.concat(chunks).toString('utf8') : '');
      const record: TokenRequest = { method: req.method ?? '', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}), ...(form.get('grant_type') ? { grant: form.get('grant_type')! } : {}) };
      requests.push(record);
      let account: string | undefined;
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
      if (basic) {
        const [user, ...pass] = Buffer.from(basic[1]!, 'base64').toString('utf8').split(':');
        if (accounts[user!] !== undefined && accounts[user!] === pass.join(':')) account = user;
      } else if (form.get('grant_type') === 'password' && accounts[form.get('username') ?? ''] === form.get('password')) account = form.get('username')!;
      else if (form.get('grant_type') === 'refresh_token') account = identityTokens[form.get('refresh_token') ?? ''];
      if (!account) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
        return;
      }
      record.account = account;
      const scopes = [...url.searchParams.getAll('scope'), ...form.getAll('scope')].flatMap((s) => s.split(' '));
      const jwt = token(account, scopes);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: jwt, access_token: jwt, expires_in: 300 }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `https://127.0.0.1:${port}/token`,
    port,
    service,
    issuer,
    jwks,
    requests,
    issued,
    async close() {
      server.closeAllConnections();
      server.close();
    },
  };
}
