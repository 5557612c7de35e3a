// The lab's supervisor: one long-lived process that owns the whole fleet on this machine — a real
// control plane, the operator, N nodes as network namespaces each with an agent, an swtpm and a
// LUKS2 vault header, and an upstream namespace. Everything it starts dies with it; on SIGTERM it
// tears everything down. `hack/lab/lab.ts up` starts it detached and waits for convergence.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { TOKEN_AUDIENCE } from '../../api/proto/protocol.js';
import { buildOperator, OPERATOR_NODE_FLAGS } from '../../operator/build.js';
import { KubeClient } from '../../operator/src/runtime/kube-client.js';
import { NetnsHarness } from '../../test/support/netns.js';
import { writeTinyModel } from '../../test/support/tiny-model.js';
import { createLabVault } from '../../test/vault/lab-vault.js';
import { measureOnTpm, simulatedFirmwareBoot, writeEventLog } from '../../test/attestation/event-log-writer.js';
import { startSwtpm, type Swtpm } from '../../test/vault/swtpm.js';
import { REPO_ROOT, startControlPlane, stopControlPlane, toolPath } from '../control-plane/control-plane.js';
import { startPrivateTorNetwork } from '../tor/private-tor-network.js';
import { installCrds } from '../control-plane/crds.js';
import {
  AGENT_SERVICE_ACCOUNT,
  BLOCKED_PORTS,
  CHANNEL_SERVER_NAME,
  DNS_PORT,
  INFERENCE_PORT,
  K8S_NAMESPACE,
  LAB_NAMESPACE_PREFIX,
  labEventLog,
  labPaths,
  MODEL_FILE,
  MODEL_HOST,
  MODEL_PORT,
  nodeAddress,
  nodeName,
  OPERATOR_SERVICE_ACCOUNT,
  OTHER_UPSTREAM_ADDRESS,
  TOR_RELAY_ADDRESS,
  TOR_UPSTREAM_PORT,
  UPSTREAM_ADDRESS,
  UPSTREAM_PREFIX,
  type LabPaths,
} from './lab-layout.js';
import { LAB_MODEL, labSamples } from './lab-samples.js';
import { waitForConvergence } from './lab-status.js';

export interface LabState {
  phase: 'starting' | 'converging' | 'running' | 'failed' | 'stopping';
  message?: string;
  startedAt: number;
  readyAt?: number;
  convergedAt?: number;
}

export interface LabTopology {
  kubeconfig: string;
  operator: { metrics: string; log: string };
  prometheus: { url: string; config: string };
  upstream: {
    namespace: string;
    allowed: { host: string; port: number }[];
    blocked: { host: string; port: number }[];
    /** Allowed via: Tor only; the upstream sees the exit's address (`exit`). */
    tor: { host: string; port: number; exit: string; consensusMs: number };
  };
  nodes: {
    name: string;
    namespace: string;
    address: string;
    stateDir: string;
    auditDir: string;
    metrics: string;
    log: string;
    inference: { url: string; tokenFile: string; model: string };
  }[];
}

const NODE_TS = [process.execPath, '--import', 'tsx'];
/** The chart's alert rules: the lab's Prometheus evaluates the same file the chart ships. */
const ALERT_RULES = join(REPO_ROOT, 'charts', 'secai-fleet', 'files', 'prometheus', 'alerts.yaml');

async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * A Prometheus (Debian's) on loopback scraping the operator and every agent (through the metrics
 * bridges), with the chart's job names and a `node` label on agents, and the chart's alert rules.
 */
function prometheusConfig(operatorPort: number, agents: { node: string; port: number }[]): string {
  return stringify({
    global: { scrape_interval: '2s', evaluation_interval: '2s' },
    rule_files: [ALERT_RULES],
    scrape_configs: [
      { job_name: 'secai-fleet-operator', static_configs: [{ targets: [`127.0.0.1:${operatorPort}`], labels: { namespace: K8S_NAMESPACE } }] },
      {
        job_name: 'secai-fleet-agent',
        static_configs: agents.map(({ node, port }) => ({ targets: [`127.0.0.1:${port}`], labels: { node, namespace: K8S_NAMESPACE } })),
      },
    ],
  });
}

function writeState(paths: LabPaths, state: LabState): void {
  writeFileSync(`${paths.state}.tmp`, JSON.stringify(state, null, 2));
  copyFileSync(`${paths.state}.tmp`, paths.state);
  rmSync(`${paths.state}.tmp`);
}

