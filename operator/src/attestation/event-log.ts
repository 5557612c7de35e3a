// The boot event log in the TCG PC Client crypto-agile format (TCG PC Client Platform Firmware
// Profile, 10.2: a first TCG_PCR_EVENT holding the TCG_EfiSpecIdEvent "Spec ID Event03", then
// TCG_PCR_EVENT2 records, little-endian), as the kernel exposes it in
// /sys/kernel/security/tpm0/binary_bios_measurements. It comes from an untrusted node: every count,
// size and length is checked against a limit and the remaining bytes before it is used, events are
// views into the input (nothing is allocated from a size the log states), and the parse stops at
// a bound on events and bytes. Replaying it gives the PCR values the log claims; only a quote makes
// them evidence.
import { createHash } from 'node:crypto';
import { TPM_HASHES } from './tpm-structures.js';

export class EventLogError extends Error {
  override name = 'EventLogError';
}

/** Limits of the parse. Real firmware logs are 10 to 100 KiB with a few hundred events. */
export const EVENT_LOG_LIMITS = {
  maxBytes: 2 * 1024 * 1024,
  maxEvents: 20_000,
  /** One event's data: a db or dbx variable with many certificates stays well under this. */
  maxEventBytes: 512 * 1024,
  maxAlgorithms: 8,
} as const;
export type EventLogLimits = Record<keyof typeof EVENT_LOG_LIMITS, number>;

/** Event types the replay and the Secure Boot reading treat specially (PFP, 10.4.1). */
export const EventType = {
  EV_NO_ACTION: 0x00000003,
  EV_SEPARATOR: 0x00000004,
  EV_EFI_VARIABLE_DRIVER_CONFIG: 0x80000001,
} as const;

export interface LogEvent {
  pcr: number;
  type: number;
  /** Digest per TPM_ALG_ID. */
  digests: Map<number, Buffer>;
  data: Buffer;
}

export interface ParsedEventLog {
  /** Digest sizes the Spec ID event declares, per TPM_ALG_ID. */
  algorithms: Map<number, number>;
  /** The locality the platform started in (a StartupLocality event), which seeds PCR 0. */
  startupLocality: number;
  events: LogEvent[];
}

class LeReader {
  offset = 0;
  constructor(private readonly bytes: Buffer) {}

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  take(n: number, what: string): Buffer {
    if (n > this.remaining) throw new EventLogError(`event log: ${what} needs ${n} bytes at offset ${this.offset}, ${this.remaining} left`);
    const out = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  u8(what: string): number {
    return this.take(1, what).readUInt8(0);
  }

  u16(what: string): number {
    return this.take(2, what).readUInt16LE(0);
  }

  u32(what: string): number {
    return this.take(4, what).readUInt32LE(0);
  }
}

const SPEC_ID_SIGNATURE = Buffer.from('Spec ID Event03\0', 'ascii');
const STARTUP_LOCALITY_SIGNATURE = Buffer.from('StartupLocality\0', 'ascii');
const PCR_COUNT = 24;

function readSpecId(data: Buffer): Map<number, number> {
  const r = new LeReader(data);
  if (!r.take(16, 'Spec ID signature').equals(SPEC_ID_SIGNATURE)) {
    throw new EventLogError('event log: the first event is not a "Spec ID Event03" (not a crypto-agile log)');
  }
  r.u32('platformClass');
  r.u8('specVersionMinor');
  const major = r.u8('specVersionMajor');
  if (major !== 2) throw new EventLogError(`event log: spec version ${major} is not 2`);
  r.u8('specErrata');
  r.u8('uintnSize');
  const count = r.u32('numberOfAlgorithms');
  if (count === 0 || count > EVENT_LOG_LIMITS.maxAlgorithms) {
    throw new EventLogError(`event log: the Spec ID event declares ${count} algorithms (1 to ${EVENT_LOG_LIMITS.maxAlgorithms})`);
  }
  const algorithms = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const alg = r.u16('algorithmId');
    const size = r.u16('digestSize');
    if (algorithms.has(alg)) throw new EventLogError(`event log: algorithm 0x${alg.toString(16)} declared twice`);
    const known = TPM_HASHES.get(alg);
    // An unknown algorithm may be declared (its digests are skipped by size), but never with a size
    // that contradicts a known one, and never larger than any digest a TPM makes.
    if ((known && known.size !== size) || size === 0 || size > 64) {
      throw new EventLogError(`event log: algorithm 0x${alg.toString(16)} declared with digest size ${size}`);
    }
    algorithms.set(alg, size);
  }
  const vendorInfoSize = r.u8('vendorInfoSize');
  r.take(vendorInfoSize, 'vendorInfo');
  if (r.remaining !== 0) throw new EventLogError('event log: bytes after the Spec ID event\'s vendor info');
  return algorithms;
}

