// TPM 2.0 structures the operator reads from untrusted agents (TPM 2.0 Part 2, big-endian): the
// public area of a key (TPM2B_PUBLIC / TPMT_PUBLIC), its Name, a quote (TPMS_ATTEST) and its
// signature (TPMT_SIGNATURE). Every size is checked against the remaining bytes and a limit from the
// specification before anything is sliced; nothing is allocated from a size the agent sent.
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';

export class TpmParseError extends Error {
  override name = 'TpmParseError';
}

/** TPM_ALG_ID values used here (TPM 2.0 Part 2, 6.3). */
export const TpmAlg = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  KEYEDHASH: 0x0008,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CFB: 0x0043,
} as const;

/** Hash algorithms by TPM_ALG_ID: Node's name and the digest size. */
export const TPM_HASHES: ReadonlyMap<number, { name: string; size: number }> = new Map([
  [TpmAlg.SHA1, { name: 'sha1', size: 20 }],
  [TpmAlg.SHA256, { name: 'sha256', size: 32 }],
  [TpmAlg.SHA384, { name: 'sha384', size: 48 }],
  [TpmAlg.SHA512, { name: 'sha512', size: 64 }],
]);

export function hashOf(alg: number, what: string): { name: string; size: number } {
  const hash = TPM_HASHES.get(alg);
  if (!hash) throw new TpmParseError(`${what}: hash algorithm 0x${alg.toString(16).padStart(4, '0')} is not supported`);
  return hash;
}

/** TPMA_OBJECT bits (Part 2, 8.3). */
export const ObjectAttribute = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

/** TPM_GENERATED_VALUE: only the TPM puts this at the start of what a restricted key signs. */
export const TPM_GENERATED = 0xff544347;
export const TPM_ST_ATTEST_QUOTE = 0x8018;

/** Bounds from the reference implementation's sizes: the largest digest, name, RSA key, ECC coordinate. */
const MAX_DIGEST = 64;
const MAX_NAME = 2 + MAX_DIGEST;
const MAX_RSA_KEY_BYTES = 512;
const MAX_ECC_KEY_BYTES = 66;
const MAX_PUBLIC = 1024;
const MAX_ATTEST = 1024;
const MAX_PCR_SELECT_BYTES = 4;
const MAX_PCR_BANKS = 16;

/** A cursor over bytes that fails with a clear error instead of reading past the end. */
export class TpmReader {
  private offset = 0;

