// The DNS stub client against DNS servers on loopback whose replies the tests craft byte by byte:
// well-formed answers, CNAME chains, and the malformed or spoofed replies it must refuse or ignore.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { DNS_TYPES, DnsFormatError, MAX_ADDRESSES_PER_NAME, queryResolver, resolveThroughResolvers } from './dns-client.js';

type Handler = (query: Buffer, reply: (message: Buffer, fromPort?: number) => void) => void;

interface Record {
  name?: Buffer;
  type: number;
  ttl?: number;
  data: Buffer;
}

const servers: Socket[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))));
});

async function server(handler: Handler): Promise<number> {
  const socket = createSocket('udp4');
  const spoofer = createSocket('udp4');
  servers.push(socket, spoofer);
  socket.on('message', (query: Buffer, remote: RemoteInfo) =>
    handler(query, (message, fromPort) => (fromPort === undefined ? socket : spoofer).send(message, remote.port, remote.address)),
  );
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  await new Promise<void>((resolve) => spoofer.bind(0, '127.0.0.1', () => resolve()));
  return socket.address().port;
}

const name = (text: string) => Buffer.concat([...text.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)])), Buffer.from([0])]);
const POINTER_TO_QUESTION = Buffer.from([0xc0, 12]);
const ipv4 = (text: string) => Buffer.from(text.split('.').map(Number));

