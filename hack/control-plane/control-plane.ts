// A real Kubernetes control plane on loopback: etcd and kube-apiserver built by hack/install-tools.sh,
// with RBAC and service-account signing keys (so TokenRequest and TokenReview work), in the manner of
// controller-runtime's envtest. Everything it makes lives in one directory whose state.json lets
// `stopControlPlane` remove it from any process.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const REPO_ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const HACK_BIN = join(REPO_ROOT, 'hack', 'bin');

export interface ControlPlaneState {
  dir: string;
  kubeconfig: string;
  apiServerUrl: string;
  etcdUrl: string;
  apiPort: number;
  etcdPort: number;
  pids: { etcd: number; apiserver: number };
  /** Milliseconds from the first spawn to a ready API server. */
  startupMs: number;
  /** The address the API server binds and advertises (StartOptions.address); loopback when absent. */
  address?: string;
}

export interface StartOptions {
  /** Where certificates, data, logs and state go; removed by stopControlPlane. */
  dir: string;
  /** Detached processes outlive the starting process (make cluster-up); otherwise they die with it. */
  detached?: boolean;
  /** Disable the API server's watch cache so that watches read etcd (a compaction then yields 410). */
  disableWatchCache?: boolean;
  /**
   * An address of the namespace the control plane runs in, for kubelets and Pods of other lab
   * namespaces: the API server binds it (and not loopback), serves a certificate naming it, and
   * publishes it as the `kubernetes` Service's endpoint. Absent: loopback, no endpoint.
   */
  address?: string;
  log?: (line: string) => void;
}

