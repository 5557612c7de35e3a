// Signs test artifacts with the real cosign from hack/bin, offline:
// - keyed: a cosign key pair, `sign-blob --key` (message signature) and `attest-blob --key` (DSSE
//   in-toto statement), with --use-signing-config=false --tlog-upload=false so nothing is fetched
//   and nothing is uploaded;
// - keyless: a test "Fulcio" CA made with openssl issues a code-signing certificate (SAN email and
//   the Fulcio issuer extensions) for a key imported into cosign; `sign-blob --key --certificate
//   --certificate-chain --timestamp-server-url` then asks a loopback RFC 3161 timestamp authority
//   (openssl ts behind a Node HTTP server, its certificate from the same CA) for a signed time,
//   which sigstore needs to verify a certificate chain without a transparency log. The trusted
//   root lists the CA as certificate authority and the TSA as timestamp authority.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
export const COSIGN = process.env.TEST_ASSET_COSIGN ?? join(ROOT, 'hack/bin/cosign');
const COSIGN_ENV = { ...process.env, COSIGN_PASSWORD: '' };
const OFFLINE = ['--use-signing-config=false', '--tlog-upload=false', '--yes'];

export const TEST_ISSUER = 'https://issuer.secai.example';
export const TEST_IDENTITY = 'release@secai.example';

async function openssl(cwd: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd });
}

const EXTENSIONS = `
[ca_ext]
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[leaf_ext]
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=codeSigning
subjectAltName=email:${TEST_IDENTITY}
1.3.6.1.4.1.57264.1.1=ASN1:UTF8String:${TEST_ISSUER}
1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:${TEST_ISSUER}
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[tsa_ext]
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=critical,timeStamping
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
`;

function tsaConfig(dir: string): string {
  return `
[tsa]
default_tsa = tsa_config
[tsa_config]
serial = ${dir}/tsa.serial
crypto_device = builtin
signer_cert = ${dir}/tsa.pem
certs = ${dir}/ca.pem
signer_key = ${dir}/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.57264.2
other_policies = 1.3.6.1.4.1.57264.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
`;
}

/** A certificate authority with its key, and a certificate it issued for `keyFile`. */
async function makeCa(dir: string, name: string): Promise<void> {
  writeFileSync(join(dir, 'ext.cnf'), EXTENSIONS);
  await openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  await openssl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-subj', `/O=secai-test/CN=${name}`, '-days', '3650', '-out', `${name}.pem`, '-config', join(dir, 'ext.cnf'), '-extensions', 'ca_ext']);
}

