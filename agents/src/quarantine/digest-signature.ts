// Verifies a signature over a SHA-256 digest computed elsewhere. Sigstore message signatures are
// ECDSA (or RSA) over SHA-256(artifact), and Node's crypto.verify only takes the artifact itself,
// hashing it again — a second full pass over a multi-GB model. This checks the signature against
// the digest of the one pass instead: ECDSA P-256/P-384 verification written out with BigInt
// (public values only, so constant time does not matter), RSA PKCS#1 v1.5 through publicDecrypt.
import { constants, publicDecrypt, type KeyObject } from 'node:crypto';

interface Curve {
  p: bigint;
  n: bigint;
  b: bigint;
  gx: bigint;
  gy: bigint;
  bytes: number;
}

// SEC 2 / FIPS 186-4 domain parameters; both curves have a = -3.
const CURVES: Record<string, Curve> = {
  'P-256': {
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
    gx: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
    gy: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
    bytes: 32,
  },
  'P-384': {
    p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
    n: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
    gx: 0xaa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7n,
    gy: 0x3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5fn,
    bytes: 48,
  },
};

export class UnsupportedKeyError extends Error {}

function mod(a: bigint, m: bigint): bigint {
  const r = a % m;
  return r < 0n ? r + m : r;
}

function modPow(base: bigint, exponent: bigint, m: bigint): bigint {
  let result = 1n;
  let b = mod(base, m);
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return result;
}

/** Inverse modulo a prime. */
function invert(a: bigint, m: bigint): bigint {
  return modPow(a, m - 2n, m);
}

/** Jacobian coordinates; z = 0 is the point at infinity. */
type Point = { x: bigint; y: bigint; z: bigint };
const INFINITY: Point = { x: 1n, y: 1n, z: 0n };

function double(P: Point, p: bigint): Point {
  if (P.z === 0n || P.y === 0n) return INFINITY;
  // dbl-2001-b for a = -3.
  const delta = (P.z * P.z) % p;
  const gamma = (P.y * P.y) % p;
  const beta = (P.x * gamma) % p;
  const alpha = mod(3n * (P.x - delta) * (P.x + delta), p);
  const x = mod(alpha * alpha - 8n * beta, p);
  const z = mod((P.y + P.z) ** 2n - gamma - delta, p);
  const y = mod(alpha * (4n * beta - x) - 8n * gamma * gamma, p);
  return { x, y, z };
}

function add(P: Point, Q: Point, p: bigint): Point {
  if (P.z === 0n) return Q;
  if (Q.z === 0n) return P;
  const z1z1 = (P.z * P.z) % p;
  const z2z2 = (Q.z * Q.z) % p;
  const u1 = (P.x * z2z2) % p;
  const u2 = (Q.x * z1z1) % p;
  const s1 = (P.y * Q.z * z2z2) % p;
  const s2 = (Q.y * P.z * z1z1) % p;
  if (u1 === u2) return s1 === s2 ? double(P, p) : INFINITY;
  const h = mod(u2 - u1, p);
  const r = mod(s2 - s1, p);
  const h2 = (h * h) % p;
  const h3 = (h2 * h) % p;
  const x = mod(r * r - h3 - 2n * u1 * h2, p);
  const y = mod(r * (u1 * h2 - x) - s1 * h3, p);
  const z = (P.z * Q.z * h) % p;
  return { x, y, z };
}

function affineX(P: Point, p: bigint): bigint {
  const zi = invert(P.z, p);
  return (P.x * zi * zi) % p;
}

/** u1·G + u2·Q by Shamir's trick: one pass over the bits. */
function twoScalarMultiply(u1: bigint, G: Point, u2: bigint, Q: Point, p: bigint): Point {
  const GQ = add(G, Q, p);
  let R = INFINITY;
  const bits = Math.max(u1.toString(2).length, u2.toString(2).length);
  for (let i = bits - 1; i >= 0; i--) {
    R = double(R, p);
    const a = (u1 >> BigInt(i)) & 1n;
    const b = (u2 >> BigInt(i)) & 1n;
    if (a && b) R = add(R, GQ, p);
    else if (a) R = add(R, G, p);
    else if (b) R = add(R, Q, p);
  }
  return R;
}