/** Parses a crypto-agile event log within EVENT_LOG_LIMITS; throws EventLogError on anything malformed. */
export function parseEventLog(bytes: Buffer, limits: Partial<EventLogLimits> = {}): ParsedEventLog {
  const bound: EventLogLimits = { ...EVENT_LOG_LIMITS, ...limits };
  if (bytes.length > bound.maxBytes) throw new EventLogError(`event log: ${bytes.length} bytes exceeds ${bound.maxBytes}`);
  const r = new LeReader(bytes);
  // The first event is in the SHA-1 TCG_PCR_EVENT format, whatever the banks.
  const firstPcr = r.u32('first event pcrIndex');
  const firstType = r.u32('first event eventType');
  r.take(20, 'first event digest');
  const firstSize = r.u32('first event eventSize');
  if (firstPcr !== 0 || firstType !== EventType.EV_NO_ACTION || firstSize > 1024) {
    throw new EventLogError('event log: the first event is not an EV_NO_ACTION Spec ID event on PCR 0');
  }
  const algorithms = readSpecId(r.take(firstSize, 'Spec ID event'));

  const events: LogEvent[] = [];
  let startupLocality = 0;
  while (r.remaining > 0) {
    if (events.length >= bound.maxEvents) throw new EventLogError(`event log: more than ${bound.maxEvents} events`);
    const at = r.offset;
    const pcr = r.u32('pcrIndex');
    const type = r.u32('eventType');
    if (pcr >= PCR_COUNT) throw new EventLogError(`event log: event at offset ${at} names PCR ${pcr}`);
    const count = r.u32('digest count');
    if (count === 0 || count > algorithms.size) {
      throw new EventLogError(`event log: event at offset ${at} has ${count} digests; the log declares ${algorithms.size} algorithms`);
    }
    const digests = new Map<number, Buffer>();
    for (let i = 0; i < count; i++) {
      const alg = r.u16('digest algorithm');
      const size = algorithms.get(alg);
      if (size === undefined) throw new EventLogError(`event log: event at offset ${at} has a digest of undeclared algorithm 0x${alg.toString(16)}`);
      if (digests.has(alg)) throw new EventLogError(`event log: event at offset ${at} has two 0x${alg.toString(16)} digests`);
      digests.set(alg, r.take(size, 'digest'));
    }
    const size = r.u32('eventSize');
    if (size > bound.maxEventBytes) throw new EventLogError(`event log: event at offset ${at} has ${size} bytes of data, at most ${bound.maxEventBytes}`);
    const data = r.take(size, 'event data');
    if (type === EventType.EV_NO_ACTION && pcr === 0 && data.length === 17 && data.subarray(0, 16).equals(STARTUP_LOCALITY_SIGNATURE)) {
      startupLocality = data[16]!;
    }
    events.push({ pcr, type, digests, data });
  }
  return { algorithms, startupLocality, events };
}

/** PCR values at TPM2_Startup: zeros, PCR 17 to 22 all ones (PC Client PTP), PCR 0 seeded with the locality. */
function initialPcr(pcr: number, size: number, startupLocality: number): Buffer {
  if (pcr >= 17 && pcr <= 22) return Buffer.alloc(size, 0xff);
  const value = Buffer.alloc(size);
  if (pcr === 0) value[size - 1] = startupLocality;
  return value;
}

