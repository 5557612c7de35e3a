// Signs test models with the real OpenSSF model_signing CLI (PyPI model-signing, pinned in
// hack/python-tools), offline:
// - key: P-256 key pairs made with openssl, `model_signing sign key`;
// - certificate: a root and an intermediate CA made with openssl issue a code-signing leaf,
//   `model_signing sign certificate --certificate_chain` (the bundle carries leaf, intermediate and root);
// - another predicate type: model_signing's own key signer over its own manifest, with the
//   statement's predicate type changed (oms_sign_predicate.py), since the CLI writes only v1.0.
// The `sigstore` method needs Fulcio, an OIDC token and Rekor, none of which runs offline here.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { pythonToolsBin } from './python-tools.js';

const run = promisify(execFile);
const PREDICATE_SIGNER = resolve(import.meta.dirname, 'oms_sign_predicate.py');

const EXTENSIONS = `
[ca_ext]
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[intermediate_ext]
basicConstraints=critical,CA:true,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[leaf_ext]
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=codeSigning
subjectAltName=email:release@secai.example
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
`;

export interface ModelSigningLab {
  dir: string;
  publicKeyPem: string;
  otherPublicKeyPem: string;
  /** Intermediate and root of the CA that issued the signing certificate. */
  caChainPem: string;
  /** Another CA's intermediate and root. */
  otherCaChainPem: string;
  /** `model_signing sign key` over a file or a directory; returns the bundle JSON. */
  signKey(model: string, key?: 'main' | 'other'): Promise<string>;
  /** `model_signing sign certificate` with the leaf of one of the two CAs. */
  signCertificate(model: string, ca?: 'main' | 'other'): Promise<string>;
  /** model_signing's key signer for a statement of another predicate type. */
  signPredicate(model: string, predicateType: string): Promise<string>;
  close(): void;
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd });
}

async function key(dir: string, name: string): Promise<void> {
  await openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  await openssl(dir, ['ec', '-in', `${name}.key`, '-pubout', '-out', `${name}.pub`]);
}

async function issue(dir: string, name: string, issuer: string | undefined, extensions: string): Promise<void> {
  await key(dir, name);
  if (!issuer) {
    await openssl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-subj', `/O=secai-test/CN=${name}`, '-days', '3650', '-out', `${name}.pem`, '-config', 'ext.cnf', '-extensions', extensions]);
    return;
  }
  await openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/O=secai-test/CN=${name}`, '-out', `${name}.csr`]);
  await openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.pem`, '-CAkey', `${issuer}.key`, '-CAcreateserial', '-days', '365', '-out', `${name}.pem`, '-extfile', 'ext.cnf', '-extensions', extensions]);
}

export async function startModelSigningLab(): Promise<ModelSigningLab> {
  const dir = mkdtempSync(join(tmpdir(), 'model-signing-'));
  const bin = pythonToolsBin();
  try {
    writeFileSync(join(dir, 'ext.cnf'), EXTENSIONS);
    await key(dir, 'main');
    await key(dir, 'other');
    for (const prefix of ['', 'other']) {
      await issue(dir, `${prefix}root`, undefined, 'ca_ext');
      await issue(dir, `${prefix}intermediate`, `${prefix}root`, 'intermediate_ext');
      await issue(dir, `${prefix}leaf`, `${prefix}intermediate`, 'leaf_ext');
    }
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const read = (name: string) => readFileSync(join(dir, name), 'utf8');
  let counter = 0;
  const sign = async (args: string[]): Promise<string> => {
    const out = join(dir, `signature-${counter++}.sig`);
    await run(join(bin, 'model_signing'), [...args, '--signature', out], { cwd: dir, timeout: 120_000 });
    return readFileSync(out, 'utf8');
  };
  return {
    dir,
    publicKeyPem: read('main.pub'),
    otherPublicKeyPem: read('other.pub'),
    caChainPem: read('intermediate.pem') + read('root.pem'),
    otherCaChainPem: read('otherintermediate.pem') + read('otherroot.pem'),
    signKey: (model, which = 'main') => sign(['sign', 'key', model, '--private_key', join(dir, `${which}.key`)]),
    signCertificate: (model, ca = 'main') => {
      const p = ca === 'main' ? '' : 'other';
      return sign(['sign', 'certificate', model, '--private_key', join(dir, `${p}leaf.key`), '--signing_certificate', join(dir, `${p}leaf.pem`), '--certificate_chain', join(dir, `${p}intermediate.pem`), '--certificate_chain', join(dir, `${p}root.pem`)]);
    },
    async signPredicate(model, predicateType) {
      const out = join(dir, `signature-${counter++}.sig`);
      await run(join(bin, 'python'), [PREDICATE_SIGNER, model, join(dir, 'main.key'), out, predicateType], { timeout: 120_000 });
      return readFileSync(out, 'utf8');
    },
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}
