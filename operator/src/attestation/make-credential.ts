// TPM2_MakeCredential done by the operator, offline (TPM 2.0 Part 1, 24 "Credential Protection";
// Part 3, 12.6): a secret wrapped so that only the TPM holding the EK can unwrap it, and only for a
// loaded object with the given Name. ActivateCredential on the node then proves that the AK with that
// Name lives in the same TPM as the EK. Hand-written because no maintained JavaScript TPM library
// does it; checked byte for byte against tpm2_makecredential (make-credential.test.ts).
import { constants, createCipheriv, createHmac, publicEncrypt, randomBytes } from 'node:crypto';
import { hashOf, TpmAlg, TpmParseError, type TpmPublic } from './tpm-structures.js';

/** KDFa (Part 1, 11.4.10.2): counter-mode HMAC KDF, SP 800-108. `label` excludes its terminating zero. */
export function kdfa(hashName: string, key: Buffer, label: string, contextU: Buffer, contextV: Buffer, bits: number): Buffer {
  const bytes = Math.ceil(bits / 8);
  const out: Buffer[] = [];
  let produced = 0;
  const labelBytes = Buffer.concat([Buffer.from(label, 'ascii'), Buffer.alloc(1)]);
  const bitsField = Buffer.alloc(4);
  bitsField.writeUInt32BE(bits);
  for (let counter = 1; produced < bytes; counter++) {
    const counterField = Buffer.alloc(4);
    counterField.writeUInt32BE(counter);
    const block = createHmac(hashName, key).update(counterField).update(labelBytes).update(contextU).update(contextV).update(bitsField).digest();
    out.push(block);
    produced += block.length;
  }
  return Buffer.concat(out).subarray(0, bytes);
}

const tpm2b = (data: Buffer) => {
  const size = Buffer.alloc(2);
  size.writeUInt16BE(data.length);
  return Buffer.concat([size, data]);
};

export interface MadeCredential {
  /** TPM2B_ID_OBJECT: integrity HMAC and the encrypted credential. */
  credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET: the seed, encrypted to the EK. */
  encryptedSecret: Buffer;
}

/** The EK properties MakeCredential needs; throws for an EK it cannot wrap to (RSA EKs only). */
export function credentialParameters(ek: TpmPublic): { hashName: string; digestSize: number; aesBits: number } {
  if (ek.type !== 'rsa') throw new TpmParseError('credential activation is implemented for RSA endorsement keys only');
  const { symmetric } = ek;
  if (symmetric.alg !== TpmAlg.AES || symmetric.mode !== TpmAlg.CFB || (symmetric.keyBits !== 128 && symmetric.keyBits !== 256)) {
    throw new TpmParseError('the endorsement key\'s symmetric parameters are not AES-128 or AES-256 in CFB mode');
  }
  const { name, size } = hashOf(ek.nameAlg, 'EK nameAlg');
  return { hashName: name, digestSize: size, aesBits: symmetric.keyBits };
}

/**
 * Wraps `credential` for the object named `objectName` under the RSA endorsement key `ek`: a random
 * seed, RSA-OAEP encrypted to the EK with the label "IDENTITY", keys the encryption and the HMAC.
 * A given seed is for the byte-for-byte test only.
 */
export function makeCredential(
  ek: TpmPublic,
  objectName: Buffer,
  credential: Buffer,
  testing: { seed?: Buffer } = {},
): MadeCredential {
  const { hashName, digestSize, aesBits } = credentialParameters(ek);
  if (credential.length === 0 || credential.length > digestSize) throw new RangeError(`a credential has 1 to ${digestSize} bytes`);
  const seed = testing.seed ?? randomBytes(digestSize);
  const encrypted = publicEncrypt(
    { key: ek.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hashName, oaepLabel: Buffer.from('IDENTITY\0', 'ascii') },
    seed,
  );
  const symKey = kdfa(hashName, seed, 'STORAGE', objectName, Buffer.alloc(0), aesBits);
  const cipher = createCipheriv(`aes-${aesBits}-cfb`, symKey, Buffer.alloc(16));
  const encIdentity = Buffer.concat([cipher.update(tpm2b(credential)), cipher.final()]);
  const hmacKey = kdfa(hashName, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), digestSize * 8);
  const integrity = createHmac(hashName, hmacKey).update(encIdentity).update(objectName).digest();
  return { credentialBlob: tpm2b(Buffer.concat([tpm2b(integrity), encIdentity])), encryptedSecret: tpm2b(encrypted) };
}