  constructor(
    private readonly bytes: Buffer,
    private readonly what: string,
  ) {}

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  private take(n: number, field: string): Buffer {
    if (n > this.remaining) throw new TpmParseError(`${this.what}: ${field} needs ${n} bytes, ${this.remaining} left`);
    const out = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  u8(field: string): number {
    return this.take(1, field).readUInt8(0);
  }

  u16(field: string): number {
    return this.take(2, field).readUInt16BE(0);
  }

  u32(field: string): number {
    return this.take(4, field).readUInt32BE(0);
  }

  u64(field: string): bigint {
    return this.take(8, field).readBigUInt64BE(0);
  }

  bytesOf(n: number, field: string): Buffer {
    return this.take(n, field);
  }

  /** A TPM2B: a 16-bit size, then at most `max` bytes. */
  tpm2b(max: number, field: string): Buffer {
    const size = this.u16(`${field} size`);
    if (size > max) throw new TpmParseError(`${this.what}: ${field} has ${size} bytes, at most ${max} allowed`);
    return this.take(size, field);
  }

  end(): void {
    if (this.remaining !== 0) throw new TpmParseError(`${this.what}: ${this.remaining} unexpected bytes after the structure`);
  }
}

export interface TpmScheme {
  alg: number;
  /** TPM_ALG_NULL when the scheme is NULL. */
  hashAlg: number;
}

export interface TpmPublic {
  type: 'rsa' | 'ecc';
  nameAlg: number;
  attributes: number;
  authPolicy: Buffer;
  /** TPMT_SYM_DEF_OBJECT; alg TPM_ALG_NULL for a signing key. */
  symmetric: { alg: number; keyBits: number; mode: number };
  scheme: TpmScheme;
  /** RSA: modulus bits; ECC: the TPM_ECC_CURVE. */
  keyBits: number;
  curve: number;
  /** The public key for Node's crypto. */
  key: KeyObject;
  /** TPMT_PUBLIC as marshalled: what the Name is computed over. */
  marshalled: Buffer;
}

/** TPM_ECC_CURVE → JWK curve name and coordinate size. */
const ECC_CURVES: ReadonlyMap<number, { crv: string; size: number }> = new Map([
  [0x0003, { crv: 'P-256', size: 32 }],
  [0x0004, { crv: 'P-384', size: 48 }],
  [0x0005, { crv: 'P-521', size: 66 }],
]);

function readSymmetric(r: TpmReader): TpmPublic['symmetric'] {
  const alg = r.u16('symmetric.algorithm');
  if (alg === TpmAlg.NULL) return { alg, keyBits: 0, mode: TpmAlg.NULL };
  return { alg, keyBits: r.u16('symmetric.keyBits'), mode: r.u16('symmetric.mode') };
}

function readScheme(r: TpmReader): TpmScheme {
  const alg = r.u16('scheme');
  if (alg === TpmAlg.NULL) return { alg, hashAlg: TpmAlg.NULL };
  const hashAlg = r.u16('scheme.hashAlg');
  // ECDAA alone carries a commit count after the hash.
  if (alg === TpmAlg.ECDAA) r.u16('scheme.count');
  return { alg, hashAlg };
}

const b64url = (bytes: Buffer) => bytes.toString('base64url');

/** Parses a TPMT_PUBLIC of an RSA or ECC key (keyed-hash and symmetric objects are refused). */
export function parseTpmtPublic(marshalled: Buffer, what = 'TPMT_PUBLIC'): TpmPublic {
  if (marshalled.length > MAX_PUBLIC) throw new TpmParseError(`${what}: ${marshalled.length} bytes is too large for a public area`);
  const r = new TpmReader(marshalled, what);
  const typeAlg = r.u16('type');
  if (typeAlg !== TpmAlg.RSA && typeAlg !== TpmAlg.ECC) {
    throw new TpmParseError(`${what}: object type 0x${typeAlg.toString(16).padStart(4, '0')} is not an RSA or ECC key`);
  }
  const nameAlg = r.u16('nameAlg');
  hashOf(nameAlg, `${what} nameAlg`);
  const attributes = r.u32('objectAttributes');
  const authPolicy = r.tpm2b(MAX_DIGEST, 'authPolicy');
  const symmetric = readSymmetric(r);
  const scheme = readScheme(r);
  if (typeAlg === TpmAlg.RSA) {
    const keyBits = r.u16('rsa.keyBits');
    const exponentValue = r.u32('rsa.exponent');
    const modulus = r.tpm2b(MAX_RSA_KEY_BYTES, 'rsa.unique');
    r.end();
    if (keyBits < 1024 || keyBits > MAX_RSA_KEY_BYTES * 8 || modulus.length * 8 !== keyBits) {
      throw new TpmParseError(`${what}: an RSA modulus of ${modulus.length} bytes does not fit keyBits ${keyBits}`);
    }
    const exponent = Buffer.alloc(4);
    exponent.writeUInt32BE(exponentValue === 0 ? 65537 : exponentValue);
    let key: KeyObject;
    try {
      key = createPublicKey({ key: { kty: 'RSA', n: b64url(modulus), e: b64url(exponent.subarray(exponent.findIndex((b) => b !== 0))) }, format: 'jwk' });
    } catch (err) {
      throw new TpmParseError(`${what}: the RSA key is not usable: ${(err as Error).message}`);
    }
    return { type: 'rsa', nameAlg, attributes, authPolicy, symmetric, scheme, keyBits, curve: 0, key, marshalled };
  }
  const curve = r.u16('ecc.curveID');
  const kdf = r.u16('ecc.kdf');
  if (kdf !== TpmAlg.NULL) r.u16('ecc.kdf.hashAlg');
  const x = r.tpm2b(MAX_ECC_KEY_BYTES, 'ecc.unique.x');
  const y = r.tpm2b(MAX_ECC_KEY_BYTES, 'ecc.unique.y');
  r.end();
  const named = ECC_CURVES.get(curve);
  if (!named) throw new TpmParseError(`${what}: ECC curve 0x${curve.toString(16)} is not supported`);
  if (x.length > named.size || y.length > named.size) throw new TpmParseError(`${what}: an ECC point coordinate is larger than the curve`);
  const pad = (v: Buffer) => Buffer.concat([Buffer.alloc(named.size - v.length), v]);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: 'EC', crv: named.crv, x: b64url(pad(x)), y: b64url(pad(y)) }, format: 'jwk' });
  } catch (err) {
    throw new TpmParseError(`${what}: the ECC point is not on ${named.crv}: ${(err as Error).message}`);
  }
  return { type: 'ecc', nameAlg, attributes, authPolicy, symmetric, scheme, keyBits: named.size * 8, curve, key, marshalled };
}

/** Parses a TPM2B_PUBLIC (as tpm2_readpublic -o and tpm2_createak -u write it). */
export function parseTpm2bPublic(bytes: Buffer, what = 'TPM2B_PUBLIC'): TpmPublic {
  const r = new TpmReader(bytes, what);
  const inner = r.tpm2b(MAX_PUBLIC, 'publicArea');
  r.end();
  return parseTpmtPublic(Buffer.from(inner), what);
}

