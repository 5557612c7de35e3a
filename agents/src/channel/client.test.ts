// The channel client abandons an attempt the operator never answers: a connection accepted and then
// silent (as one whose Service endpoint still names a leader Pod that is gone, where TCP keeps
// retrying for minutes) is given up after welcomeTimeoutMs and tried again with backoff.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { PROTOCOL_VERSION } from '../../../api/proto/protocol.js';
import { AgentChannelClient } from './client.js';

let dir: string;
let server: Server;
const sockets: Socket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'secai-channel-client-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt'), '-days', '1', '-subj', '/CN=test-ca'], { stdio: 'ignore' });
  writeFileSync(join(dir, 'token'), 'a-token');
  // Accepts and never says a word: no TLS handshake, no welcome.
  server = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

it('gives up an attempt without a welcome and tries again', async () => {
  const logs: { msg?: string; why?: string }[] = [];
  const client = new AgentChannelClient({
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    caFile: join(dir, 'ca.crt'),
    serverName: 'secai-operator.test.svc',
    tokenFile: join(dir, 'token'),
    hello: () => ({ nodeName: 'n', agentVersion: 'test', protocolVersion: PROTOCOL_VERSION, capabilities: [], auditPublicKey: Buffer.alloc(32), appliedPlanGeneration: 0, appliedPlanDigest: '' }),
    onPlan: async () => undefined,
    onCommand: async (command) => ({ id: command.id, error: 'unsupported', body: undefined }),
    logger: pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (logs.push(JSON.parse(String(c)) as { msg?: string }), cb()) })),
    initialBackoffMs: 50,
    maxBackoffMs: 100,
    welcomeTimeoutMs: 400,
  });
  client.start();
  try {
    const deadline = Date.now() + 5_000;
    while (sockets.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  } finally {
    client.stop();
  }
  expect(sockets.length).toBeGreaterThanOrEqual(3);
  expect(logs.filter((l) => l.why === 'no welcome from the operator within 400 ms').length).toBeGreaterThanOrEqual(2);
  expect(client.state).toBe('stopped');
}, 15_000);