/** DER ECDSA-Sig-Value: SEQUENCE { INTEGER r, INTEGER s }, parsed strictly and bounded. */
export function parseDerEcdsaSignature(der: Uint8Array, maxIntegerBytes: number): { r: bigint; s: bigint } | undefined {
  let pos = 0;
  const readLength = (): number | undefined => {
    const first = der[pos++];
    if (first === undefined) return undefined;
    if (first < 0x80) return first;
    if (first !== 0x81) return undefined; // signatures of these curves never need more than one length byte
    const value = der[pos++];
    return value !== undefined && value >= 0x80 ? value : undefined;
  };
  const readInteger = (): bigint | undefined => {
    if (der[pos++] !== 0x02) return undefined;
    const length = readLength();
    if (length === undefined || length === 0 || length > maxIntegerBytes + 1 || pos + length > der.length) return undefined;
    const bytes = der.subarray(pos, pos + length);
    pos += length;
    if (bytes[0]! & 0x80) return undefined; // negative
    if (bytes.length > 1 && bytes[0] === 0 && !(bytes[1]! & 0x80)) return undefined; // not minimal
    return BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
  };
  if (der[pos++] !== 0x30) return undefined;
  const total = readLength();
  if (total === undefined || pos + total !== der.length) return undefined;
  const r = readInteger();
  const s = readInteger();
  if (r === undefined || s === undefined || pos !== der.length) return undefined;
  return { r, s };
}

function verifyEcdsa(curve: Curve, x: bigint, y: bigint, digest: Uint8Array, signature: Uint8Array): boolean {
  const parsed = parseDerEcdsaSignature(signature, curve.bytes);
  if (!parsed) return false;
  const { r, s } = parsed;
  const { n, p } = curve;
  if (r < 1n || r >= n || s < 1n || s >= n) return false;
  // A SHA-256 digest is no longer than either order, so no truncation (FIPS 186-4 6.4).
  const e = BigInt(`0x${Buffer.from(digest).toString('hex')}`);
  const w = invert(s, n);
  const R = twoScalarMultiply((e * w) % n, { x: curve.gx, y: curve.gy, z: 1n }, (r * w) % n, { x, y, z: 1n }, p);
  if (R.z === 0n) return false;
  return affineX(R, p) % n === r;
}

// DER DigestInfo prefix for SHA-256 (RFC 8017 9.2 note 1).
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/** True when `signature` is a valid signature by `key` over the SHA-256 digest `digest`. */
export function verifyDigestSignature(key: KeyObject, digest: Uint8Array, signature: Uint8Array): boolean {
  if (digest.length !== 32) throw new Error('expected a SHA-256 digest');
  if (key.asymmetricKeyType === 'ec') {
    const jwk = key.export({ format: 'jwk' });
    const curve = jwk.crv ? CURVES[jwk.crv] : undefined;
    if (!curve || !jwk.x || !jwk.y) throw new UnsupportedKeyError(`EC curve ${jwk.crv ?? 'unknown'} is not supported (P-256, P-384)`);
    // createPublicKey has already checked that the point is on the curve.
    const x = BigInt(`0x${Buffer.from(jwk.x, 'base64url').toString('hex')}`);
    const y = BigInt(`0x${Buffer.from(jwk.y, 'base64url').toString('hex')}`);
    return verifyEcdsa(curve, x, y, digest, signature);
  }
  if (key.asymmetricKeyType === 'rsa') {
    let decoded: Buffer;
    try {
      decoded = publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, signature);
    } catch {
      return false;
    }
    return decoded.equals(Buffer.concat([SHA256_DIGEST_INFO, digest]));
  }
  throw new UnsupportedKeyError(`${key.asymmetricKeyType ?? 'unknown'} keys cannot verify a signature over a digest (ECDSA P-256/P-384 or RSA PKCS#1 v1.5)`);
}