export function toolPath(tool: string): string {
  const path = join(HACK_BIN, tool);
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`make tools\` (or hack/install-tools.sh ${tool})`);
  return path;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd });
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A certificate `NAME.crt` (key `NAME.key`) issued by the control plane's CA in `pki`. */
async function issueCertificate(pki: string, name: string, subject: string, ext: string[]): Promise<void> {
  await openssl(pki, ['req', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
  writeFileSync(join(pki, `${name}.ext`), ext.join('\n') + '\n');
  await openssl(pki, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '30', '-out', `${name}.crt`, '-extfile', `${name}.ext`]);
}

/**
 * A client certificate of the control plane's CA for `CN` (and groups `O`), e.g. a kubelet's
 * (`system:node:NAME`, `system:nodes`) or a controller's; returns the paths of the pair.
 */
export async function issueClientCertificate(pki: string, name: string, cn: string, groups: string[] = []): Promise<{ cert: string; key: string }> {
  const subject = [...groups.map((g) => `/O=${g}`), `/CN=${cn}`].join('');
  await issueCertificate(pki, name, subject, ['extendedKeyUsage=clientAuth', 'keyUsage=critical,digitalSignature']);
  return { cert: join(pki, `${name}.crt`), key: join(pki, `${name}.key`) };
}

/**
 * A CA, the API server's serving certificate, an admin client certificate, the API server's client
 * certificate towards kubelets and the SA signing key.
 */
async function makePki(pki: string, address: string | undefined): Promise<void> {
  mkdirSync(pki, { recursive: true });
  await openssl(pki, ['req', '-x509', ...EC_KEY, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-subj', '/CN=secai-lab-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature']);
  // 10.96.0.1 is the in-cluster Service address; a lab namespace's kube-proxy rewrites it to
  // `address`, and without one it is a SAN only and never dialled.
  await issueCertificate(pki, 'apiserver', '/CN=kube-apiserver', [
    `subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes.default.svc${address ? `,IP:${address}` : ''}`,
    'extendedKeyUsage=serverAuth',
    'keyUsage=critical,digitalSignature,keyEncipherment',
  ]);
  await issueClientCertificate(pki, 'admin', 'secai-admin', ['system:masters']);
  // What the API server presents to kubelets (logs, exec); RBAC's system:kubelet-api-admin role
  // is what a kubelet that authorizes through the API server lets it do.
  await issueClientCertificate(pki, 'kubelet-client', 'kube-apiserver-kubelet-client');
  await openssl(pki, ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'sa.key']);
  await openssl(pki, ['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
}

function b64(path: string): string {
  return readFileSync(path).toString('base64');
}

export function writeKubeconfig(path: string, pki: string, server: string): void {
  const text = [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: secai-lab',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(join(pki, 'ca.crt'))}`,
    'users:',
    '- name: secai-admin',
    '  user:',
    `    client-certificate-data: ${b64(join(pki, 'admin.crt'))}`,
    `    client-key-data: ${b64(join(pki, 'admin.key'))}`,
    'contexts:',
    '- name: secai-lab',
    '  context: {cluster: secai-lab, user: secai-admin}',
    'current-context: secai-lab',
    '',
  ].join('\n');
  writeFileSync(path, text, { mode: 0o600 });
}

function startProcess(dir: string, name: string, bin: string, args: string[], detached: boolean): number {
  const logFd = openSync(join(dir, 'logs', `${name}.log`), 'a');
  // Attached processes get SIGKILL when the starting process dies, whatever kills it.
  const [command, argv] = detached ? [bin, args] : ['setpriv', ['--pdeathsig', 'KILL', '--', bin, ...args]];
  const child = spawn(command, argv, { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${name}`);
  return child.pid;
}

/** Whether a process with this id exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function logTail(dir: string, name: string): string {
  const path = join(dir, 'logs', `${name}.log`);
  if (!existsSync(path)) return '';
  return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
}

async function waitReady(dir: string, name: string, pid: number, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) throw new Error(`${name} exited during start-up:\n${logTail(dir, name)}`);
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} not ready after ${timeoutMs} ms:\n${logTail(dir, name)}`);
}

async function etcdHealthy(url: string): Promise<boolean> {
  const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
  return res.ok && ((await res.json()) as { health?: string }).health === 'true';
}

/** GET on the API server with the admin client certificate, through curl (no Node TLS client setup). */
async function apiGet(state: Pick<ControlPlaneState, 'dir' | 'apiServerUrl'>, path: string): Promise<boolean> {
  const pki = join(state.dir, 'pki');
  try {
    await run('curl', ['-fsS', '--max-time', '2', '--cacert', join(pki, 'ca.crt'), '--cert', join(pki, 'admin.crt'),
      '--key', join(pki, 'admin.key'), `${state.apiServerUrl}${path}`]);
    return true;
  } catch {
    return false;
  }
}

function apiServerArgs(dir: string, apiPort: number, etcdPort: number, disableWatchCache: boolean, address: string | undefined): string[] {
  const pki = join(dir, 'pki');
  const args = [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    `--bind-address=${address ?? '127.0.0.1'}`,
    `--advertise-address=${address ?? '127.0.0.1'}`,
    `--secure-port=${apiPort}`,
    `--tls-cert-file=${join(pki, 'apiserver.crt')}`,
    `--tls-private-key-file=${join(pki, 'apiserver.key')}`,
    `--client-ca-file=${join(pki, 'ca.crt')}`,
    `--service-account-issuer=https://127.0.0.1:${apiPort}`,
    `--service-account-key-file=${join(pki, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
    '--service-cluster-ip-range=10.96.0.0/16',
    '--authorization-mode=RBAC',
    '--allow-privileged=true',
    `--kubelet-client-certificate=${join(pki, 'kubelet-client.crt')}`,
    `--kubelet-client-key=${join(pki, 'kubelet-client.key')}`,
    // The loopback address may not be published as the `kubernetes` Service endpoint.
    ...(address ? [] : ['--endpoint-reconciler-type=none']),
    '--profiling=false',
  ];
  if (disableWatchCache) args.push('--watch-cache=false');
  return args;
}

function statePath(dir: string): string {
  return join(dir, 'state.json');
}

export function readState(dir: string): ControlPlaneState | undefined {
  const path = statePath(dir);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as ControlPlaneState) : undefined;
}

export async function startControlPlane(opts: StartOptions): Promise<ControlPlaneState> {
  const dir = resolve(opts.dir);
  const log = opts.log ?? (() => {});
  await stopControlPlane(dir);
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const started = Date.now();
  const detached = opts.detached ?? false;
  try {
    await makePki(join(dir, 'pki'), opts.address);
    const etcdPort = await freePort();
    const etcdPeerPort = await freePort();
    const apiPort = await freePort();
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const etcd = startProcess(dir, 'etcd', toolPath('etcd'), [
      '--name=secai', `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=secai=${peerUrl}`,
      '--unsafe-no-fsync=true', '--quota-backend-bytes=2147483648', '--log-level=warn',
    ], detached);
    const apiServerUrl = `https://${opts.address ?? '127.0.0.1'}:${apiPort}`;
    const state: ControlPlaneState = {
      dir, kubeconfig: join(dir, 'kubeconfig'), apiServerUrl, etcdUrl, apiPort, etcdPort,
      pids: { etcd, apiserver: 0 }, startupMs: 0, ...(opts.address ? { address: opts.address } : {}),
    };
    writeFileSync(statePath(dir), JSON.stringify(state, null, 2));
    await waitReady(dir, 'etcd', etcd, () => etcdHealthy(etcdUrl), 30_000);
    log(`etcd ready on ${etcdUrl}`);
    state.pids.apiserver = startProcess(dir, 'kube-apiserver', toolPath('kube-apiserver'),
      apiServerArgs(dir, apiPort, etcdPort, opts.disableWatchCache ?? false, opts.address), detached);
    writeFileSync(statePath(dir), JSON.stringify(state, null, 2));
    writeKubeconfig(state.kubeconfig, join(dir, 'pki'), apiServerUrl);
    await waitReady(dir, 'kube-apiserver', state.pids.apiserver, () => apiGet(state, '/readyz'), 90_000);
    await waitReady(dir, 'kube-apiserver', state.pids.apiserver, () => apiGet(state, '/api/v1/namespaces/default'), 30_000);
    state.startupMs = Date.now() - started;
    writeFileSync(statePath(dir), JSON.stringify(state, null, 2));
    log(`kube-apiserver ready on ${apiServerUrl} (control plane up in ${state.startupMs} ms)`);
    return state;
  } catch (err) {
    await stopControlPlane(dir, { keepLogs: true });
    throw err;
  }
}

async function killGroup(pid: number, timeoutMs: number): Promise<void> {
  if (pid <= 0 || !isAlive(pid)) return;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // The group is already gone.
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (isAlive(pid)) signal('SIGKILL');
  while (isAlive(pid)) await new Promise((r) => setTimeout(r, 20));
}

/** Stops the processes recorded in `dir` and removes the directory. Safe to call when nothing runs. */
export async function stopControlPlane(dir: string, opts: { keepLogs?: boolean } = {}): Promise<void> {
  const state = readState(dir);
  if (state) {
    await killGroup(state.pids.apiserver, 10_000);
    await killGroup(state.pids.etcd, 10_000);
  }
  if (!existsSync(dir)) return;
  if (opts.keepLogs) {
    for (const entry of ['etcd', 'pki', 'state.json', 'kubeconfig']) rmSync(join(dir, entry), { recursive: true, force: true });
  } else {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Restarts the API server on the same port and etcd (clients see it go away and come back). */
export async function restartApiServer(state: ControlPlaneState, opts: { downMs?: number; disableWatchCache?: boolean } = {}): Promise<void> {
  await killGroup(state.pids.apiserver, 10_000);
  if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
  state.pids.apiserver = startProcess(state.dir, 'kube-apiserver', toolPath('kube-apiserver'),
    apiServerArgs(state.dir, state.apiPort, state.etcdPort, opts.disableWatchCache ?? false, state.address), false);
  writeFileSync(statePath(state.dir), JSON.stringify(state, null, 2));
  await waitReady(state.dir, 'kube-apiserver', state.pids.apiserver, () => apiGet(state, '/readyz'), 90_000);
}

/** Compacts etcd history up to its current revision: watches from older resource versions get 410 Gone. */
export async function compactEtcd(state: ControlPlaneState): Promise<number> {
  const endpoints = `--endpoints=${state.etcdUrl}`;
  const { stdout } = await run(toolPath('etcdctl'), [endpoints, 'endpoint', 'status', '--write-out=json']);
  const revision = (JSON.parse(stdout) as { Status: { header: { revision: number } } }[])[0]?.Status.header.revision;
  if (revision === undefined) throw new Error('etcd reported no revision');
  await run(toolPath('etcdctl'), [endpoints, 'compaction', '--physical', String(revision)]);
  return revision;
}