/**
 * The PCR values the log claims for the bank `hashAlg`: every event except EV_NO_ACTION is extended
 * into its PCR. Only PCRs the log touches appear. Throws when an extended event lacks the bank's digest.
 */
export function replayEventLog(log: ParsedEventLog, hashAlg: number): Map<number, Buffer> {
  const hash = TPM_HASHES.get(hashAlg);
  const size = log.algorithms.get(hashAlg);
  if (!hash || size === undefined) throw new EventLogError(`event log: the log has no digests of bank 0x${hashAlg.toString(16)}`);
  const pcrs = new Map<number, Buffer>();
  for (const event of log.events) {
    if (event.type === EventType.EV_NO_ACTION) continue;
    const digest = event.digests.get(hashAlg);
    if (!digest) throw new EventLogError(`event log: an event on PCR ${event.pcr} has no ${hash.name} digest`);
    const current = pcrs.get(event.pcr) ?? initialPcr(event.pcr, size, log.startupLocality);
    pcrs.set(event.pcr, createHash(hash.name).update(current).update(digest).digest());
  }
  return pcrs;
}

/** EFI_GLOBAL_VARIABLE, as the GUID's bytes are laid out in UEFI_VARIABLE_DATA (mixed-endian). */
const EFI_GLOBAL_VARIABLE = Buffer.from('61dfe48bca93d211aa0d00e098032b8c', 'hex');
const MAX_VARIABLE_NAME_CHARS = 256;

export interface VariableEvent {
  guid: Buffer;
  name: string;
  data: Buffer;
}

/** Reads UEFI_VARIABLE_DATA (PFP, 10.3.3) with its lengths checked against the event. */
export function parseVariableEvent(data: Buffer): VariableEvent {
  const r = new LeReader(data);
  const guid = r.take(16, 'VariableName GUID');
  const nameLength = r.take(8, 'UnicodeNameLength').readBigUInt64LE(0);
  const dataLength = r.take(8, 'VariableDataLength').readBigUInt64LE(0);
  if (nameLength > BigInt(MAX_VARIABLE_NAME_CHARS)) throw new EventLogError(`event log: a variable name of ${nameLength} characters`);
  if (dataLength > BigInt(r.remaining)) throw new EventLogError(`event log: variable data of ${dataLength} bytes exceeds its event`);
  const name = r.take(Number(nameLength) * 2, 'UnicodeName').toString('utf16le');
  const value = r.take(Number(dataLength), 'VariableData');
  if (r.remaining !== 0) throw new EventLogError('event log: bytes after a variable event\'s data');
  return { guid, name, data: value };
}

export type LoggedSecureBoot = 'Enabled' | 'Disabled';

/**
 * The SecureBoot variable as the firmware measured it into PCR 7 (EV_EFI_VARIABLE_DRIVER_CONFIG),
 * or undefined when the log has no such event. The event's digest must be the hash of its data, or
 * the data could say anything while the digest extends the real value.
 */
export function loggedSecureBoot(log: ParsedEventLog, hashAlg: number): LoggedSecureBoot | undefined {
  const hash = TPM_HASHES.get(hashAlg);
  if (!hash) throw new EventLogError(`event log: bank 0x${hashAlg.toString(16)} is not supported`);
  let state: LoggedSecureBoot | undefined;
  for (const event of log.events) {
    if (event.pcr !== 7 || event.type !== EventType.EV_EFI_VARIABLE_DRIVER_CONFIG) continue;
    const variable = parseVariableEvent(event.data);
    if (variable.name !== 'SecureBoot' || !variable.guid.equals(EFI_GLOBAL_VARIABLE)) continue;
    const digest = event.digests.get(hashAlg);
    if (!digest || !digest.equals(createHash(hash.name).update(event.data).digest())) {
      throw new EventLogError('event log: the SecureBoot variable event\'s digest is not the hash of its data');
    }
    state = variable.data.length === 1 && variable.data[0] === 1 ? 'Enabled' : 'Disabled';
  }
  return state;
}