/** The object's Name: nameAlg || H_nameAlg(TPMT_PUBLIC) (Part 1, 16). */
export function tpmName(pub: TpmPublic): Buffer {
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(pub.nameAlg);
  return Buffer.concat([alg, createHash(hashOf(pub.nameAlg, 'nameAlg').name).update(pub.marshalled).digest()]);
}

export interface PcrSelection {
  hashAlg: number;
  pcrs: number[];
}

export interface QuoteAttest {
  qualifiedSigner: Buffer;
  extraData: Buffer;
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
  firmwareVersion: bigint;
  pcrSelect: PcrSelection[];
  pcrDigest: Buffer;
}

/** Parses a TPMS_ATTEST and requires it to be a TPM-generated quote. */
export function parseQuoteAttest(bytes: Buffer): QuoteAttest {
  if (bytes.length > MAX_ATTEST) throw new TpmParseError(`TPMS_ATTEST: ${bytes.length} bytes is too large for a quote`);
  const r = new TpmReader(bytes, 'TPMS_ATTEST');
  const magic = r.u32('magic');
  if (magic !== TPM_GENERATED) throw new TpmParseError(`TPMS_ATTEST: magic 0x${magic.toString(16)} is not TPM_GENERATED_VALUE`);
  const type = r.u16('type');
  if (type !== TPM_ST_ATTEST_QUOTE) throw new TpmParseError(`TPMS_ATTEST: type 0x${type.toString(16)} is not TPM_ST_ATTEST_QUOTE`);
  const qualifiedSigner = r.tpm2b(MAX_NAME, 'qualifiedSigner');
  const extraData = r.tpm2b(MAX_DIGEST, 'extraData');
  const clock = r.u64('clockInfo.clock');
  const resetCount = r.u32('clockInfo.resetCount');
  const restartCount = r.u32('clockInfo.restartCount');
  const safe = r.u8('clockInfo.safe') === 1;
  const firmwareVersion = r.u64('firmwareVersion');
  const banks = r.u32('pcrSelect.count');
  if (banks > MAX_PCR_BANKS) throw new TpmParseError(`TPMS_ATTEST: ${banks} PCR banks selected, at most ${MAX_PCR_BANKS}`);
  const pcrSelect: PcrSelection[] = [];
  for (let i = 0; i < banks; i++) {
    const hashAlg = r.u16('pcrSelect.hash');
    const size = r.u8('pcrSelect.sizeofSelect');
    if (size > MAX_PCR_SELECT_BYTES) throw new TpmParseError(`TPMS_ATTEST: a PCR bitmap of ${size} bytes`);
    const bitmap = r.bytesOf(size, 'pcrSelect.pcrSelect');
    const pcrs: number[] = [];
    for (let bit = 0; bit < size * 8; bit++) if (bitmap[bit >> 3]! & (1 << (bit & 7))) pcrs.push(bit);
    pcrSelect.push({ hashAlg, pcrs });
  }
  const pcrDigest = r.tpm2b(MAX_DIGEST, 'pcrDigest');
  r.end();
  return { qualifiedSigner, extraData, clock, resetCount, restartCount, safe, firmwareVersion, pcrSelect, pcrDigest };
}

export interface TpmSignature {
  alg: number;
  hashAlg: number;
  /** RSA: the signature; ECDSA: r || s, each padded to the curve size by the verifier. */
  rsa?: Buffer;
  ecdsa?: { r: Buffer; s: Buffer };
}

/** Parses a TPMT_SIGNATURE (as tpm2_quote -s writes it) of the RSASSA, RSAPSS or ECDSA scheme. */
export function parseTpmtSignature(bytes: Buffer): TpmSignature {
  const r = new TpmReader(bytes, 'TPMT_SIGNATURE');
  const alg = r.u16('sigAlg');
  const hashAlg = r.u16('hash');
  if (alg === TpmAlg.RSASSA || alg === TpmAlg.RSAPSS) {
    const rsa = r.tpm2b(MAX_RSA_KEY_BYTES, 'signature');
    r.end();
    return { alg, hashAlg, rsa };
  }
  if (alg === TpmAlg.ECDSA) {
    const sigR = r.tpm2b(MAX_ECC_KEY_BYTES, 'signatureR');
    const sigS = r.tpm2b(MAX_ECC_KEY_BYTES, 'signatureS');
    r.end();
    return { alg, hashAlg, ecdsa: { r: sigR, s: sigS } };
  }
  throw new TpmParseError(`TPMT_SIGNATURE: signature scheme 0x${alg.toString(16).padStart(4, '0')} is not RSASSA, RSAPSS or ECDSA`);
}

/** Names of a TPMA_OBJECT's set bits, for messages. */
export function attributeNames(attributes: number): string[] {
  return Object.entries(ObjectAttribute)
    .filter(([, bit]) => (attributes & bit) !== 0)
    .map(([name]) => name);
}
