// Verifying one TPM2 quote, as a pure function of what the node sent, the enrolled AK, the nonce
// this operator issued and what the plan expects. In order: the signature is the enrolled AK's over
// the attestation structure; the structure is a TPM-generated quote; it carries our nonce (fresh,
// single use, within its age); it covers exactly the PCRs we asked for; the PCR values the node
// reported hash to the quoted digest; the boot event log, where sent, replays to the quoted values;
// then the quoted values are compared with the expected ones. Each failure has its own reason.
import { constants, createHash, timingSafeEqual, verify } from 'node:crypto';
import { EventLogError, loggedSecureBoot, parseEventLog, replayEventLog, type LoggedSecureBoot } from './event-log.js';
import { hashOf, parseQuoteAttest, parseTpmtSignature, TpmAlg, type QuoteAttest, type TpmParseError, type TpmPublic } from './tpm-structures.js';

export const QuoteFailure = {
  QuoteSignatureInvalid: 'QuoteSignatureInvalid',
  QuoteInvalid: 'QuoteInvalid',
  NonceMismatch: 'NonceMismatch',
  NonceReplayed: 'NonceReplayed',
  NonceExpired: 'NonceExpired',
  PcrSelectionMismatch: 'PcrSelectionMismatch',
  PcrDigestMismatch: 'PcrDigestMismatch',
  EventLogInvalid: 'EventLogInvalid',
  EventLogReplayMismatch: 'EventLogReplayMismatch',
} as const;
export type QuoteFailure = (typeof QuoteFailure)[keyof typeof QuoteFailure];

/** PCR banks by name (the VaultPolicy's pcrBank) as TPM_ALG_ID. */
export const BANK_ALGS: Readonly<Record<string, number>> = { sha1: TpmAlg.SHA1, sha256: TpmAlg.SHA256, sha384: TpmAlg.SHA384, sha512: TpmAlg.SHA512 };

export interface QuoteEvidence {
  /** TPMS_ATTEST as the TPM signed it. */
  attest: Buffer;
  /** TPMT_SIGNATURE. */
  signature: Buffer;
  /** The values of the quoted PCRs, as the node reports them. */
  pcrValues: { index: number; value: Buffer }[];
  /** The boot event log; empty when the node has none. */
  eventLog: Buffer;
  /** Set by the node when it could not send its log (too large, unreadable). */
  eventLogError?: string;
}

export interface QuoteRequestRecord {
  nonce: Buffer;
  issuedAt: number;
  bank: string;
  pcrs: number[];
}

export interface QuoteExpectations {
  expectedPcrs: { index: number; value: string }[];
}

export interface VerifiedQuote {
  attest: QuoteAttest;
  bank: string;
  /** The quoted PCR values, proven by the quote. */
  pcrs: Map<number, Buffer>;
  /** SHA-256 (hex) over the quoted values in ascending order, as the agent's self-report defines it. */
  pcrDigest: string;
  eventLog?: { events: number; replayedPcrs: number[]; secureBoot?: LoggedSecureBoot };
  /** Expected PCRs whose quoted value differs. */
  mismatchedPcrs: number[];
}

export type QuoteVerdict = { ok: true; quote: VerifiedQuote } | { ok: false; reason: QuoteFailure; message: string };

export interface QuoteVerificationInput {
  ak: TpmPublic;
  request: QuoteRequestRecord;
  /** Nonces of this node answered before (single use: an old quote shows one of them). */
  usedNonces: readonly Buffer[];
  evidence: QuoteEvidence;
  expected: QuoteExpectations;
  now: number;
  nonceMaxAgeMs: number;
}

const failed = (reason: QuoteFailure, message: string): QuoteVerdict => ({ ok: false, reason, message });
const same = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