/** A child that dies with the supervisor, its output appended to a log file. */
function startLogged(paths: LabPaths, name: string, argv: string[]): ChildProcess {
  const fd = openSync(join(paths.logs, `${name}.log`), 'a');
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...argv], { cwd: REPO_ROOT, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return child;
}

async function waitFor(what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Root-namespace loopback ports that forward to each agent's metrics UNIX socket. */
function bridgeToUnixSocket(path: string): Promise<{ server: Server; port: number }> {
  const server = createServer((client) => {
    const upstream = createConnection({ path });
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve({ server, port: typeof address === 'object' && address ? address.port : 0 });
    }),
  );
}

async function requestToken(kube: KubeClient, serviceAccount: string, spec: Record<string, unknown>): Promise<string> {
  const response = await kube.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${K8S_NAMESPACE}/serviceaccounts/${serviceAccount}/token`,
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec },
  });
  return response.status.token;
}

function kubectl(paths: LabPaths, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(toolPath('kubectl'), ['--kubeconfig', paths.kubeconfig, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`kubectl ${args.join(' ')}: ${err}`))));
  });
}

async function enrolNode(kube: KubeClient, paths: LabPaths, index: number): Promise<void> {
  const name = nodeName(index);
  await kube.request({
    method: 'POST',
    path: '/api/v1/nodes',
    body: {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, labels: { 'secai.io/node': 'true', 'kubernetes.io/hostname': name, 'secai.io/lab': 'true' } },
      // Node addresses are the lab's own namespace addresses; nothing dials them from the root namespace.
      status: { addresses: [{ type: 'InternalIP', address: nodeAddress(index) }] },
    },
  });
  // The agent's Pod exists only to bind its token to the node (no kubelet runs it): the agent
  // itself runs in the node's network namespace.
  const pod = await kube.request<{ metadata: { uid: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${K8S_NAMESPACE}/pods`,
    body: {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `secai-agent-${name}`, labels: { app: 'secai-agent' } },
      spec: {
        nodeName: name,
        serviceAccountName: AGENT_SERVICE_ACCOUNT,
        automountServiceAccountToken: false,
        containers: [{ name: 'agent', image: 'secai-fleet/agent:lab' }],
      },
    },
  });
  const token = await requestToken(kube, AGENT_SERVICE_ACCOUNT, {
    audiences: [TOKEN_AUDIENCE],
    expirationSeconds: 7 * 24 * 3600,
    boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: `secai-agent-${name}`, uid: pod.metadata.uid },
  });
  const node = paths.node(name);
  mkdirSync(node.dir, { recursive: true, mode: 0o700 });
  writeFileSync(node.token, token, { mode: 0o600 });
}

function operatorKubeconfig(server: string, caPem: string, token: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'lab', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
    users: [{ name: OPERATOR_SERVICE_ACCOUNT, user: { token } }],
    contexts: [{ name: 'lab', context: { cluster: 'lab', user: OPERATOR_SERVICE_ACCOUNT } }],
    'current-context': 'lab',
  });
}

