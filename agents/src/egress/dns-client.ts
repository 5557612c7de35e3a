// A minimal DNS stub client over UDP (RFC 1035) that asks exactly the resolvers it is given.
// node:dns would follow the system resolver configuration, which is not the plan's: FQDN entries
// must be resolved through the allowed resolvers only. Replies are untrusted input: every count,
// length and compression pointer is bounded, and a reply must come from the queried resolver,
// carry the query's random ID and echo its question.
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { formatAddress, parseAddress } from './ip-address.js';

export interface DnsAddress {
  address: string;
  family: 4 | 6;
  ttlSeconds: number;
}

export interface DnsResolution {
  addresses: DnsAddress[];
  /** Why the name has no addresses (NXDOMAIN, timeouts, malformed replies); undefined on success. */
  error?: string;
}

export interface DnsClientOptions {
  /** Per query and resolver. */
  timeoutMs?: number;
  /** The resolvers' port: 53; tests use another on loopback. */
  port?: number;
}

const TYPE_A = 1;
const TYPE_CNAME = 5;
const TYPE_AAAA = 28;
const TYPE_OPT = 41;
const CLASS_IN = 1;
const RCODE_NXDOMAIN = 3;

// We advertise this EDNS0 payload size (the DNS flag day 2020 value, no fragmentation).
const EDNS_PAYLOAD = 1232;
const MAX_REPLY_BYTES = EDNS_PAYLOAD;
const MAX_RECORDS_PER_SECTION = 64;
const MAX_NAME_LENGTH = 255;
const MAX_POINTER_JUMPS = 16;
const MAX_CNAME_CHAIN = 8;
/** Addresses kept per name and family: more would only let one name fill the sets. */
export const MAX_ADDRESSES_PER_NAME = 32;
/** TTLs are 31-bit (RFC 2181 §8); a week is more than any allowlist should trust one answer. */
const MAX_TTL_SECONDS = 604_800;

export class DnsFormatError extends Error {
  override name = 'DnsFormatError';
}

/** Lowercase, no trailing dot; throws on a name DNS cannot carry. */
export function normaliseQueryName(name: string): string {
  const bare = name.toLowerCase().replace(/\.$/, '');
  const labels = bare.split('.');
  if (bare.length === 0 || bare.length > 253 || labels.some((label) => label.length === 0 || label.length > 63 || !/^[a-z0-9_-]+$/.test(label))) {
    throw new DnsFormatError(`not a domain name: ${JSON.stringify(name.slice(0, 64))}`);
  }
  return bare;
}

export function encodeQuery(id: number, name: string, type: number): Buffer {
  const labels = normaliseQueryName(name).split('.');
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4); // QDCOUNT
  header.writeUInt16BE(1, 10); // ARCOUNT: the OPT record
  const question = Buffer.concat([
    ...labels.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'ascii')])),
    Buffer.from([0, type >> 8, type & 0xff, 0, CLASS_IN]),
  ]);
  const opt = Buffer.from([0, TYPE_OPT >> 8, TYPE_OPT & 0xff, EDNS_PAYLOAD >> 8, EDNS_PAYLOAD & 0xff, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, question, opt]);
}

/** Reads a possibly compressed name at `offset`; returns it and the offset after it in place. */
function readName(message: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let length = 0;
  let position = offset;
  let next: number | undefined;
  for (let jumps = 0; ; ) {
    if (position >= message.length) throw new DnsFormatError('name runs past the message');
    const byte = message[position]!;
    if (byte === 0) {
      next ??= position + 1;
      break;
    }
    if ((byte & 0xc0) === 0xc0) {
      if (position + 1 >= message.length) throw new DnsFormatError('truncated compression pointer');
      const target = ((byte & 0x3f) << 8) | message[position + 1]!;
      // Pointers may only go backwards, and only so often: no loops.
      if (target >= position || ++jumps > MAX_POINTER_JUMPS) throw new DnsFormatError('bad compression pointer');
      next ??= position + 2;
      position = target;
      continue;
    }
    if ((byte & 0xc0) !== 0) throw new DnsFormatError('unsupported label type');
    if (position + 1 + byte > message.length) throw new DnsFormatError('label runs past the message');
    length += byte + 1;
    if (length > MAX_NAME_LENGTH) throw new DnsFormatError('name longer than 255 bytes');
    labels.push(message.toString('latin1', position + 1, position + 1 + byte).toLowerCase());
    position += 1 + byte;
  }
  return { name: labels.join('.'), next };
}

