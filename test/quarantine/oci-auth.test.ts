// Registry authentication of OCI model sources against the real registry (CNCF distribution on
// loopback, over https with a test CA), pushed to with oras using a docker config.json:
// - htpasswd (Basic): the right credential is trusted (the pipeline, the agent from a plan, and
//   `secai-quarantine --registry-config`); none is RegistryAuthRequired; a wrong password is
//   RegistryAuthFailed;
// - token authentication (Bearer, a token server here with a test key, JWKS-verified by the
//   registry): a password and an identity token are trusted; none and a wrong password are refused
//   the same way; a realm the egress policy does not allow is refused without being asked;
// - small loopback servers for what a real registry does not do here: a blob redirected to storage
//   on another origin gets no Authorization header; a Bearer realm on another origin over plain http
//   is never sent the credential.
// No credential or issued token appears in a stage message, the agent's log lines, its audit events
// or the command's output.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ModelPlan } from '../../api/gen/proto/secai/fleet/v1/agent.js';
import { MemoryAuditSink } from '../../agents/src/audit/audit-sink.js';
import { runCommand } from '../../agents/src/exec.js';
import { MODELPACK_ARTIFACT_TYPE, MODELPACK_CONFIG_TYPE, MODELPACK_RAW_WEIGHT, type OciModelSource } from '../../agents/src/quarantine/oci-source.js';
import { quarantineModel, verifyArtifact } from '../../agents/src/quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY, type QuarantinePolicy } from '../../agents/src/quarantine/policy.js';
import type { RegistryCredential } from '../../agents/src/quarantine/registry-auth.js';
import { createScannerSandbox } from '../../agents/src/quarantine/scanner-sandbox.js';
import { TrustedStore } from '../../agents/src/quarantine/trusted-store.js';
import { tinyModelBytes } from '../support/tiny-model.js';
import { startRegistry, type TestRegistry } from './oci-registry.js';
import { makeTestTls, startTokenServer, type TestTls, type TokenServer } from './registry-token-server.js';

const BIN = resolve(import.meta.dirname, '../../bin/secai-quarantine.mjs');
const USER = 'puller';
const PASSWORD = 'right-Passw0rd:with-colon';
const WRONG = 'wrong-Passw0rd';
const IDENTITY_TOKEN = 'identity-refresh-token-0123456789';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const b64 = (s: string) => Buffer.from(s).toString('base64');
const model = tinyModelBytes();

let dir: string;
let tls: TestTls;
let ca: string;
let basic: TestRegistry;
let tokens: TokenServer;
let bearer: TestRegistry;
const digests: Record<string, string> = {};
/** Everything a credential must never appear in: stage messages, log lines, audit events, command output. */
const said: string[] = [];

const secrets = () => [PASSWORD, WRONG, IDENTITY_TOKEN, b64(`${USER}:${PASSWORD}`), b64(`${USER}:${WRONG}`), ...tokens.issued];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'oci-auth-'));
  tls = await makeTestTls(dir);
  ca = readFileSync(tls.ca, 'utf8');
  const config = Buffer.from('{"descriptor":{"name":"tiny"},"config":{"format":"gguf"},"modelfs":{"type":"layers","diffIds":[]}}');
  const files = { 'model.gguf': model, 'config.json': config, 'annotations.json': Buffer.from(JSON.stringify({ 'model.gguf': { 'org.cncf.model.filepath': 'model.gguf' } })) };
  const modelpack = ['--artifact-type', MODELPACK_ARTIFACT_TYPE, '--config', `config.json:${MODELPACK_CONFIG_TYPE}`, '--annotation-file', 'annotations.json'];
  mkdirSync(join(dir, 'basic'));
  basic = await startRegistry(join(dir, 'basic'), { tls, htpasswd: { username: USER, password: PASSWORD } });
  digests.basic = await basic.push('models/private', 'v1', files, modelpack, [`model.gguf:${MODELPACK_RAW_WEIGHT}`]);
  mkdirSync(join(dir, 'bearer'));
  tokens = await startTokenServer(join(dir, 'bearer'), tls, { [USER]: PASSWORD }, { [IDENTITY_TOKEN]: USER });
  bearer = await startRegistry(join(dir, 'bearer'), { tls, token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, jwks: tokens.jwks }, pushAs: { username: USER, password: PASSWORD } });
  digests.bearer = await bearer.push('models/private', 'v1', files, modelpack, [`model.gguf:${MODELPACK_RAW_WEIGHT}`]);
}, 300_000);

afterAll(async () => {
  await basic?.stop();
  await bearer?.stop();
  await tokens?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const sandbox = () => createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });

async function pull(oci: OciModelSource, opts: { allowDestination?: (url: URL) => boolean; policy?: QuarantinePolicy } = {}): Promise<string> {
  const staging = mkdtempSync(join(dir, 'staging-'));
  const { results, staged } = await verifyArtifact(
    { source: { kind: 'oci', oci }, pin: { sha256: sha256(model) }, policy: opts.policy ?? DEFAULT_QUARANTINE_POLICY },
    { sandbox: sandbox(), stagingDir: staging, ca, ...(opts.allowDestination ? { allowDestination: opts.allowDestination } : {}) },
  );
  if (staged?.owned) rmSync(staged.path);
  said.push(...results.map((r) => r.message));
  const failed = results.find((r) => r.status === 'failed');
  return failed ? `${failed.stage}: ${failed.reason}` : 'trusted';
}

