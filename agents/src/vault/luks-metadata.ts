// Parses what cryptsetup tells about a vault: the binary header prefix (magic and version) and the
// LUKS2 JSON metadata (`cryptsetup luksDump --dump-json-metadata`), including systemd-tpm2 tokens.
// Pure and bounded: the JSON comes from a header on disk, which an attacker with the disk controls.

/** LUKS2 keeps at most 4 MiB of JSON metadata (the largest JSON area the format allows). */
export const MAX_METADATA_JSON_BYTES = 4 * 1024 * 1024;
/** LUKS2 has at most 32 keyslots and 32 tokens; segments are few (2 during reencryption). */
const MAX_OBJECTS = 32;
const MAX_STRING = 256;
/** A systemd-tpm2 blob is a TPM2B_PRIVATE and a TPM2B_PUBLIC: well under 2 KiB; 64 KiB leaves room. */
const MAX_TPM2_BLOB_BASE64 = 64 * 1024;

const LUKS_MAGIC = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]);

export class LuksMetadataError extends Error {
  override name = 'LuksMetadataError';
}

/** The LUKS version of a header from its first 8 bytes (magic, then a big-endian u16), or undefined. */
export function luksVersion(prefix: Uint8Array): number | undefined {
  if (prefix.length < 8) return undefined;
  const bytes = Buffer.from(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  if (!bytes.subarray(0, 6).equals(LUKS_MAGIC)) return undefined;
  return bytes.readUInt16BE(6);
}

export interface LuksKeyslot {
  id: string;
  type: string;
  keySizeBits: number;
  pbkdf: string;
  /** Argon2 memory cost in KiB; absent for PBKDF2. */
  pbkdfMemoryKib?: number;
}

export interface LuksSegment {
  id: string;
  type: string;
  cipher: string;
}

/** A systemd-cryptenroll TPM2 token: which keyslots the TPM-sealed key opens and under which PCR policy. */
export interface Tpm2Token {
  id: string;
  keyslots: string[];
  pcrBank: string;
  pcrs: number[];
  /** The TPM policy digest the key is sealed to (hex), when systemd recorded it. */
  policyHash?: string;
  /** A PIN is part of the policy (PolicyAuthValue). */
  pin: boolean;
  /** PCRs bound through a signed policy (PolicyAuthorize) rather than literal values. */
  signedPolicyPcrs: number[];
  /** The sealed object: TPM2B_PRIVATE followed by TPM2B_PUBLIC. */
  blob?: Buffer;
}

export interface Luks2Header {
  keyslots: LuksKeyslot[];
  segments: LuksSegment[];
  tpm2Tokens: Tpm2Token[];
  /** Types of tokens other than systemd-tpm2 (fido2, pkcs11, ...). */
  otherTokens: string[];
}

type Json = Record<string, unknown>;

function object(value: unknown, where: string): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new LuksMetadataError(`${where} is not an object`);
  return value as Json;
}

function members(value: unknown, where: string): [string, Json][] {
  const entries = Object.entries(object(value, where));
  if (entries.length > MAX_OBJECTS) throw new LuksMetadataError(`${where} has ${entries.length} entries, at most ${MAX_OBJECTS}`);
  return entries.map(([id, v]) => {
    if (!/^\d{1,2}$/.test(id)) throw new LuksMetadataError(`${where} has an entry named ${JSON.stringify(id.slice(0, 20))}`);
    return [id, object(v, `${where}.${id}`)];
  });
}

function text(value: unknown, where: string, max = MAX_STRING): string {
  if (typeof value !== 'string' || value.length > max) throw new LuksMetadataError(`${where} is not a string of at most ${max} characters`);
  return value;
}

function count(value: unknown, where: string, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new LuksMetadataError(`${where} is not an integer from 0 to ${max}`);
  }
  return value;
}