interface ResourceRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  data: Buffer;
  dataOffset: number;
}

export interface DnsReply {
  id: number;
  rcode: number;
  truncated: boolean;
  question: { name: string; type: number; class: number };
  answers: ResourceRecord[];
}

export function decodeReply(message: Buffer): DnsReply {
  if (message.length < 12) throw new DnsFormatError('reply shorter than a DNS header');
  if (message.length > MAX_REPLY_BYTES) throw new DnsFormatError(`reply longer than ${MAX_REPLY_BYTES} bytes`);
  const id = message.readUInt16BE(0);
  const flags = message.readUInt16BE(2);
  if ((flags & 0x8000) === 0) throw new DnsFormatError('not a response');
  if (((flags >> 11) & 0xf) !== 0) throw new DnsFormatError('not a standard query response');
  const counts = [4, 6, 8, 10].map((at) => message.readUInt16BE(at));
  if (counts[0] !== 1) throw new DnsFormatError('reply must echo exactly one question');
  if (counts.slice(1).some((count) => count > MAX_RECORDS_PER_SECTION)) throw new DnsFormatError('too many records');
  const questionName = readName(message, 12);
  if (questionName.next + 4 > message.length) throw new DnsFormatError('truncated question');
  const question = { name: questionName.name, type: message.readUInt16BE(questionName.next), class: message.readUInt16BE(questionName.next + 2) };
  let offset = questionName.next + 4;
  const answers: ResourceRecord[] = [];
  for (let i = 0; i < counts[1]!; i++) {
    const owner = readName(message, offset);
    if (owner.next + 10 > message.length) throw new DnsFormatError('truncated record');
    const dataLength = message.readUInt16BE(owner.next + 8);
    const dataOffset = owner.next + 10;
    if (dataOffset + dataLength > message.length) throw new DnsFormatError('record data runs past the message');
    answers.push({
      name: owner.name,
      type: message.readUInt16BE(owner.next),
      class: message.readUInt16BE(owner.next + 2),
      ttl: message.readUInt32BE(owner.next + 4),
      data: message.subarray(dataOffset, dataOffset + dataLength),
      dataOffset,
    });
    offset = dataOffset + dataLength;
  }
  // Authority and additional sections are not needed for A/AAAA answers and are not read.
  return { id, rcode: flags & 0xf, truncated: (flags & 0x0200) !== 0, question, answers };
}

/** The addresses a reply gives for `name`, following CNAMEs within the answer section. */
export function addressesFromReply(message: Buffer, reply: DnsReply, name: string, type: number): DnsAddress[] {
  const owners = new Set([name]);
  for (let step = 0; step < MAX_CNAME_CHAIN; step++) {
    const before = owners.size;
    for (const record of reply.answers) {
      if (record.type === TYPE_CNAME && record.class === CLASS_IN && owners.has(record.name)) owners.add(readName(message, record.dataOffset).name);
    }
    if (owners.size === before) break;
  }
  const addresses: DnsAddress[] = [];
  const seen = new Set<string>();
  for (const record of reply.answers) {
    if (record.type !== type || record.class !== CLASS_IN || !owners.has(record.name)) continue;
    const size = type === TYPE_A ? 4 : 16;
    if (record.data.length !== size) throw new DnsFormatError(`address record of ${record.data.length} bytes`);
    const value = BigInt(`0x${record.data.toString('hex')}`);
    const address = formatAddress(type === TYPE_A ? 'ipv4' : 'ipv6', value);
    if (seen.has(address)) continue;
    seen.add(address);
    addresses.push({ address, family: type === TYPE_A ? 4 : 6, ttlSeconds: Math.min(record.ttl & 0x7fffffff, MAX_TTL_SECONDS) });
    if (addresses.length >= MAX_ADDRESSES_PER_NAME) break;
  }
  return addresses;
}