const credential = (password: string): RegistryCredential => ({ username: USER, password, identityToken: '' });
const source = (registry: TestRegistry, tag: string, cred?: RegistryCredential): OciModelSource => ({ registry: registry.host, repository: 'models/private', digest: digests[tag]!, plainHttp: false, ...(cred ? { credential: cred } : {}) });

describe('htpasswd (Basic) over https', () => {
  it.each([
    ['the right credential is trusted', () => credential(PASSWORD), 'trusted'],
    ['no credential is RegistryAuthRequired', () => undefined, 'Fetch: RegistryAuthRequired'],
    ['a wrong password is RegistryAuthFailed', () => credential(WRONG), 'Fetch: RegistryAuthFailed'],
    ['an identity token alone, where Basic is asked for, is RegistryAuthFailed', () => ({ username: '', password: '', identityToken: IDENTITY_TOKEN }), 'Fetch: RegistryAuthFailed'],
  ])('%s', async (_name, cred, expected) => {
    expect(await pull(source(basic, 'basic', cred()))).toBe(expected);
  }, 120_000);
});

describe('token authentication (Bearer) over https', () => {
  it.each([
    ['a password is exchanged for a token and trusted', () => credential(PASSWORD), 'trusted', [{ method: 'GET', account: USER }]],
    ['an identity token is exchanged (refresh_token grant) and trusted', () => ({ username: '', password: '', identityToken: IDENTITY_TOKEN }), 'trusted', [{ method: 'POST', grant: 'refresh_token', account: USER }]],
    ['no credential asks anonymously and is RegistryAuthRequired', () => undefined, 'Fetch: RegistryAuthRequired', [{ method: 'GET' }]],
    ['a wrong password is RegistryAuthFailed', () => credential(WRONG), 'Fetch: RegistryAuthFailed', [{ method: 'GET' }]],
  ])('%s', async (_name, cred, expected, asked) => {
    const before = tokens.requests.length;
    expect(await pull(source(bearer, 'bearer', cred()))).toBe(expected);
    // One token for the whole pull: the manifest's challenge earns it, the blob reuses it.
    expect(tokens.requests.slice(before).map(({ authorization: _a, ...r }) => r)).toEqual(asked);
  }, 120_000);

  it('refuses a token realm the egress policy does not allow, without asking it', async () => {
    const before = tokens.requests.length;
    const allowDestination = (url: URL) => url.port !== String(tokens.port);
    expect(await pull(source(bearer, 'bearer', credential(PASSWORD)), { allowDestination })).toBe('Fetch: HostNotAllowed');
    expect(said.at(-1)).toContain('token realm');
    expect(tokens.requests.length).toBe(before);
  }, 60_000);
});

describe('the agent, from a plan carrying the pull Secret\'s credential', () => {
  async function quarantine(tag: string, registry: TestRegistry, password: string) {
    const store = new TrustedStore(mkdtempSync(join(dir, `store-${tag}-`)));
    await store.init();
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _e, done) => done(void lines.push(chunk.toString())) });
    const audit = new MemoryAuditSink();
    const plan = ModelPlan.fromPartial({ name: tag, format: 'gguf', sha256: sha256(model), oci: { registry: registry.host, repository: 'models/private', digest: digests[tag]!, credential: { username: USER, password, identityToken: '', revision: 'uid/1' } } });
    const deps = { store, audit, sandbox: sandbox(), ca, clock: () => new Date(), logger: pino({ level: 'trace' }, sink) };
    const { verdict } = await quarantineModel(plan, DEFAULT_QUARANTINE_POLICY, deps);
    said.push(...lines, JSON.stringify(audit.events), JSON.stringify(verdict));
    return { outcome: verdict.trusted ? 'trusted' : `${verdict.stage}: ${verdict.reason}`, logged: lines.length, audited: audit.events.length };
  }

  it.each([
    ['basic', 'the right password', () => basic, PASSWORD, 'trusted'],
    ['basic', 'a wrong password', () => basic, WRONG, 'Fetch: RegistryAuthFailed'],
    ['bearer', 'the right password', () => bearer, PASSWORD, 'trusted'],
    ['bearer', 'a wrong password', () => bearer, WRONG, 'Fetch: RegistryAuthFailed'],
  ])('%s registry, %s', async (tag, _name, registry, password, expected) => {
    const { outcome, logged, audited } = await quarantine(tag, registry(), password);
    expect(outcome).toBe(expected);
    expect({ logged: logged > 0, audited: audited > 0 }).toEqual({ logged: true, audited: true });
  }, 120_000);
});