export async function supervise(dir: string, nodeCount: number): Promise<void> {
  const paths = labPaths(dir);
  mkdirSync(paths.logs, { recursive: true });
  writeFileSync(paths.supervisorPid, String(process.pid));
  const state: LabState = { phase: 'starting', startedAt: Date.now() };
  writeState(paths, state);
  const children: ChildProcess[] = [];
  const swtpms: Swtpm[] = [];
  const bridges: Server[] = [];
  let harness: NetnsHarness | undefined;
  let kube: KubeClient | undefined;
  let stopping = false;

  const teardown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    state.phase = 'stopping';
    writeState(paths, state);
    for (const child of children) {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
    for (const child of children) {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    for (const bridge of bridges) bridge.close();
    await Promise.all(swtpms.map((t) => t.stop()));
    await harness?.destroy();
    kube?.close();
    await stopControlPlane(paths.cluster);
    rmSync(paths.supervisorPid, { force: true });
    process.exit(code);
  };
  process.once('SIGTERM', () => void teardown(0));
  process.once('SIGINT', () => void teardown(0));

  try {
    const cp = await startControlPlane({ dir: paths.cluster });
    copyFileSync(cp.kubeconfig, paths.kubeconfig);
    await installCrds(paths.kubeconfig);
    kube = await KubeClient.fromKubeconfigFile(paths.kubeconfig);
    await kube.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: K8S_NAMESPACE } } });
    await kubectl(paths, ['apply', '--server-side', '-f', join(REPO_ROOT, 'operator', 'config', 'rbac.yaml')]);
    await kube.request({
      method: 'POST',
      path: `/api/v1/namespaces/${K8S_NAMESPACE}/serviceaccounts`,
      body: { metadata: { name: AGENT_SERVICE_ACCOUNT } },
    });
    // The operator runs with its own least-privilege ServiceAccount, not as an administrator.
    const operatorToken = await requestToken(kube, OPERATOR_SERVICE_ACCOUNT, { expirationSeconds: 7 * 24 * 3600 });
    writeFileSync(paths.operatorKubeconfig, operatorKubeconfig(cp.apiServerUrl, readFileSync(join(cp.dir, 'pki', 'ca.crt'), 'utf8'), operatorToken), {
      mode: 0o600,
    });
    for (let i = 0; i < nodeCount; i++) await enrolNode(kube, paths, i);

    // Network: an upstream namespace with a bridge, each node joined to it by a veth pair. No
    // namespace has a default route.
    harness = await NetnsHarness.create({ prefix: LAB_NAMESPACE_PREFIX });
    const upstream = await harness.addNamespace('upstream');
    await harness.runChecked(upstream, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    for (const address of [UPSTREAM_ADDRESS, OTHER_UPSTREAM_ADDRESS]) {
      await harness.runChecked(upstream, 'ip', ['addr', 'add', `${address}/${UPSTREAM_PREFIX}`, 'dev', 'br0']);
    }
    await harness.runChecked(upstream, 'ip', ['link', 'set', 'br0', 'up']);
    const nodeNamespaces: string[] = [];
    for (let i = 0; i < nodeCount; i++) {
      const namespace = await harness.addNamespace(`node-${i}`);
      nodeNamespaces.push(namespace);
      await harness.connect(
        { namespace, device: 'eth0', addresses: [`${nodeAddress(i)}/${UPSTREAM_PREFIX}`] },
        { namespace: upstream, device: `n${i}`, addresses: [] },
      );
      await harness.runChecked(upstream, 'ip', ['link', 'set', `n${i}`, 'master', 'br0']);
    }

    // A private Tor network on the bridge (its relays at one address, the exit reaching the upstream
    // across the bridge); it reaches a consensus while the rest starts.
    const tornet = await harness.addNamespace('tornet');
    await harness.connect({ namespace: tornet, device: 'eth0', addresses: [`${TOR_RELAY_ADDRESS}/${UPSTREAM_PREFIX}`] }, { namespace: upstream, device: 'tor0', addresses: [] });
    await harness.runChecked(upstream, 'ip', ['link', 'set', 'tor0', 'master', 'br0']);
    const torStarted = Date.now();
    const torNetwork = startPrivateTorNetwork({
      harness,
      namespace: tornet,
      address: TOR_RELAY_ADDRESS,
      dir: join(paths.dir, 'tor-network'),
      exit: { addresses: [UPSTREAM_ADDRESS], ports: [TOR_UPSTREAM_PORT], resolver: UPSTREAM_ADDRESS },
    });
    torNetwork.catch(() => undefined);

    // Upstream: the model server (allowed), the lab resolver, and ports no policy allows.
    mkdirSync(paths.upstream, { recursive: true });
    writeTinyModel(join(paths.upstream, MODEL_FILE));
    children.push(
      startLogged(paths, 'upstream-model-server', [
        'ip', 'netns', 'exec', upstream, ...NODE_TS, join(REPO_ROOT, 'hack', 'lab', 'model-server.ts'), paths.upstream, UPSTREAM_ADDRESS, String(MODEL_PORT),
      ]),
      startLogged(paths, 'upstream-servers', [
        'ip', 'netns', 'exec', upstream, ...NODE_TS, join(REPO_ROOT, 'test', 'egress', 'upstream-servers.ts'),
        '--tcp', [...BLOCKED_PORTS.map((p) => `${UPSTREAM_ADDRESS}:${p}`), `${OTHER_UPSTREAM_ADDRESS}:${MODEL_PORT}`, `${UPSTREAM_ADDRESS}:${TOR_UPSTREAM_PORT}`].join(','),
        '--dns', `${UPSTREAM_ADDRESS}:${DNS_PORT}`,
        '--zone', JSON.stringify({ [MODEL_HOST]: { a: [UPSTREAM_ADDRESS], ttl: 300 } }),
      ]),
    );

    // Per node: a software TPM (UNIX sockets, reachable from inside the namespace) manufactured with
    // an EK certificate by the lab's EK CA, "booted" by simulated UEFI firmware (its PCRs extended as
    // the boot event log it leaves says), and a LUKS2 vault header whose key is sealed to it.
    for (let i = 0; i < nodeCount; i++) {
      const node = paths.node(nodeName(i));
      const tpm = await startSwtpm(node.tpm, { unixSockets: true, ekCertificate: { caDir: join(paths.dir, 'ek-ca') } });
      swtpms.push(tpm);
      writeFileSync(join(paths.dir, 'ek-ca.pem'), tpm.ekCa ?? '');
      const boot = simulatedFirmwareBoot({ secureBoot: true, tag: nodeName(i) });
      await measureOnTpm(tpm.tcti, boot);
      writeFileSync(labEventLog(node), writeEventLog(boot));
      await createLabVault({ path: node.vaultHeader, tcti: tpm.tcti, pcrBank: 'sha256', pcrs: [7] });
      mkdirSync(node.mapperDir, { recursive: true });
    }

    // Each agent's Tor client runs as Tor's own user, in a directory beside the agent's state: the
    // lab directory and each node's directory must let it pass (not list).
    for (const dir of [paths.dir, join(paths.dir, 'nodes'), ...Array.from({ length: nodeCount }, (_, i) => paths.node(nodeName(i)).dir)]) chmodSync(dir, 0o711);

    // Like a Deployment or a systemd unit with Restart=always: a killed operator or agent comes back
    // (an agent re-applies its stored plan and reconnects; the operator takes its Lease back).
    const keepRunning = (name: string, argv: string[]) => {
      const child = startLogged(paths, name, argv);
      children.push(child);
      child.once('exit', () => {
        if (!stopping) setTimeout(() => keepRunning(name, argv), 1000);
      });
    };
    const operatorMetricsPort = await freeLoopbackPort();
    // The operator as it ships: its bundle, built from this checkout, with the chart's node flags.
    const operatorBundle = await buildOperator();
    keepRunning('operator', [
      process.execPath, ...OPERATOR_NODE_FLAGS, operatorBundle,
      '--kubeconfig', paths.operatorKubeconfig,
      '--namespace', K8S_NAMESPACE,
      '--metrics-bind-address', `127.0.0.1:${operatorMetricsPort}`,
      '--leader-elect', 'true',
      '--identity', 'lab-operator',
      '--channel-listen', `unix://${paths.channelSocket}`,
      '--status-refresh-seconds', '15',
      '--attestation-interval-seconds', '10',
      '--attestation-ek-ca', join(paths.dir, 'ek-ca.pem'),
    ]);
    const admin = kube;
    await waitFor(
      'the operator to publish the channel CA',
      async () => {
        const cm = await admin.raw<{ data?: Record<string, string> }>({
          method: 'GET',
          path: `/api/v1/namespaces/${K8S_NAMESPACE}/configmaps/secai-agent-ca`,
        });
        if (cm.status !== 200 || !cm.body.data?.['ca.crt']) return false;
        writeFileSync(paths.caFile, cm.body.data['ca.crt']);
        return true;
      },
      120_000,
    );

    const topologyNodes: LabTopology['nodes'] = [];
    for (let i = 0; i < nodeCount; i++) {
      const name = nodeName(i);
      const node = paths.node(name);
      const namespace = nodeNamespaces[i] ?? '';
      const agentArgv = [
        'ip', 'netns', 'exec', namespace, ...NODE_TS, join(REPO_ROOT, 'agents', 'src', 'cmd', 'agent.ts'),
        '--node-name', name,
        '--state-dir', node.state,
        '--audit-dir', node.audit,
        '--store-dir', node.store,
        '--operator-address', `unix://${paths.channelSocket}`,
        '--operator-server-name', CHANNEL_SERVER_NAME,
        '--ca-file', paths.caFile,
        '--token-file', node.token,
        '--metrics-listen', `unix:${node.metricsSocket}`,
        '--inference-host', '127.0.0.1',
        '--vault-header', node.vaultHeader,
        '--vault-mapper', 'secai-vault',
        '--vault-mapper-dir', node.mapperDir,
        '--tpm-tcti', `swtpm:path=${join(node.tpm, 'swtpm.sock')}`,
        '--event-log', labEventLog(node),
        '--efi-dir', node.efiDir,
      ];
      keepRunning(`agent-${name}`, agentArgv);
      await waitFor(`the metrics socket of ${name}`, () => {
        try {
          return statSync(node.metricsSocket).isSocket();
        } catch {
          return false;
        }
      }, 120_000);
      const bridge = await bridgeToUnixSocket(node.metricsSocket);
      bridges.push(bridge.server);
      topologyNodes.push({
        name,
        namespace,
        address: nodeAddress(i),
        stateDir: node.state,
        auditDir: node.audit,
        metrics: `http://127.0.0.1:${bridge.port}/metrics`,
        log: join(paths.logs, `agent-${name}.log`),
        inference: { url: `http://127.0.0.1:${INFERENCE_PORT}`, tokenFile: paths.inferenceTokenFile, model: LAB_MODEL },
      });
    }

    mkdirSync(join(paths.prometheus, 'data'), { recursive: true });
    const prometheusPort = await freeLoopbackPort();
    const prometheusConfigFile = join(paths.prometheus, 'prometheus.yml');
    writeFileSync(
      prometheusConfigFile,
      prometheusConfig(
        operatorMetricsPort,
        topologyNodes.map((n) => ({ node: n.name, port: Number(new URL(n.metrics).port) })),
      ),
    );
    children.push(
      startLogged(paths, 'prometheus', [
        'prometheus',
        `--config.file=${prometheusConfigFile}`,
        `--storage.tsdb.path=${join(paths.prometheus, 'data')}`,
        `--web.listen-address=127.0.0.1:${prometheusPort}`,
        '--storage.tsdb.retention.time=1d',
      ]),
    );
    const prometheusUrl = `http://127.0.0.1:${prometheusPort}`;
    await waitFor('Prometheus to be ready', async () => (await fetch(`${prometheusUrl}/-/ready`).catch(() => undefined))?.ok === true, 60_000);

    const inferenceToken = randomBytes(24).toString('base64url');
    writeFileSync(paths.inferenceTokenFile, inferenceToken, { mode: 0o600 });
    const tor = await torNetwork;
    const torConsensusMs = Date.now() - torStarted;
    process.stdout.write(`private Tor network: consensus after ${torConsensusMs} ms\n`);
    const samples = labSamples(readFileSync(join(paths.upstream, MODEL_FILE)), inferenceToken, tor);
    const samplesFile = join(paths.dir, 'samples.yaml');
    writeFileSync(samplesFile, samples.map((s) => stringify(s)).join('---\n'), { mode: 0o600 });
    await kubectl(paths, ['apply', '-f', samplesFile]);

    const topology: LabTopology = {
      kubeconfig: paths.kubeconfig,
      operator: { metrics: `http://127.0.0.1:${operatorMetricsPort}/metrics`, log: join(paths.logs, 'operator.log') },
      prometheus: { url: prometheusUrl, config: prometheusConfigFile },
      upstream: {
        namespace: upstream,
        allowed: [{ host: UPSTREAM_ADDRESS, port: MODEL_PORT }],
        blocked: [...BLOCKED_PORTS.map((port) => ({ host: UPSTREAM_ADDRESS, port })), { host: OTHER_UPSTREAM_ADDRESS, port: MODEL_PORT }],
        tor: { host: UPSTREAM_ADDRESS, port: TOR_UPSTREAM_PORT, exit: TOR_RELAY_ADDRESS, consensusMs: torConsensusMs },
      },
      nodes: topologyNodes,
    };
    writeFileSync(paths.topology, JSON.stringify(topology, null, 2));
    state.phase = 'converging';
    state.readyAt = Date.now();
    writeState(paths, state);

    await waitForConvergence(admin, nodeCount, 300_000);
    state.phase = 'running';
    state.convergedAt = Date.now();
    writeState(paths, state);
  } catch (err) {
    state.phase = 'failed';
    state.message = (err as Error).message;
    writeState(paths, state);
    await teardown(1);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir, count] = process.argv.slice(2);
  if (!dir || !count) {
    console.error('usage: supervisor.ts <lab dir> <node count>');
    process.exit(2);
  }
  void supervise(dir, Number(count));
}
