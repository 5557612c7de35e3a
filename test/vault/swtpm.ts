// A software TPM (swtpm) for tests and the lab: socket mode on free loopback ports, or on UNIX
// sockets in the state directory (the lab: an agent inside a network namespace cannot reach the root
// namespace's loopback, but it can reach a socket file), state in a directory, started fresh
// (not-need-init, startup-clear), optionally manufactured with EK certificates. It dies with the
// process that started it.
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { runChecked, runCommand } from '../../agents/src/exec.js';
import { isAlive } from '../../hack/control-plane/control-plane.js';

export interface Swtpm {
  /** TPM2TOOLS_TCTI value for tpm2-tools. */
  tcti: string;
  /** With an EK certificate: the PEM of the local CA that issued it (intermediate and root). */
  ekCa?: string;
  pid: number;
  stop(): Promise<void>;
}

function listen(port: number): Promise<ReturnType<typeof createServer> | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

const closeServer = (server: ReturnType<typeof createServer>) => new Promise<void>((r) => server.close(() => r()));

/** Two consecutive free loopback ports: the swtpm TCTI finds the control port at server port + 1. */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = await listen(0);
    if (!first) continue;
    const address = first.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const second = port > 0 && port < 65535 ? await listen(port + 1) : undefined;
    await closeServer(first);
    if (second) {
      await closeServer(second);
      return port;
    }
  }
  throw new Error('no two consecutive free loopback ports');
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function acceptsUnix(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}


/**
 * Manufactures a TPM as a vendor would, once per state directory (swtpm_setup): an RSA and an ECC EK
 * persisted at their TCG handles, each with an EK certificate in NV issued by a local CA kept in
 * `caDir` (made on first use), and the SHA-1 and SHA-256 PCR banks. Returns the CA's certificates.
 */
async function manufactureWithEkCertificate(stateDir: string, caDir: string): Promise<string> {
  await mkdir(caDir, { recursive: true, mode: 0o700 });
  const localca = join(caDir, 'swtpm-localca.conf');
  const setup = join(caDir, 'swtpm_setup.conf');
  await writeFile(localca, [`statedir = ${caDir}`, `signingkey = ${join(caDir, 'signkey.pem')}`, `issuercert = ${join(caDir, 'issuercert.pem')}`, `certserial = ${join(caDir, 'certserial')}`, ''].join('\n'));
  await writeFile(setup, ['create_certs_tool = /usr/bin/swtpm_localca', `create_certs_tool_config = ${localca}`, 'create_certs_tool_options = /etc/swtpm-localca.options', ''].join('\n'));
  await runChecked(runCommand, 'swtpm_setup', ['--tpm2', '--tpmstate', stateDir, '--create-ek-cert', '--config', setup, '--pcr-banks', 'sha1,sha256', '--not-overwrite'], { timeoutMs: 60_000 });
  return (await Promise.all(['issuercert.pem', 'swtpm-localca-rootca-cert.pem'].map((f) => readFile(join(caDir, f), 'utf8')))).join('');
}

/** Starts swtpm with its state in `stateDir`; `stop()` ends it (SIGTERM, then SIGKILL after 2 s). */
export async function startSwtpm(
  stateDir: string,
  options: { detached?: boolean; unixSockets?: boolean; ekCertificate?: { caDir: string } } = {},
): Promise<Swtpm> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const ekCa = options.ekCertificate ? await manufactureWithEkCertificate(stateDir, options.ekCertificate.caDir) : undefined;
  const serverSocket = join(stateDir, 'swtpm.sock');
  const ctrlSocket = join(stateDir, 'swtpm.sock.ctrl');
  const server = options.unixSockets ? 0 : await freePortPair();
  const ctrl = server + 1;
  const endpoints = options.unixSockets
    ? ['--server', `type=unixio,path=${serverSocket}`, '--ctrl', `type=unixio,path=${ctrlSocket}`]
    : ['--server', `type=tcp,port=${server},bindaddr=127.0.0.1`, '--ctrl', `type=tcp,port=${ctrl},bindaddr=127.0.0.1`];
  const ready = () => (options.unixSockets ? acceptsUnix(ctrlSocket) : accepts(ctrl));
  const args = [
    'socket', '--tpm2',
    '--tpmstate', `dir=${stateDir}`,
    ...endpoints,
    '--flags', 'not-need-init,startup-clear',
    '--pid', `file=${join(stateDir, 'swtpm.pid')}`,
    '--log', `file=${join(stateDir, 'swtpm.log')}`,
  ];
  // Attached swtpm gets SIGKILL when its starter dies, whatever kills the starter (the lab detaches).
  const [command, argv] = options.detached ? ['swtpm', args] : ['setpriv', ['--pdeathsig', 'KILL', '--', 'swtpm', ...args]];
  const child = spawn(command, argv, { detached: true, stdio: 'ignore' });
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not start swtpm');
  const deadline = Date.now() + 10_000;
  while (!(await ready())) {
    if (!isAlive(pid) || Date.now() > deadline) {
      const log = await readFile(join(stateDir, 'swtpm.log'), 'utf8').catch(() => '');
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      throw new Error(`swtpm did not start (${endpoints.join(' ')}): ${log.slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    // The swtpm TCTI finds the control socket at <path>.ctrl.
    tcti: options.unixSockets ? `swtpm:path=${serverSocket}` : `swtpm:host=127.0.0.1,port=${server}`,
    ...(ekCa ? { ekCa } : {}),
    pid,
    async stop() {
      if (!isAlive(pid)) return;
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 40 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    },
  };
}