function signatureValid(ak: TpmPublic, attest: Buffer, signature: Buffer): { ok: true } | { ok: false; message: string } {
  let sig;
  try {
    sig = parseTpmtSignature(signature);
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
  const hash = TPM_SIGNING_HASHES.get(sig.hashAlg);
  if (!hash) return { ok: false, message: `the signature uses hash 0x${sig.hashAlg.toString(16)}, which the operator does not accept` };
  if (ak.scheme.alg !== TpmAlg.NULL && (ak.scheme.alg !== sig.alg || ak.scheme.hashAlg !== sig.hashAlg)) {
    return { ok: false, message: 'the signature\'s scheme is not the AK\'s' };
  }
  try {
    if (ak.type === 'rsa' && sig.rsa && (sig.alg === TpmAlg.RSASSA || sig.alg === TpmAlg.RSAPSS)) {
      const padding = sig.alg === TpmAlg.RSASSA ? constants.RSA_PKCS1_PADDING : constants.RSA_PKCS1_PSS_PADDING;
      // TPMs disagree on the PSS salt length (the digest size or the largest the key allows): AUTO accepts either.
      const ok = verify(hash, attest, { key: ak.key, padding, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig.rsa);
      return ok ? { ok } : { ok, message: 'the signature does not verify with the enrolled AK' };
    }
    if (ak.type === 'ecc' && sig.ecdsa && sig.alg === TpmAlg.ECDSA) {
      const size = ak.keyBits / 8;
      if (sig.ecdsa.r.length > size || sig.ecdsa.s.length > size) return { ok: false, message: 'an ECDSA signature component is larger than the curve' };
      const pad = (v: Buffer) => Buffer.concat([Buffer.alloc(size - v.length), v]);
      const ok = verify(hash, attest, { key: ak.key, dsaEncoding: 'ieee-p1363' }, Buffer.concat([pad(sig.ecdsa.r), pad(sig.ecdsa.s)]));
      return ok ? { ok } : { ok, message: 'the signature does not verify with the enrolled AK' };
    }
  } catch (err) {
    return { ok: false, message: `the signature cannot be checked: ${(err as Error).message}` };
  }
  return { ok: false, message: 'the signature\'s algorithm does not fit the enrolled AK' };
}

const TPM_SIGNING_HASHES = new Map<number, string>([
  [TpmAlg.SHA256, 'sha256'],
  [TpmAlg.SHA384, 'sha384'],
  [TpmAlg.SHA512, 'sha512'],
]);

/** The nonce check: our outstanding nonce, within its age; an old one of ours is a replay. */
function nonceVerdict(input: QuoteVerificationInput, extraData: Buffer): QuoteVerdict | undefined {
  const { request } = input;
  if (!same(extraData, request.nonce)) {
    if (input.usedNonces.some((n) => same(n, extraData))) return failed(QuoteFailure.NonceReplayed, 'the quote carries a nonce that an earlier quote already answered: a replayed quote');
    return failed(QuoteFailure.NonceMismatch, `the quote carries ${extraData.length} bytes of qualifying data that are not the nonce the operator sent`);
  }
  const age = input.now - request.issuedAt;
  if (age > input.nonceMaxAgeMs) return failed(QuoteFailure.NonceExpired, `the quote answered a nonce issued ${age} ms ago (at most ${input.nonceMaxAgeMs} ms)`);
  return undefined;
}

export function verifyQuote(input: QuoteVerificationInput): QuoteVerdict {
  const { ak, request, evidence } = input;
  const signature = signatureValid(ak, evidence.attest, evidence.signature);
  if (!signature.ok) return failed(QuoteFailure.QuoteSignatureInvalid, signature.message);
  let attest: QuoteAttest;
  try {
    attest = parseQuoteAttest(evidence.attest);
  } catch (err) {
    return failed(QuoteFailure.QuoteInvalid, (err as TpmParseError).message);
  }
  const nonce = nonceVerdict(input, attest.extraData);
  if (nonce) return nonce;

  const bankAlg = BANK_ALGS[request.bank];
  if (bankAlg === undefined) return failed(QuoteFailure.PcrSelectionMismatch, `PCR bank ${request.bank} is not supported`);
  const wanted = [...request.pcrs].sort((a, b) => a - b);
  const selected = attest.pcrSelect.filter((s) => s.pcrs.length > 0);
  if (selected.length !== 1 || selected[0]!.hashAlg !== bankAlg || selected[0]!.pcrs.join(',') !== wanted.join(',')) {
    const shown = selected.map((s) => `0x${s.hashAlg.toString(16)}:${s.pcrs.join(',')}`).join(' ') || 'nothing';
    return failed(QuoteFailure.PcrSelectionMismatch, `the quote covers ${shown}, not ${request.bank}:${wanted.join(',')}`);
  }

  // The reported values must be exactly the quoted PCRs, each of the bank's size, and hash to the digest.
  const { size: bankSize } = hashOf(bankAlg, 'bank');
  const values = new Map<number, Buffer>();
  for (const { index, value } of evidence.pcrValues) {
    if (!wanted.includes(index) || values.has(index) || value.length !== bankSize) {
      return failed(QuoteFailure.PcrDigestMismatch, `the reported value of PCR ${index} is not one of the quoted ${request.bank} PCRs`);
    }
    values.set(index, value);
  }
  const absent = wanted.filter((p) => !values.has(p));
  if (absent.length > 0) return failed(QuoteFailure.PcrDigestMismatch, `the node reported no value for quoted PCR ${absent.join(', ')}`);
  const sigHash = parseTpmtSignature(evidence.signature).hashAlg;
  const composite = createHash(hashOf(sigHash, 'signature hash').name);
  for (const pcr of wanted) composite.update(values.get(pcr)!);
  if (!same(composite.digest(), attest.pcrDigest)) {
    return failed(QuoteFailure.PcrDigestMismatch, 'the reported PCR values do not hash to the digest the TPM quoted: a reported value was altered');
  }
  const pcrDigest = createHash('sha256');
  for (const pcr of wanted) pcrDigest.update(values.get(pcr)!);

  let eventLog: VerifiedQuote['eventLog'];
  if (evidence.eventLogError) return failed(QuoteFailure.EventLogInvalid, `the node could not send its event log: ${evidence.eventLogError.slice(0, 300)}`);
  if (evidence.eventLog.length > 0) {
    try {
      const log = parseEventLog(evidence.eventLog);
      const replayed = replayEventLog(log, bankAlg);
      const differing = wanted.filter((pcr) => replayed.has(pcr) && !same(replayed.get(pcr)!, values.get(pcr)!));
      if (differing.length > 0) {
        return failed(QuoteFailure.EventLogReplayMismatch, `the event log does not replay to the quoted value of PCR ${differing.join(', ')}: a measurement is missing from the log or was altered`);
      }
      const replayedPcrs = wanted.filter((pcr) => replayed.has(pcr));
      const secureBoot = replayedPcrs.includes(7) ? loggedSecureBoot(log, bankAlg) : undefined;
      eventLog = { events: log.events.length, replayedPcrs, ...(secureBoot ? { secureBoot } : {}) };
    } catch (err) {
      if (err instanceof EventLogError) return failed(QuoteFailure.EventLogInvalid, err.message);
      throw err;
    }
  }

  const mismatchedPcrs = input.expected.expectedPcrs
    .filter((e) => values.get(e.index)?.toString('hex') !== e.value.toLowerCase())
    .map((e) => e.index)
    .sort((a, b) => a - b);
  return {
    ok: true,
    quote: { attest, bank: request.bank, pcrs: values, pcrDigest: pcrDigest.digest('hex'), ...(eventLog ? { eventLog } : {}), mismatchedPcrs: [...new Set(mismatchedPcrs)] },
  };
}