async function issue(dir: string, ca: string, name: string, extensions: 'leaf_ext' | 'tsa_ext'): Promise<void> {
  await openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  await openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/O=secai-test/CN=${name}`, '-out', `${name}.csr`]);
  await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '365', '-out', `${name}.pem`, '-extfile', join(dir, 'ext.cnf'), '-extensions', extensions]);
}

function der(path: string): string {
  return new X509Certificate(readFileSync(path)).raw.toString('base64');
}

/** A sigstore trusted_root.json with one certificate authority and, optionally, one timestamp authority. */
export function trustedRoot(caPem: string, tsaChain?: string[]): string {
  const validFor = { start: '2020-01-01T00:00:00Z' };
  return JSON.stringify({
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    ctlogs: [],
    certificateAuthorities: [{ subject: { organization: 'secai-test', commonName: 'ca' }, uri: 'https://ca.secai.example', certChain: { certificates: [{ rawBytes: der(caPem) }] }, validFor }],
    timestampAuthorities: tsaChain ? [{ subject: { organization: 'secai-test', commonName: 'tsa' }, uri: 'https://tsa.secai.example', certChain: { certificates: tsaChain.map((p) => ({ rawBytes: der(p) })) }, validFor }] : [],
  });
}

export interface SigningLab {
  dir: string;
  /** PEM of the cosign public key. */
  publicKeyPem: string;
  /** PEM of another cosign key, for wrong-key cases. */
  otherPublicKeyPem: string;
  trustedRootJson: string;
  /** A trusted root of another CA (and the same TSA), for untrusted-certificate cases. */
  otherTrustedRootJson: string;
  signBlob(file: string, key?: 'main' | 'other'): Promise<string>;
  attestBlob(file: string): Promise<string>;
  /** Keyless, for a ready in-toto statement (`attest-blob --statement`): certificate from the test CA, timestamp from the loopback TSA. */
  attestStatementKeyless(statementJson: string): Promise<string>;
  /** Keyless: certificate from the test CA, timestamp from the loopback TSA. */
  signKeyless(file: string, options?: { ca?: 'main' | 'other'; timestamp?: boolean }): Promise<string>;
  close(): Promise<void>;
}

/** Starts the keys, CAs and the loopback TSA; close() stops the TSA and removes everything. */
export async function startSigningLab(): Promise<SigningLab> {
  const dir = mkdtempSync(join(tmpdir(), 'quarantine-signing-'));
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const query = join(dir, `query-${Date.now()}-${Math.random()}.tsq`);
      writeFileSync(query, Buffer.concat(chunks));
      execFile('openssl', ['ts', '-reply', '-config', join(dir, 'tsa.cnf'), '-section', 'tsa_config', '-queryfile', query], { encoding: 'buffer' }, (error, stdout) => {
        rmSync(query, { force: true });
        if (error) {
          res.writeHead(500).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/timestamp-reply' }).end(stdout);
      });
    });
  });
  try {
    await run(COSIGN, ['generate-key-pair', '--output-key-prefix', 'main'], { cwd: dir, env: COSIGN_ENV });
    await run(COSIGN, ['generate-key-pair', '--output-key-prefix', 'other'], { cwd: dir, env: COSIGN_ENV });
    await makeCa(dir, 'ca');
    await makeCa(dir, 'otherca');
    await issue(dir, 'ca', 'leaf', 'leaf_ext');
    await issue(dir, 'otherca', 'otherleaf', 'leaf_ext');
    await issue(dir, 'ca', 'tsa', 'tsa_ext');
    writeFileSync(join(dir, 'tsa.serial'), '01\n');
    writeFileSync(join(dir, 'tsa.cnf'), tsaConfig(dir));
    await run(COSIGN, ['import-key-pair', '--key', 'leaf.key', '--output-key-prefix', 'leafcosign'], { cwd: dir, env: COSIGN_ENV });
    await run(COSIGN, ['import-key-pair', '--key', 'otherleaf.key', '--output-key-prefix', 'otherleafcosign'], { cwd: dir, env: COSIGN_ENV });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  } catch (e) {
    server.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const tsaUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  let counter = 0;
  const bundlePath = () => join(dir, `bundle-${counter++}.json`);
  return {
    dir,
    publicKeyPem: readFileSync(join(dir, 'main.pub'), 'utf8'),
    otherPublicKeyPem: readFileSync(join(dir, 'other.pub'), 'utf8'),
    trustedRootJson: trustedRoot(join(dir, 'ca.pem'), [join(dir, 'tsa.pem'), join(dir, 'ca.pem')]),
    otherTrustedRootJson: trustedRoot(join(dir, 'otherca.pem'), [join(dir, 'tsa.pem'), join(dir, 'ca.pem')]),
    async signBlob(file, key = 'main') {
      const out = bundlePath();
      await run(COSIGN, ['sign-blob', '--key', join(dir, `${key}.key`), ...OFFLINE, '--bundle', out, file], { env: COSIGN_ENV });
      return readFileSync(out, 'utf8');
    },
    async attestBlob(file) {
      const out = bundlePath();
      const predicate = join(dir, 'predicate.json');
      writeFileSync(predicate, '{"purpose":"quarantine test"}\n');
      await run(COSIGN, ['attest-blob', '--key', join(dir, 'main.key'), '--predicate', predicate, '--type', 'custom', ...OFFLINE, '--bundle', out, file], { env: COSIGN_ENV });
      return readFileSync(out, 'utf8');
    },
    async signKeyless(file, options = {}) {
      const out = bundlePath();
      const [key, cert, chain] = options.ca === 'other' ? ['otherleafcosign.key', 'otherleaf.pem', 'otherca.pem'] : ['leafcosign.key', 'leaf.pem', 'ca.pem'];
      const timestamp = options.timestamp === false ? [] : ['--timestamp-server-url', tsaUrl];
      await run(COSIGN, ['sign-blob', '--key', join(dir, key), '--certificate', join(dir, cert), '--certificate-chain', join(dir, chain), ...timestamp, ...OFFLINE, '--bundle', out, file], { env: COSIGN_ENV });
      return readFileSync(out, 'utf8');
    },
    async attestStatementKeyless(statementJson) {
      const out = bundlePath();
      const statement = join(dir, `statement-${counter}.json`);
      writeFileSync(statement, statementJson);
      await run(COSIGN, ['attest-blob', '--statement', statement, '--key', join(dir, 'leafcosign.key'), '--certificate', join(dir, 'leaf.pem'), '--certificate-chain', join(dir, 'ca.pem'), '--timestamp-server-url', tsaUrl, ...OFFLINE, '--bundle', out], { env: COSIGN_ENV });
      return readFileSync(out, 'utf8');
    },
    async close() {
      server.close();
      await once(server, 'close').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
