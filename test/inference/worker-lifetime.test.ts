// The worker dies with the agent: when the agent process is killed outright (no cleanup runs),
// bubblewrap and everything inside the sandbox go with it.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ModelDir, waitFor } from './inference-fixtures.js';

const models = new ModelDir();
afterAll(() => models.remove());

function parentOf(pid: number): number | undefined {
  try {
    // The command name (field 2) may contain spaces but ends with ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function descendants(root: number): number[] {
  const pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number);
  const found: number[] = [];
  let frontier = [root];
  while (frontier.length > 0) {
    const children = pids.filter((pid) => frontier.includes(parentOf(pid) ?? -1));
    found.push(...children);
    frontier = children;
  }
  return found;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

it('takes the sandbox down when the agent is killed', async () => {
  const model = models.tiny();
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const script = fileURLToPath(new URL('./agent-stand-in.ts', import.meta.url));
  const agent = spawn(process.execPath, ['--import', tsx, script, model.path, model.sha256], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let out = '';
    agent.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const started = await waitFor(() => out.match(/worker (\d+)/) ?? undefined, 60_000, 'the stand-in to start its worker');
    const workerPid = Number(started[1]);
    const sandboxed = [workerPid, ...descendants(workerPid)];
    // bwrap, its pid-namespace init, and node (the launcher has exec'd into it).
    expect(sandboxed.length).toBeGreaterThanOrEqual(3);

    agent.kill('SIGKILL');
    await waitFor(() => sandboxed.every((pid) => !alive(pid)), 2000, 'every sandboxed process to be gone');
  } finally {
    agent.kill('SIGKILL');
  }
}, 90_000);
