// The channel server's UNIX socket after a crash: a stale socket file (its server was killed) is
// replaced; a live server's socket is left alone.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { sharedKubeconfig } from '../../../test/support/environment.js';
import { KubeClient } from '../runtime/kube-client.js';
import { createCertificateAuthority, issueServingCertificate } from './pki.js';
import { AgentChannelServer } from './server.js';

const ca = createCertificateAuthority('stale-socket-test', 1);
const tls = issueServingCertificate(ca, ['secai-operator.secai-system.svc'], 1);
let dir: string;
let client: KubeClient;

beforeAll(async () => {
  client = await KubeClient.fromKubeconfigFile(sharedKubeconfig());
});
afterAll(() => client.close());
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'channel-socket-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function server(path: string): AgentChannelServer {
  return new AgentChannelServer({
    client,
    identity: { audience: 'secai-fleet-agent', serviceAccount: { namespace: 'secai-system', name: 'secai-agent' } },
    backend: { isEnrolled: () => false, agentConnected: () => {}, agentDisconnected: () => {}, report: () => {}, subscribePlan: () => () => {} },
    tls,
    listen: [`unix://${path}`],
    operatorVersion: 'test',
    logger: pino({ level: 'silent' }),
    registry: new Registry(),
  });
}

/** A process that listens on `path` and is then killed: its socket file stays behind. */
async function leaveStaleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`]);
  await new Promise((resolve) => child.stdout.once('data', resolve));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  expect(existsSync(path)).toBe(true);
}

it('binds over the socket file a killed operator left behind', async () => {
  const path = join(dir, 'channel.sock');
  await leaveStaleSocket(path);
  const s = server(path);
  await expect(s.start()).resolves.toEqual([`unix://${path}`]);
  await s.stop(100);
});

it('refuses to take the socket of a live server', async () => {
  const path = join(dir, 'channel.sock');
  const first = server(path);
  await first.start();
  const second = server(path);
  await expect(second.start()).rejects.toThrow(/EADDRINUSE/);
  expect(existsSync(path)).toBe(true);
  await second.stop(100);
  await first.stop(100);
});
