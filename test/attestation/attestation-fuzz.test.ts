// Property tests over what a node sends for attestation: valid event logs, TPM public areas, quotes
// and signatures (real ones, from swtpm) mutated at random — bit flips, counts and sizes replaced
// with boundary values, bytes cut, inserted or deleted — never crash the parsers or the verifier,
// never take a second, and never grow memory with what the input claims; a mutated quote, signature
// or PCR report is never accepted.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { tpm2ToolsAttestation } from '../../agents/src/attestation/tpm-attestation.js';
import { checkAttestationKey, checkEndorsementKey } from '../../operator/src/attestation/enrolment.js';
import { EventLogError, parseEventLog, replayEventLog } from '../../operator/src/attestation/event-log.js';
import { verifyQuote, type QuoteEvidence } from '../../operator/src/attestation/quote-verification.js';
import { parseQuoteAttest, parseTpm2bPublic, parseTpmtSignature, TpmAlg, TpmParseError, type TpmPublic } from '../../operator/src/attestation/tpm-structures.js';
import { startSwtpm, type Swtpm } from '../vault/swtpm.js';
import { measureOnTpm, simulatedFirmwareBoot, writeEventLog } from './event-log-writer.js';

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'u32'; at: number; value: number; le: boolean }
  | { kind: 'u16'; at: number; value: number; le: boolean }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; length: number };

const position = fc.nat({ max: 1 << 20 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: position, value: fc.oneof(fc.constantFrom(0, 1, 2, 3, 8, 24, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0xffffffff), fc.nat()), le: fc.boolean() }),
  fc.record({ kind: fc.constant('u16' as const), at: position, value: fc.oneof(fc.constantFrom(0, 1, 4, 0x0b, 0x14, 0x20, 0x40, 0x41, 0x100, 0x400, 0xffff), fc.nat({ max: 0xffff })), le: fc.boolean() }),
  fc.record({ kind: fc.constant('cut' as const), at: position }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 16 }) }),
);

function mutate(seed: Buffer, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(seed);
  for (const m of mutations) {
    const at = m.at % Math.max(1, bytes.length);
    switch (m.kind) {
      case 'flip': if (bytes.length) bytes[at] = bytes[at]! ^ (1 << m.bit); break;
      case 'u32': if (at + 4 <= bytes.length) bytes[m.le ? 'writeUInt32LE' : 'writeUInt32BE'](m.value >>> 0, at); break;
      case 'u16': if (at + 2 <= bytes.length) bytes[m.le ? 'writeUInt16LE' : 'writeUInt16BE'](m.value, at); break;
      case 'cut': bytes = bytes.subarray(0, at); break;
      case 'insert': bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]); break;
      case 'delete': bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.length)]); break;
    }
  }
  return bytes;
}
const mutationsOf = fc.array(mutation, { minLength: 1, maxLength: 6 });

let dir: string;
let swtpm: Swtpm;
let seeds: { log: Buffer; akPublic: Buffer; ekPublic: Buffer; ekCertificate: Buffer; ak: TpmPublic; nonce: Buffer; evidence: QuoteEvidence };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'secai-attest-fuzz-'));
  swtpm = await startSwtpm(join(dir, 'tpm'), { ekCertificate: { caDir: join(dir, 'ca') } });
  const boot = simulatedFirmwareBoot({ secureBoot: true });
  await measureOnTpm(swtpm.tcti, boot);
  const tpm = tpm2ToolsAttestation({ tcti: swtpm.tcti, workDir: dir });
  const identity = await tpm.identity();
  const ak = checkAttestationKey(identity.akPublic);
  if (!ak.ok) throw new Error(ak.message);
  const nonce = randomBytes(32);
  const quote = await tpm.quote(nonce, 'sha256', [0, 4, 7]);
  const log = writeEventLog(boot);
  seeds = { log, akPublic: identity.akPublic, ekPublic: identity.ekPublic, ekCertificate: identity.ekCertificate!, ak: ak.value.ak, nonce, evidence: { ...quote, eventLog: log } };
}, 60_000);