export interface DnsQueryResult {
  rcode: number;
  addresses: DnsAddress[];
}

/** Sends one query to one resolver and waits for its matching reply (or times out). */
export async function queryResolver(resolver: string, name: string, type: number, options: DnsClientOptions = {}): Promise<DnsQueryResult> {
  const parsed = parseAddress(resolver);
  if (!parsed) throw new DnsFormatError(`resolver ${JSON.stringify(resolver.slice(0, 64))} is not an IP address`);
  const resolverAddress = formatAddress(parsed.family, parsed.value);
  const port = options.port ?? 53;
  const qname = normaliseQueryName(name);
  const id = randomInt(0, 0x10000);
  const query = encodeQuery(id, qname, type);
  return await new Promise((resolve, reject) => {
    const socket: Socket = createSocket(parsed.family === 'ipv4' ? 'udp4' : 'udp6');
    const finish = (outcome: () => void) => {
      clearTimeout(timer);
      socket.close();
      outcome();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`no answer from ${resolverAddress} within ${options.timeoutMs ?? 2000} ms`))), options.timeoutMs ?? 2000);
    socket.on('error', (error) => finish(() => reject(error)));
    socket.on('message', (message, remote) => {
      // Anything not from the resolver, or not answering this query, is ignored (spoofing).
      const from = parseAddress(remote.address);
      if (!from || formatAddress(from.family, from.value) !== resolverAddress || remote.port !== port) return;
      let reply: DnsReply;
      try {
        reply = decodeReply(message);
      } catch (error) {
        finish(() => reject(error));
        return;
      }
      if (reply.id !== id || reply.question.name !== qname || reply.question.type !== type || reply.question.class !== CLASS_IN) return;
      if (reply.truncated) {
        finish(() => reject(new DnsFormatError('truncated reply (TCP fallback is not supported)')));
        return;
      }
      try {
        const addresses = reply.rcode === 0 ? addressesFromReply(message, reply, qname, type) : [];
        finish(() => resolve({ rcode: reply.rcode, addresses }));
      } catch (error) {
        finish(() => reject(error));
      }
    });
    socket.send(query, port, resolverAddress, (error) => {
      if (error) finish(() => reject(error));
    });
  });
}

/**
 * Resolves A and AAAA records of `name` through the given resolvers, in order: the first resolver
 * that answers decides. A name no resolver answers has no addresses (fail closed).
 */
export async function resolveThroughResolvers(name: string, resolvers: readonly string[], options: DnsClientOptions = {}): Promise<DnsResolution> {
  if (resolvers.length === 0) return { addresses: [], error: 'no resolvers allowed' };
  const errors: string[] = [];
  for (const resolver of resolvers) {
    const outcomes = await Promise.allSettled([queryResolver(resolver, name, TYPE_A, options), queryResolver(resolver, name, TYPE_AAAA, options)]);
    const answered = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
    if (answered.some((result) => result.rcode === RCODE_NXDOMAIN)) return { addresses: [], error: `${name}: NXDOMAIN from ${resolver}` };
    // One family answering is enough: some resolvers drop AAAA queries.
    const good = answered.filter((result) => result.rcode === 0);
    if (good.length > 0) {
      const addresses = good.flatMap((result) => result.addresses);
      return addresses.length > 0 ? { addresses } : { addresses, error: `${name}: no A or AAAA records` };
    }
    for (const outcome of outcomes) {
      errors.push(`${resolver}: ${outcome.status === 'rejected' ? (outcome.reason as Error).message : `rcode ${outcome.value.rcode}`}`);
    }
  }
  return { addresses: [], error: `${name}: ${errors.join('; ')}` };
}

export const DNS_TYPES = { A: TYPE_A, AAAA: TYPE_AAAA, CNAME: TYPE_CNAME } as const;
