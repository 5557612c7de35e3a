// The "upstream" side of the egress tests, run inside a test-created namespace with Node's type
// stripping (so: no imports of project code, erasable syntax only). It serves
//   --tcp host:port,...   a line "ok <port>" to every connection, then closes it (and prints
//                         "connection <port> from <address>", so tests see who connected);
//   --udp host:port,...   echoes every datagram back;
//   --dns host:port,...   a tiny authoritative DNS server for the zone given with --zone (JSON)
//                         and replaced by lines `{"zone": {...}}` on standard input.
// Zone: {"name": {"a": ["10.0.0.1"], "aaaa": ["fd00::1"], "ttl": 5, "rcode": 0}}.
// It prints "ready" once every socket listens, and "query <name> <type> <from> to <resolver address>" per DNS query.
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

interface ZoneEntry {
  a?: string[];
  aaaa?: string[];
  ttl?: number;
  rcode?: number;
}

function argument(name: string): string[] {
  const index = process.argv.indexOf(name);
  if (index < 0 || index + 1 >= process.argv.length) return [];
  return process.argv[index + 1]!.split(',').filter(Boolean);
}

function endpoint(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  return { host: text.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(text.slice(at + 1)) };
}

let zone: Record<string, ZoneEntry> = JSON.parse(argument('--zone').join(',') || '{}') as Record<string, ZoneEntry>;

function readQuestion(message: Buffer): { name: string; type: number; end: number } | undefined {
  const labels: string[] = [];
  let offset = 12;
  while (offset < message.length && message[offset] !== 0) {
    const length = message[offset]!;
    if (length > 63 || offset + 1 + length > message.length) return undefined;
    labels.push(message.toString('latin1', offset + 1, offset + 1 + length).toLowerCase());
    offset += 1 + length;
  }
  if (offset + 5 > message.length) return undefined;
  return { name: labels.join('.'), type: message.readUInt16BE(offset + 1), end: offset + 5 };
}

function answer(message: Buffer): Buffer | undefined {
  if (message.length < 17) return undefined;
  const question = readQuestion(message);
  if (!question) return undefined;
  const entry = zone[question.name];
  const addresses = !entry ? [] : question.type === 1 ? (entry.a ?? []) : question.type === 28 ? (entry.aaaa ?? []) : [];
  const rcode = entry ? (entry.rcode ?? 0) : 3;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(message.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8400 | 0x0100 | rcode, 2); // QR, AA, RD echoed
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rcode === 0 ? addresses.length : 0, 6);
  const records = rcode !== 0 ? [] : addresses.map((address) => {
    const data = question.type === 1 ? Buffer.from(address.split('.').map(Number)) : ipv6Bytes(address);
    const record = Buffer.alloc(12);
    record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question
    record.writeUInt16BE(question.type, 2);
    record.writeUInt16BE(1, 4);
    record.writeUInt32BE(entry?.ttl ?? 60, 6);
    record.writeUInt16BE(data.length, 10);
    return Buffer.concat([record, data]);
  });
  return Buffer.concat([header, message.subarray(12, question.end), ...records]);
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const groups = (part: string | undefined) => (part ? part.split(':').map((group) => parseInt(group, 16)) : []);
  const left = groups(head);
  const right = groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  const bytes = Buffer.alloc(16);
  all.forEach((group, i) => bytes.writeUInt16BE(group, i * 2));
  return bytes;
}

const listening: Promise<void>[] = [];

for (const { host, port } of argument('--tcp').map(endpoint)) {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    process.stdout.write(`connection ${port} from ${(socket.remoteAddress ?? '').replace(/^::ffff:/, '')}\n`);
    socket.end(`ok ${port}\n`);
  });
  listening.push(new Promise((resolve) => server.listen(port, host, () => resolve())));
}

for (const { host, port } of argument('--udp').map(endpoint)) {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  socket.on('message', (message, remote) => socket.send(message, remote.port, remote.address));
  listening.push(new Promise((resolve) => socket.bind(port, host, () => resolve())));
}

for (const { host, port } of argument('--dns').map(endpoint)) {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  socket.on('message', (message, remote) => {
    const question = readQuestion(message);
    if (question) process.stdout.write(`query ${question.name} ${question.type} ${remote.address} to ${host}\n`);
    const reply = answer(message);
    if (reply) socket.send(reply, remote.port, remote.address);
  });
  listening.push(new Promise((resolve) => socket.bind(port, host, () => resolve())));
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const update = JSON.parse(line) as { zone?: Record<string, ZoneEntry> };
  if (update.zone) {
    zone = update.zone;
    process.stdout.write('zone updated\n');
  }
});

void Promise.all(listening).then(() => process.stdout.write('ready\n'));
