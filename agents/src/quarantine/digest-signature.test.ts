import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { parseDerEcdsaSignature, UnsupportedKeyError, verifyDigestSignature } from './digest-signature.js';

const keys = [
  ['P-256', generateKeyPairSync('ec', { namedCurve: 'P-256' })],
  ['P-384', generateKeyPairSync('ec', { namedCurve: 'P-384' })],
  ['RSA 2048', generateKeyPairSync('rsa', { modulusLength: 2048 })],
] as const;

describe.each(keys)('%s', (_name, { privateKey, publicKey }) => {
  const message = randomBytes(1000);
  const digest = createHash('sha256').update(message).digest();
  const signature = sign('sha256', message, privateKey);

  it('accepts a signature by Node over the message, checked against its digest', () => {
    for (let i = 0; i < 5; i++) {
      const m = randomBytes(64);
      expect(verifyDigestSignature(publicKey, createHash('sha256').update(m).digest(), sign('sha256', m, privateKey))).toBe(true);
    }
  });
  it('rejects another digest, a flipped signature bit, and another key', () => {
    const other = Buffer.from(digest);
    other[31]! ^= 1;
    expect(verifyDigestSignature(publicKey, other, signature)).toBe(false);
    const flipped = Buffer.from(signature);
    flipped[flipped.length - 1]! ^= 1;
    expect(verifyDigestSignature(publicKey, digest, flipped)).toBe(false);
    const stranger = keys.find(([, k]) => k.publicKey !== publicKey && k.publicKey.asymmetricKeyType === publicKey.asymmetricKeyType);
    if (stranger) expect(verifyDigestSignature(stranger[1].publicKey, digest, signature)).toBe(false);
  });
});

it('parses DER signatures strictly', () => {
  expect(parseDerEcdsaSignature(Buffer.from('3006020101020102', 'hex'), 32)).toEqual({ r: 1n, s: 2n });
  for (const bad of ['3006020101020102ff', '3007020101020102', '300602010102', '3006020181020102', '30070202000102010200', '30070202007f020101']) {
    expect(parseDerEcdsaSignature(Buffer.from(bad, 'hex'), 32)).toBeUndefined();
  }
});

it('rejects r or s of zero or not below the order', () => {
  const { publicKey } = keys[0][1];
  const n = 'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551';
  const der = (r: string, s: string) => {
    const int = (h: string) => { const b = Buffer.from(h, 'hex'); const v = b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b; return Buffer.concat([Buffer.from([2, v.length]), v]); };
    const body = Buffer.concat([int(r), int(s)]);
    return Buffer.concat([Buffer.from([0x30, body.length]), body]);
  };
  const digest = randomBytes(32);
  expect(verifyDigestSignature(publicKey, digest, der('00', '01'))).toBe(false);
  expect(verifyDigestSignature(publicKey, digest, der(n, '01'))).toBe(false);
});

it('refuses keys that cannot verify over a digest', () => {
  const { publicKey } = generateKeyPairSync('ed25519');
  expect(() => verifyDigestSignature(publicKey, randomBytes(32), Buffer.alloc(64))).toThrow(UnsupportedKeyError);
});
