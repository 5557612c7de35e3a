// The node's Ed25519 audit key: created once in the log's directory, private key mode 0600, never
// replaced. A new key is visible to the operator (KeyChanged), so the agent refuses to start on a key
// file that anyone else could have read or swapped.
import { constants } from 'node:fs';
import { open, rename, writeFile } from 'node:fs/promises';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { keyFingerprint } from '../../../api/audit/tree-head.js';
import { fsyncPath } from '../fsync.js';
import { KEY_FILE, PUBLIC_KEY_FILE } from './log-files.js';

const MAX_KEY_FILE_BYTES = 4096;

export interface NodeKey {
  privateKey: KeyObject;
  /** The raw 32-byte public key (Hello.audit_public_key). */
  publicKey: Buffer;
  fingerprint: string;
}

export function rawPublicKey(key: KeyObject): Buffer {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new Error('not an Ed25519 key');
  return Buffer.from(jwk.x, 'base64url');
}


async function createKey(path: string): Promise<boolean> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  let handle;
  try {
    handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(pem);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

async function readKey(path: string): Promise<KeyObject> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`${path} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      throw new Error(`${path} has mode ${(stat.mode & 0o777).toString(8)}: the node key must be readable by its owner only (0600)`);
    }
    if (stat.size > MAX_KEY_FILE_BYTES) throw new Error(`${path} is larger than ${MAX_KEY_FILE_BYTES} bytes`);
    const key = createPrivateKey(await handle.readFile());
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${path} holds a ${key.asymmetricKeyType} key, not Ed25519`);
    return key;
  } finally {
    await handle.close();
  }
}

/** Loads the node key from `dir`, creating it on first use; also keeps node-key.pub for auditors. */
export async function loadOrCreateNodeKey(dir: string): Promise<NodeKey> {
  const path = join(dir, KEY_FILE);
  if (await createKey(path)) await fsyncPath(dir);
  const privateKey = await readKey(path);
  const publicKey = rawPublicKey(privateKey);
  const pubPath = join(dir, PUBLIC_KEY_FILE);
  const stored = await readPublicKeyFile(pubPath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (stored === undefined) {
    await writeFile(`${pubPath}.tmp`, `${publicKey.toString('hex')}\n`, { mode: 0o644 });
    await rename(`${pubPath}.tmp`, pubPath);
    await fsyncPath(dir);
  } else if (!stored.equals(publicKey)) {
    throw new Error(`${pubPath} does not match ${path}: one of them was replaced`);
  }
  return { privateKey, publicKey, fingerprint: keyFingerprint(publicKey) };
}

async function readPublicKeyFile(path: string): Promise<Buffer> {
  // 64 hex digits and a newline; reading a little more lets a longer file fail the pattern.
  const handle = await open(path, 'r');
  const buffer = Buffer.alloc(130);
  let text: string;
  try {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    text = buffer.subarray(0, bytesRead).toString('utf8').trim();
  } finally {
    await handle.close();
  }
  if (!/^[0-9a-f]{64}$/.test(text)) throw new Error(`${path} is not a 32-byte public key in lowercase hex`);
  return Buffer.from(text, 'hex');
}

/** The node's public key as stored for auditors in `dir` (the verifier never reads the private key). */
export function readNodePublicKey(dir: string): Promise<Buffer> {
  return readPublicKeyFile(join(dir, PUBLIC_KEY_FILE));
}