/** A reply to `query`: its ID and question echoed, then the records. */
function reply(query: Buffer, records: Record[], options: { rcode?: number; flags?: number; id?: number; answerCount?: number } = {}): Buffer {
  const questionEnd = query.indexOf(0, 12) + 5;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(options.id ?? query.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8180 | (options.flags ?? 0) | (options.rcode ?? 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(options.answerCount ?? records.length, 6);
  const body = records.map((record) => {
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(record.type, 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(record.ttl ?? 300, 4);
    fixed.writeUInt16BE(record.data.length, 8);
    return Buffer.concat([record.name ?? POINTER_TO_QUESTION, fixed, record.data]);
  });
  return Buffer.concat([header, query.subarray(12, questionEnd), ...body]);
}

const queryType = (query: Buffer) => query.readUInt16BE(query.indexOf(0, 12) + 1);
const options = (port: number) => ({ port, timeoutMs: 300 });

test('resolves A and AAAA records with their TTLs through exactly the given resolver', async () => {
  const asked: number[] = [];
  const port = await server((query, send) => {
    asked.push(queryType(query));
    const v6 = Buffer.alloc(16);
    v6.writeUInt16BE(0x2001, 0);
    v6.writeUInt16BE(0xdb8, 2);
    v6[15] = 1;
    send(reply(query, queryType(query) === DNS_TYPES.A ? [{ type: DNS_TYPES.A, ttl: 42, data: ipv4('192.0.2.7') }] : [{ type: DNS_TYPES.AAAA, ttl: 9, data: v6 }]));
  });
  const result = await resolveThroughResolvers('Mirror.Example.', ['127.0.0.1'], options(port));
  expect(result).toEqual({
    addresses: [
      { address: '192.0.2.7', family: 4, ttlSeconds: 42 },
      { address: '2001:db8::1', family: 6, ttlSeconds: 9 },
    ],
  });
  expect(asked.sort()).toEqual([DNS_TYPES.A, DNS_TYPES.AAAA]);
});

test('follows CNAMEs inside the answer and ignores records for other names', async () => {
  const port = await server((query, send) => {
    if (queryType(query) !== DNS_TYPES.A) return send(reply(query, []));
    send(
      reply(query, [
        { type: DNS_TYPES.CNAME, data: name('edge.cdn.example') },
        { name: name('edge.cdn.example'), type: DNS_TYPES.A, ttl: 60, data: ipv4('198.51.100.1') },
        { name: name('elsewhere.example'), type: DNS_TYPES.A, data: ipv4('203.0.113.66') },
      ]),
    );
  });
  const result = await resolveThroughResolvers('www.example', ['127.0.0.1'], options(port));
  expect(result.addresses.map((address) => address.address)).toEqual(['198.51.100.1']);
});

test('ignores replies with another ID or from another port (spoofing), then times out', async () => {
  const port = await server((query, send) => {
    send(reply(query, [{ type: DNS_TYPES.A, data: ipv4('203.0.113.66') }], { id: query.readUInt16BE(0) ^ 1 }));
    send(reply(query, [{ type: DNS_TYPES.A, data: ipv4('203.0.113.66') }]), 1);
  });
  await expect(queryResolver('127.0.0.1', 'a.example', DNS_TYPES.A, options(port))).rejects.toThrow(/no answer/);
});

test.each([
  // The owner name points at itself: a loop, and not backwards.
  ['a compression pointer loop', (q: Buffer) => reply(q, [{ name: Buffer.from([0xc0, q.indexOf(0, 12) + 5]), type: DNS_TYPES.A, data: ipv4('192.0.2.1') }]), /compression pointer/],
  ['too many records', (q: Buffer) => reply(q, [], { answerCount: 65 }), /too many records/],
  ['record data past the end', (q: Buffer) => reply(q, [{ type: DNS_TYPES.A, data: ipv4('192.0.2.1') }]).subarray(0, -2), /runs past/],
  ['an A record of 5 bytes', (q: Buffer) => reply(q, [{ type: DNS_TYPES.A, data: Buffer.from([1, 2, 3, 4, 5]) }]), /address record of 5 bytes/],
  ['a reply longer than advertised', (q: Buffer) => Buffer.concat([reply(q, []), Buffer.alloc(1300)]), /longer than 1232/],
  ['a truncated reply', (q: Buffer) => reply(q, [], { flags: 0x0200 }), /truncated reply/],
])('refuses %s', async (_, craft, message) => {
  const port = await server((query, send) => send(craft(query)));
  const failure = queryResolver('127.0.0.1', 'a.example', DNS_TYPES.A, options(port));
  await expect(failure).rejects.toThrow(message);
  await expect(failure).rejects.toBeInstanceOf(DnsFormatError);
});

test('keeps at most 32 addresses per name and caps absurd TTLs', async () => {
  const port = await server((query, send) => {
    if (queryType(query) !== DNS_TYPES.A) return send(reply(query, []));
    send(reply(query, Array.from({ length: 40 }, (_, i) => ({ type: DNS_TYPES.A, ttl: 0xffffffff, data: ipv4(`192.0.2.${i + 1}`) }))));
  });
  const result = await resolveThroughResolvers('a.example', ['127.0.0.1'], options(port));
  expect(result.addresses).toHaveLength(MAX_ADDRESSES_PER_NAME);
  expect(Math.max(...result.addresses.map((address) => address.ttlSeconds))).toBe(604_800);
});

test('NXDOMAIN means no addresses; a failing resolver hands over to the next; no resolver means nothing', async () => {
  const nx = await server((query, send) => send(reply(query, [], { rcode: 3 })));
  await expect(resolveThroughResolvers('gone.example', ['127.0.0.1'], options(nx))).resolves.toEqual({ addresses: [], error: 'gone.example: NXDOMAIN from 127.0.0.1' });

  // The first resolver (a different loopback address) never answers; the second does.
  const port = await server((query, send) => send(reply(query, queryType(query) === DNS_TYPES.A ? [{ type: DNS_TYPES.A, data: ipv4('192.0.2.9') }] : [])));
  const result = await resolveThroughResolvers('a.example', ['127.0.0.2', '127.0.0.1'], options(port));
  expect(result.addresses.map((address) => address.address)).toEqual(['192.0.2.9']);

  await expect(resolveThroughResolvers('a.example', [], options(port))).resolves.toEqual({ addresses: [], error: 'no resolvers allowed' });
});

test('refuses names DNS cannot carry before sending anything', async () => {
  await expect(queryResolver('127.0.0.1', `${'a'.repeat(64)}.example`, DNS_TYPES.A)).rejects.toThrow(/not a domain name/);
  await expect(queryResolver('127.0.0.1', 'a..example', DNS_TYPES.A)).rejects.toThrow(/not a domain name/);
  await expect(queryResolver('resolver.example', 'a.example', DNS_TYPES.A)).rejects.toThrow(/not an IP address/);
});
