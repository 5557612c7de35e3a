// MakeCredential in TypeScript produces exactly what tpm2-tools' tpm2_makecredential produces for the
// same EK, Name, credential and seed: the seed is recovered from tpm2_makecredential's output with the
// software EK's private key, then fed to makeCredential. (That a real TPM activates our credential
// is shown against swtpm in test/attestation/attestation-tpm.test.ts.)
import { constants, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../../agents/src/exec.js';
import { ekTemplate, rsaPublic, EK_ATTRIBUTES } from '../../../test/attestation/tpm-public.js';
import { kdfa, makeCredential } from './make-credential.js';
import { parseTpm2bPublic, TpmAlg, TpmReader } from './tpm-structures.js';

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'secai-mkcred-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** tpm2_makecredential's file: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET. */
function readCredentialFile(bytes: Buffer) {
  const r = new TpmReader(bytes, 'credential file');
  expect(r.u32('magic')).toBe(0xbadcc0de);
  expect(r.u32('version')).toBe(1);
  const blob = r.tpm2b(1024, 'idObject');
  const secret = r.tpm2b(1024, 'secret');
  r.end();
  const withSize = (b: Buffer) => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  return { credentialBlob: withSize(blob), encryptedSecretBody: secret };
}

async function toolCredential(ekPublic: Buffer, name: Buffer, credential: Buffer) {
  writeFileSync(join(dir, 'ek.pub'), ekPublic);
  writeFileSync(join(dir, 'secret.bin'), credential);
  const result = await runCommand('tpm2_makecredential', ['-T', 'none', '-e', 'ek.pub', '-s', 'secret.bin', '-n', name.toString('hex'), '-o', 'cred.out'], { cwd: dir, timeoutMs: 10_000 });
  expect(result.stderr.replace(/WARN:.*\n?/g, '')).toBe('');
  expect(result.code).toBe(0);
  return readCredentialFile(readFileSync(join(dir, 'cred.out')));
}

it.each([
  ['AES-128, a 32-byte credential', 128, 32],
  ['AES-128, a 16-byte credential', 128, 16],
  ['AES-256, a 32-byte credential', 256, 32],
])('matches tpm2_makecredential byte for byte (%s)', async (_what, aesBits, credentialBytes) => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ekPublic = aesBits === 128 ? ekTemplate(publicKey) : rsaPublic(publicKey, { attributes: EK_ATTRIBUTES, symmetric: [TpmAlg.AES, 256, TpmAlg.CFB] });
  const ek = parseTpm2bPublic(ekPublic);
  const name = Buffer.concat([Buffer.from([0x00, 0x0b]), randomBytes(32)]);
  const credential = randomBytes(credentialBytes);

  const theirs = await toolCredential(ekPublic, name, credential);
  const seed = privateDecrypt(
    { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: Buffer.from('IDENTITY\0') },
    theirs.encryptedSecretBody,
  );
  expect(seed).toHaveLength(32);
  const ours = makeCredential(ek, name, credential, { seed });
  expect(ours.credentialBlob.toString('hex')).toBe(theirs.credentialBlob.toString('hex'));

  // Our own encrypted seed is one the EK's private key opens (OAEP, SHA-256, label "IDENTITY").
  const fresh = makeCredential(ek, name, credential);
  const body = fresh.encryptedSecret.subarray(2);
  expect(fresh.encryptedSecret.readUInt16BE(0)).toBe(body.length);
  const freshSeed = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: Buffer.from('IDENTITY\0') }, body);
  expect(makeCredential(ek, name, credential, { seed: freshSeed }).credentialBlob).toEqual(fresh.credentialBlob);
});

it('KDFa gives the SP 800-108 counter-mode output for more than one block', () => {
  const key = Buffer.alloc(32, 7);
  const long = kdfa('sha256', key, 'STORAGE', Buffer.from('u'), Buffer.from('v'), 512);
  expect(long).toHaveLength(64);
  // The first block of a 512-bit request is not the 256-bit output (the bit count is in every block).
  expect(long.subarray(0, 32)).not.toEqual(kdfa('sha256', key, 'STORAGE', Buffer.from('u'), Buffer.from('v'), 256));
  expect(kdfa('sha256', key, 'STORAGE', Buffer.from('u'), Buffer.from('v'), 128)).toHaveLength(16);
});

it('refuses an EK it cannot wrap to and a credential of the wrong size', () => {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const noSymmetric = parseTpm2bPublic(rsaPublic(publicKey, { attributes: EK_ATTRIBUTES }));
  expect(() => makeCredential(noSymmetric, Buffer.alloc(34), randomBytes(32))).toThrow(/AES-128 or AES-256 in CFB/);
  const ek = parseTpm2bPublic(ekTemplate(publicKey));
  expect(() => makeCredential(ek, Buffer.alloc(34), Buffer.alloc(0))).toThrow(/1 to 32 bytes/);
  expect(() => makeCredential(ek, Buffer.alloc(34), randomBytes(33))).toThrow(/1 to 32 bytes/);
});