afterAll(async () => {
  await swtpm?.stop();
  await rm(dir, { recursive: true, force: true });
});

function timed<T>(work: () => T): { ms: number } {
  const t0 = performance.now();
  work();
  return { ms: performance.now() - t0 };
}

it('parses 10,000 mutated event logs without a crash, each within a second, in bounded memory', () => {
  const heapBefore = process.memoryUsage().heapUsed;
  let slowest = 0;
  let refused = 0;
  fc.assert(
    fc.property(mutationsOf, (ms) => {
      const bytes = mutate(seeds.log, ms);
      const { ms: took } = timed(() => {
        try {
          replayEventLog(parseEventLog(bytes), TpmAlg.SHA256);
        } catch (err) {
          if (!(err instanceof EventLogError)) throw err;
          refused++;
        }
      });
      slowest = Math.max(slowest, took);
      return took < 1_000;
    }),
    { numRuns: 10_000, seed: 14 },
  );
  expect(refused).toBeGreaterThan(5_000);
  expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(256 * 1024 * 1024);
  console.log(`event log fuzz: ${refused} of 10000 refused, slowest ${slowest.toFixed(2)} ms`);
}, 120_000);

it('parses 5,000 mutated public areas, quotes and signatures without a crash, and checks keys without throwing', () => {
  const seedsOf = [seeds.akPublic, seeds.ekPublic, seeds.evidence.attest, seeds.evidence.signature];
  fc.assert(
    fc.property(fc.nat({ max: seedsOf.length - 1 }), mutationsOf, (which, ms) => {
      const bytes = mutate(seedsOf[which]!, ms);
      for (const parse of [parseTpm2bPublic, parseQuoteAttest, parseTpmtSignature]) {
        try {
          parse(bytes);
        } catch (err) {
          if (!(err instanceof TpmParseError)) throw err;
        }
      }
      // The enrolment checks turn anything into a verdict, never an exception.
      expect(checkAttestationKey(bytes).ok && which !== 0).toBe(false);
      checkEndorsementKey(bytes, which === 1 ? seeds.ekCertificate : undefined);
      checkEndorsementKey(seeds.ekPublic, mutate(seeds.ekCertificate, ms));
    }),
    { numRuns: 5_000, seed: 14 },
  );
});

it('never accepts a mutated quote, signature or PCR report, and never throws on one', () => {
  const verify = (evidence: QuoteEvidence) =>
    verifyQuote({
      ak: seeds.ak,
      request: { nonce: seeds.nonce, issuedAt: 0, bank: 'sha256', pcrs: [0, 4, 7] },
      usedNonces: [],
      evidence,
      expected: { expectedPcrs: [] },
      now: 1,
      nonceMaxAgeMs: 30_000,
    });
  expect(verify(seeds.evidence).ok).toBe(true);
  fc.assert(
    fc.property(fc.constantFrom('attest', 'signature', 'pcr', 'log'), mutationsOf, (field, ms) => {
      const e = seeds.evidence;
      const mutated: QuoteEvidence =
        field === 'attest' ? { ...e, attest: mutate(e.attest, ms) }
        : field === 'signature' ? { ...e, signature: mutate(e.signature, ms) }
        : field === 'pcr' ? { ...e, pcrValues: e.pcrValues.map((p, i) => (i === 1 ? { index: p.index, value: mutate(p.value, ms) } : p)) }
        : { ...e, eventLog: mutate(e.eventLog, ms) };
      const unchanged = field === 'attest' ? mutated.attest.equals(e.attest) : field === 'signature' ? mutated.signature.equals(e.signature) : field === 'pcr' ? mutated.pcrValues[1]!.value.equals(e.pcrValues[1]!.value) : true;
      const verdict = verify(mutated);
      if (!unchanged) expect(verdict.ok).toBe(false);
    }),
    { numRuns: 3_000, seed: 14 },
  );
});
