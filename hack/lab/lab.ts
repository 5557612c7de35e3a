// `make lab` / `make lab-down`: a whole SecAI fleet on this machine, with no cluster and no container
// runtime. `up` starts the supervisor (hack/lab/supervisor.ts) detached, waits until the fleet
// converges and prints what is there; `down` stops the supervisor, which removes every process and
// namespace it made, then removes the lab directory.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sweepNamespaces } from '../../test/support/netns.js';
import { isAlive, REPO_ROOT, stopControlPlane, toolPath } from '../control-plane/control-plane.js';
import { LAB_NAMESPACE_PREFIX, labPaths, type LabPaths } from './lab-layout.js';
import type { LabState, LabTopology } from './supervisor.js';

const DEFAULT_DIR = join(REPO_ROOT, '.lab');


function supervisorPid(paths: LabPaths): number | undefined {
  if (!existsSync(paths.supervisorPid)) return undefined;
  const pid = Number(readFileSync(paths.supervisorPid, 'utf8'));
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined;
}

function readState(paths: LabPaths): LabState | undefined {
  try {
    return JSON.parse(readFileSync(paths.state, 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

function tail(path: string, lines = 20): string {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n') : '';
}

export async function labDown(dir: string): Promise<void> {
  const paths = labPaths(dir);
  const pid = supervisorPid(paths);
  if (pid) {
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 90_000;
    while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  // Whatever a crashed supervisor left: namespaces of dead owners, the control plane.
  await sweepNamespaces(LAB_NAMESPACE_PREFIX);
  await stopControlPlane(paths.cluster);
  rmSync(paths.dir, { recursive: true, force: true });
}

/**
 * `dieWithParent` (for tests): the supervisor gets SIGTERM, and so removes the lab, when the process
 * that started it dies, however it dies. Without it the lab outlives `make lab`, as it should.
 */
export async function labUp(dir: string, nodes: number, timeoutMs = 600_000, opts: { dieWithParent?: boolean } = {}): Promise<{ topology: LabTopology; state: LabState }> {
  const paths = labPaths(dir);
  if (supervisorPid(paths)) throw new Error(`a lab is already running in ${paths.dir}; run \`make lab-down\` first`);
  await labDown(dir);
  mkdirSync(paths.logs, { recursive: true });
  const fd = openSync(join(paths.logs, 'supervisor.log'), 'a');
  const supervisor = [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'hack', 'lab', 'supervisor.ts'), paths.dir, String(nodes)];
  const [command, ...args] = opts.dieWithParent ? ['setpriv', '--pdeathsig', 'TERM', '--', ...supervisor] : supervisor;
  const child = spawn(command!, args, {
    cwd: REPO_ROOT,
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  child.unref();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = readState(paths);
    if (state?.phase === 'running') {
      return { topology: JSON.parse(readFileSync(paths.topology, 'utf8')) as LabTopology, state };
    }
    if (state?.phase === 'failed' || child.exitCode !== null) {
      throw new Error(`the lab failed: ${state?.message ?? 'the supervisor exited'}\n${tail(join(paths.logs, 'supervisor.log'))}`);
    }
    if (Date.now() > deadline) {
      await labDown(dir);
      throw new Error(`the lab did not converge within ${timeoutMs / 1000} s`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function kubectlGet(paths: LabPaths): string {
  return execFileSync(toolPath('kubectl'), ['--kubeconfig', paths.kubeconfig, 'get', 'secai', '-o', 'wide'], { encoding: 'utf8' });
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { dir: { type: 'string' }, nodes: { type: 'string' } },
  });
  const dir = values.dir ?? DEFAULT_DIR;
  const paths = labPaths(dir);
  const command = positionals[0];
  if (command === 'down') {
    await labDown(dir);
    console.log('lab removed: every process, namespace and file it made is gone');
    return;
  }
  if (command === 'status') {
    console.log(kubectlGet(paths));
    return;
  }
  if (command !== 'up') {
    console.error('usage: lab.ts up [--nodes N] [--dir D] | down [--dir D] | status [--dir D]');
    process.exit(2);
  }
  const nodes = Number(values.nodes ?? 3);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 50) throw new Error('--nodes must be 1 to 50');
  console.log(`starting a lab fleet of ${nodes} nodes in ${paths.dir} (logs in ${paths.logs})...`);
  const stopOnInterrupt = () => void labDown(dir).finally(() => process.exit(130));
  process.once('SIGINT', stopOnInterrupt);
  const { topology, state } = await labUp(dir, nodes);
  process.removeListener('SIGINT', stopOnInterrupt);
  const seconds = (ms: number) => (ms / 1000).toFixed(1);
  console.log(`\nthe fleet converged in ${seconds((state.convergedAt ?? 0) - state.startedAt)} s ` +
    `(${seconds((state.readyAt ?? 0) - state.startedAt)} s to start, ${seconds((state.convergedAt ?? 0) - (state.readyAt ?? 0))} s to converge)\n`);
  console.log(kubectlGet(paths));
  const first = topology.nodes[0];
  console.log(
    [
      `export KUBECONFIG=${topology.kubeconfig}`,
      `topology: ${paths.topology}`,
      `operator metrics: ${topology.operator.metrics}`,
      `Prometheus: ${topology.prometheus.url} (try: curl -s '${topology.prometheus.url}/api/v1/query' --data-urlencode 'query=secai_nodes')`,
      first ? `agent metrics of ${first.name}: ${first.metrics}` : '',
      first ? `chat with ${first.name}: ip netns exec ${first.namespace} curl -s ${first.inference.url}/v1/chat/completions -H "authorization: Bearer $(cat ${first.inference.tokenFile})" -H 'content-type: application/json' -d '{"model":"${first.inference.model}","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'` : '',
      first ? `try a blocked port from ${first.name}: ip netns exec ${first.namespace} bash -c 'echo > /dev/tcp/${topology.upstream.blocked[0]?.host}/${topology.upstream.blocked[0]?.port}'` : '',
      'remove everything: make lab-down',
    ]
      .filter(Boolean)
      .join('\n'),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: Error) => {
    console.error(err.message);
    process.exit(1);
  });
}