describe('secai-quarantine --registry-config', () => {
  function cli(args: string[]): Promise<{ code: number; stdout: string; output: string }> {
    return new Promise((done) => {
      // The command trusts the test CA the way any Node program can be told to.
      execFile(realpathSync(process.execPath), [BIN, ...args], { timeout: 60_000, env: { ...process.env, NODE_EXTRA_CA_CERTS: tls.ca } }, (error, stdout, stderr) => {
        done({ code: error ? Number((error as NodeJS.ErrnoException & { code: unknown }).code) : 0, stdout, output: `${stdout}\n${stderr}` });
      });
    });
  }
  const config = (name: string, auths: Record<string, unknown>) => {
    const path = join(dir, `${name}.json`);
    writeFileSync(path, JSON.stringify({ auths }));
    return path;
  };

  it.each([
    ['basic', 'the right password', PASSWORD, 0, 'TRUSTED'],
    ['basic', 'a wrong password', WRONG, 1, 'REJECTED at Fetch: RegistryAuthFailed'],
    ['bearer', 'the right password', PASSWORD, 0, 'TRUSTED'],
  ])('%s registry, %s', async (tag, _name, password, code, expected) => {
    const registry = tag === 'basic' ? basic : bearer;
    const file = config(`${tag}-${code}`, { [`https://${registry.host}/v2/`]: { auth: b64(`${USER}:${password}`) } });
    const got = await cli([`oci://${registry.host}/models/private@${digests[tag]}`, '--sha256', sha256(model), '--registry-config', file]);
    said.push(got.output);
    expect({ code: got.code, last: got.stdout.trim().split('\n').at(-1) }).toMatchObject({ code, last: expect.stringContaining(expected) });
  }, 60_000);

  it('is a usage error when the config has no entry for the registry', async () => {
    const got = await cli([`oci://${basic.host}/models/private@${digests.basic}`, '--sha256', sha256(model), '--registry-config', config('elsewhere', { 'elsewhere.example': { auth: b64(`${USER}:${PASSWORD}`) } })]);
    said.push(got.output);
    expect(got.code).toBe(2);
    expect(got.output).toContain(`no auths entry for ${basic.host}`);
  }, 60_000);
});

describe('where the credential must not go (loopback servers)', () => {
  const servers: http.Server[] = [];
  async function listen(handler: http.RequestListener): Promise<string> {
    const server = http.createServer(handler);
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return `127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  afterAll(() => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  });
  const configBlob = Buffer.from('{"descriptor":{"name":"tiny"}}');
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: MODELPACK_ARTIFACT_TYPE,
    config: { mediaType: MODELPACK_CONFIG_TYPE, digest: `sha256:${sha256(configBlob)}`, size: configBlob.length },
    layers: [{ mediaType: MODELPACK_RAW_WEIGHT, digest: `sha256:${sha256(model)}`, size: model.length, annotations: { 'org.cncf.model.filepath': 'model.gguf' } }],
  }));
  const lab = (host: string, cred?: RegistryCredential): OciModelSource => ({ registry: host, repository: 'models/lab', digest: `sha256:${sha256(manifest)}`, plainHttp: true, ...(cred ? { credential: cred } : {}) });

  it('sends Basic to the plain-http registry the Model allows, and nothing to blob storage it redirects to', async () => {
    const storageSaw: (string | undefined)[] = [];
    const storage = await listen((req, res) => {
      storageSaw.push(req.headers.authorization);
      res.writeHead(200, { 'content-length': model.length }).end(model);
    });
    const registrySaw: string[] = [];
    const registry = await listen((req, res) => {
      if (req.headers.authorization !== `Basic ${b64(`${USER}:${PASSWORD}`)}`) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="lab"' }).end();
      registrySaw.push(req.url ?? '');
      if (req.url?.includes('/manifests/')) return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest);
      res.writeHead(307, { location: `http://${storage}/blobs/${sha256(model)}?signature=x` }).end();
    });
    const policy = { ...DEFAULT_QUARANTINE_POLICY, fetch: { ...DEFAULT_QUARANTINE_POLICY.fetch, allowCrossOriginRedirects: true } };
    expect(await pull(lab(registry, credential(PASSWORD)), { policy })).toBe('trusted');
    expect(registrySaw).toEqual([`/v2/models/lab/manifests/sha256:${sha256(manifest)}`, `/v2/models/lab/blobs/sha256:${sha256(model)}`]);
    expect(storageSaw).toEqual([undefined]);
  }, 60_000);

  it('never sends the credential to a token realm on another origin over plain http', async () => {
    const realmSaw: string[] = [];
    const realm = await listen((req, res) => {
      realmSaw.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t"}');
    });
    const registry = await listen((_req, res) => res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${realm}/token",service="lab",scope="repository:models/lab:pull"` }).end());
    expect(await pull(lab(registry, credential(PASSWORD)))).toBe('Fetch: SchemeNotAllowed');
    expect(realmSaw).toEqual([]);
  }, 60_000);
});

// Last in the file, so that every case above has added what it said.
it('put no password, identity token, Basic header value or issued token into any message, log line, audit event or output', () => {
  expect(said.length).toBeGreaterThan(30);
  const everything = said.join('\n');
  for (const secret of secrets()) expect(everything).not.toContain(secret);
});