function pcrList(value: unknown, where: string): number[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > 24) throw new LuksMetadataError(`${where} is not a list of at most 24 PCRs`);
  return value.map((pcr, i) => count(pcr, `${where}[${i}]`, 23));
}

function parseKeyslot(id: string, slot: Json): LuksKeyslot {
  const where = `keyslots.${id}`;
  const kdf = object(slot.kdf, `${where}.kdf`);
  const pbkdf = text(kdf.type, `${where}.kdf.type`);
  const keyslot: LuksKeyslot = {
    id,
    type: text(slot.type, `${where}.type`),
    keySizeBits: count(slot.key_size, `${where}.key_size`, 1024) * 8,
    pbkdf,
  };
  if (pbkdf.startsWith('argon2')) keyslot.pbkdfMemoryKib = count(kdf.memory, `${where}.kdf.memory`, 64 * 1024 * 1024);
  return keyslot;
}

function parseTpm2Token(id: string, token: Json): Tpm2Token {
  const where = `tokens.${id}`;
  const keyslots = token.keyslots;
  if (!Array.isArray(keyslots) || keyslots.length > MAX_OBJECTS) throw new LuksMetadataError(`${where}.keyslots is not a list`);
  const policyHash = token['tpm2-policy-hash'];
  const blob = token['tpm2-blob'];
  const parsed: Tpm2Token = {
    id,
    keyslots: keyslots.map((k, i) => text(k, `${where}.keyslots[${i}]`, 2)),
    // systemd before v250 wrote no bank; it then used sha256.
    pcrBank: token['tpm2-pcr-bank'] === undefined ? 'sha256' : text(token['tpm2-pcr-bank'], `${where}.tpm2-pcr-bank`, 16),
    pcrs: pcrList(token['tpm2-pcrs'], `${where}.tpm2-pcrs`),
    pin: token['tpm2-pin'] === true,
    signedPolicyPcrs: pcrList(token['tpm2_pubkey_pcrs'] ?? token['tpm2-pubkey-pcrs'], `${where}.tpm2_pubkey_pcrs`),
  };
  if (policyHash !== undefined) {
    const hash = text(policyHash, `${where}.tpm2-policy-hash`, 128);
    if (!/^(?:[0-9a-f]{2})+$/.test(hash)) throw new LuksMetadataError(`${where}.tpm2-policy-hash is not lowercase hex`);
    parsed.policyHash = hash;
  }
  if (blob !== undefined) parsed.blob = Buffer.from(text(blob, `${where}.tpm2-blob`, MAX_TPM2_BLOB_BASE64), 'base64');
  return parsed;
}

/** Parses `cryptsetup luksDump --dump-json-metadata` output; throws LuksMetadataError naming the bad field. */
export function parseLuks2Metadata(json: string): Luks2Header {
  if (Buffer.byteLength(json) > MAX_METADATA_JSON_BYTES) throw new LuksMetadataError(`metadata exceeds ${MAX_METADATA_JSON_BYTES} bytes`);
  let root: Json;
  try {
    root = object(JSON.parse(json), 'metadata');
  } catch (error) {
    if (error instanceof LuksMetadataError) throw error;
    throw new LuksMetadataError('metadata is not JSON');
  }
  const header: Luks2Header = {
    keyslots: members(root.keyslots, 'keyslots').map(([id, slot]) => parseKeyslot(id, slot)),
    segments: members(root.segments, 'segments').map(([id, s]) => ({
      id,
      type: text(s.type, `segments.${id}.type`),
      cipher: s.encryption === undefined ? '' : text(s.encryption, `segments.${id}.encryption`),
    })),
    tpm2Tokens: [],
    otherTokens: [],
  };
  for (const [id, token] of members(root.tokens ?? {}, 'tokens')) {
    const type = text(token.type, `tokens.${id}.type`);
    if (type === 'systemd-tpm2') header.tpm2Tokens.push(parseTpm2Token(id, token));
    else header.otherTokens.push(type);
  }
  return header;
}
