// Marshals TPM2B_PUBLIC areas for software keys, as a TPM would: an endorsement-key template around a
// key whose private half the test holds (to decrypt what tpm2_makecredential wrapped), and keys of
// the wrong kind for the enrolment's bad-input cases.
import type { KeyObject } from 'node:crypto';
import { ObjectAttribute as A, TpmAlg } from '../../operator/src/attestation/tpm-structures.js';

const u16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
const tpm2b = (data: Buffer) => Buffer.concat([u16(data.length), data]);

/** The attributes of the TCG default EK template (restricted decryption key). */
export const EK_ATTRIBUTES = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.adminWithPolicy | A.restricted | A.decrypt;
/** What tpm2_createak gives an AK (restricted signing key). */
export const AK_ATTRIBUTES = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.restricted | A.sign;

export interface RsaPublicOptions {
  attributes: number;
  nameAlg?: number;
  /** [alg, keyBits, mode] or undefined for TPM_ALG_NULL. */
  symmetric?: [number, number, number];
  scheme?: [number, number];
  authPolicy?: Buffer;
}

/** TPM2B_PUBLIC of an RSA key (its modulus from Node's key). */
export function rsaPublic(key: KeyObject, options: RsaPublicOptions): Buffer {
  const jwk = key.export({ format: 'jwk' });
  const modulus = Buffer.from(jwk.n!, 'base64url');
  const sym = options.symmetric ? Buffer.concat(options.symmetric.map(u16)) : u16(TpmAlg.NULL);
  const scheme = options.scheme ? Buffer.concat(options.scheme.map(u16)) : u16(TpmAlg.NULL);
  const area = Buffer.concat([
    u16(TpmAlg.RSA),
    u16(options.nameAlg ?? TpmAlg.SHA256),
    u32(options.attributes),
    tpm2b(options.authPolicy ?? Buffer.alloc(0)),
    sym,
    scheme,
    u16(modulus.length * 8),
    u32(0),
    tpm2b(modulus),
  ]);
  return tpm2b(area);
}

/** TPM2B_PUBLIC of an ECC P-256 key. */
export function eccPublic(key: KeyObject, attributes: number, scheme?: [number, number]): Buffer {
  const jwk = key.export({ format: 'jwk' });
  const area = Buffer.concat([
    u16(TpmAlg.ECC),
    u16(TpmAlg.SHA256),
    u32(attributes),
    tpm2b(Buffer.alloc(0)),
    u16(TpmAlg.NULL),
    scheme ? Buffer.concat(scheme.map(u16)) : u16(TpmAlg.NULL),
    u16(0x0003),
    u16(TpmAlg.NULL),
    tpm2b(Buffer.from(jwk.x!, 'base64url')),
    tpm2b(Buffer.from(jwk.y!, 'base64url')),
  ]);
  return tpm2b(area);
}

/** The default EK template's shape around a software RSA-2048 key. */
export const ekTemplate = (key: KeyObject) => rsaPublic(key, { attributes: EK_ATTRIBUTES, symmetric: [TpmAlg.AES, 128, TpmAlg.CFB] });
