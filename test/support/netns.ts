// Network namespaces for tests and the lab: named with a caller's prefix and an owner tag (the
// creating process id by default), joined by veth pairs with addresses and no default route, with
// commands and long-lived processes run inside (`ip netns exec`). Everything is torn down by
// destroy(), by a process-exit hook, and — after a crash — by sweepNamespaces(), which removes the
// namespaces of a prefix whose owner process is gone.
//
// Network safety (DESIGN §7): namespaces get only the addresses given here and the connected
// routes those imply; connect() refuses to finish if a default route appears.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { type Exec, type ExecOptions, type ExecResult, runChecked, runCommand } from '../../agents/src/exec.js';

const PREFIX_PATTERN = /^[a-z][a-z0-9]{1,11}$/;
const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,23}$/;
const MAX_KEPT_OUTPUT = 1024 * 1024;

export interface NetnsOptions {
  /** Distinguishes namespaces of one area (`[a-z][a-z0-9]{1,11}`), e.g. `sfeg` for egress tests. */
  prefix: string;
  /**
   * The owner tag in every name; defaults to this process's id, which lets the sweeper tell a
   * crashed run's leftovers from a live parallel run's namespaces. A long-lived lab passes its own.
   */
  owner?: string;
  exec?: Exec;
  ipPath?: string;
}

export interface VethEnd {
  namespace: string;
  /** Interface name inside the namespace (at most 15 characters). */
  device: string;
  /** Addresses with prefix length, IPv4 or IPv6 (`10.0.0.1/24`, `fd00::1/64`). */
  addresses: readonly string[];
}

export interface NetnsProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Standard output so far (the last MiB). */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in standard output. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Writes a line to the process's standard input. */
  send(line: string): void;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills the process group and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export class NetnsHarness {
  readonly namePrefix: string;
  private readonly exec: Exec;
  private readonly ip: string;
  private readonly namespaces = new Set<string>();
  private readonly processes = new Set<NetnsProcess>();
  private readonly exitHook = () => this.destroySync();

  private constructor(options: NetnsOptions) {
    if (!PREFIX_PATTERN.test(options.prefix)) throw new Error(`netns prefix must match ${PREFIX_PATTERN}: ${options.prefix}`);
    const owner = options.owner ?? String(process.pid);
    if (!/^[a-z0-9]{1,12}$/.test(owner)) throw new Error(`netns owner must be 1-12 lowercase letters or digits: ${owner}`);
    this.namePrefix = `${options.prefix}-${owner}-`;
    this.exec = options.exec ?? runCommand;
    this.ip = options.ipPath ?? 'ip';
    process.once('exit', this.exitHook);
  }

  /** A harness for one prefix; leftovers of dead owners of the same prefix are swept first. */
  static async create(options: NetnsOptions): Promise<NetnsHarness> {
    await sweepNamespaces(options.prefix, { exec: options.exec, ipPath: options.ipPath });
    return new NetnsHarness(options);
  }

  /** Creates `<prefix>-<owner>-<name>` with loopback up; returns its full name. */
  async addNamespace(name: string): Promise<string> {
    if (!NAME_PATTERN.test(name)) throw new Error(`namespace name must match ${NAME_PATTERN}: ${name}`);
    const namespace = `${this.namePrefix}${name}`;
    await runChecked(this.exec, this.ip, ['netns', 'add', namespace]);
    this.namespaces.add(namespace);
    await runChecked(this.exec, this.ip, ['-n', namespace, 'link', 'set', 'lo', 'up']);
    return namespace;
  }

  /**
   * Joins two namespaces with a veth pair created directly inside them (nothing appears in the
   * root namespace), assigns the addresses, and brings both ends up. IPv6 addresses skip duplicate
   * address detection so they are usable at once.
   */
  async connect(a: VethEnd, b: VethEnd): Promise<void> {
    for (const end of [a, b]) {
      if (!this.namespaces.has(end.namespace)) throw new Error(`${end.namespace} is not a namespace of this harness`);
      if (!/^[a-zA-Z0-9_-]{1,15}$/.test(end.device)) throw new Error(`bad interface name ${end.device}`);
    }
    await runChecked(this.exec, this.ip, ['link', 'add', a.device, 'netns', a.namespace, 'type', 'veth', 'peer', 'name', b.device, 'netns', b.namespace]);
    for (const end of [a, b]) {
      for (const address of end.addresses) {
        const v6 = address.includes(':');
        await runChecked(this.exec, this.ip, ['-n', end.namespace, 'addr', 'add', address, 'dev', end.device, ...(v6 ? ['nodad'] : [])]);
      }
      await runChecked(this.exec, this.ip, ['-n', end.namespace, 'link', 'set', end.device, 'up']);
      await this.assertNoDefaultRoute(end.namespace);
    }
  }

  async assertNoDefaultRoute(namespace: string): Promise<void> {
    for (const family of ['-4', '-6']) {
      const routes = await runChecked(this.exec, this.ip, [family, '-n', namespace, 'route', 'show', 'default']);
      if (routes.trim() !== '') throw new Error(`${namespace} has a default route (${family}): ${routes.trim()}`);
    }
  }

  /** Runs a command inside a namespace and waits for it. */
  run(namespace: string, command: string, args: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    return this.exec(this.ip, ['netns', 'exec', namespace, command, ...args], options);
  }

  /** Runs a command inside a namespace; throws unless it exits 0. */
  runChecked(namespace: string, command: string, args: readonly string[], options?: ExecOptions): Promise<string> {
    return runChecked(this.exec, this.ip, ['netns', 'exec', namespace, command, ...args], options);
  }

  /**
   * Starts a long-lived process inside a namespace, in its own process group, killed with this
   * process if it dies (`setpriv --pdeathsig`), and by destroy().
   */
  spawn(namespace: string, command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): NetnsProcess {
    const child = spawn('setpriv', ['--pdeathsig', 'SIGKILL', '--', this.ip, 'netns', 'exec', namespace, command, ...args], {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      cwd: options.cwd,
    });
    if (child.pid === undefined) throw new Error(`could not start ${command} in ${namespace}`);
    const pid = child.pid;
    let out = '';
    let err = '';
    const keep = (text: string, chunk: Buffer) => (text + chunk.toString('utf8')).slice(-MAX_KEPT_OUTPUT);
    const waiters = new Set<() => void>();
    child.stdout!.on('data', (chunk: Buffer) => {
      out = keep(out, chunk);
      for (const wake of waiters) wake();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      err = keep(err, chunk);
    });
    child.stdin!.on('error', () => undefined);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.on('close', (code, signal) => {
        resolve({ code, signal });
        for (const wake of waiters) wake();
      });
    });
    let done = false;
    void exited.then(() => {
      done = true;
    });
    const handle: NetnsProcess = {
      pid,
      child,
      stdout: () => out,
      stderr: () => err,
      exited,
      send: (line) => {
        child.stdin!.write(`${line}\n`);
      },
      waitForOutput: (pattern, timeoutMs = 20_000) =>
        new Promise((resolve, reject) => {
          const check = () => {
            const match = out.match(pattern);
            if (match) finish(() => resolve(match));
            else if (done) finish(() => reject(new Error(`${command} exited before printing ${pattern}; stderr: ${err.slice(-2000)}`)));
          };
          const timer = setTimeout(() => finish(() => reject(new Error(`${command} did not print ${pattern} within ${timeoutMs} ms; stderr: ${err.slice(-2000)}`))), timeoutMs);
          const finish = (outcome: () => void) => {
            clearTimeout(timer);
            waiters.delete(check);
            outcome();
          };
          waiters.add(check);
          check();
        }),
      kill: async (signal = 'SIGKILL') => {
        if (!done) {
          try {
            process.kill(-pid, signal);
          } catch {
            // Already gone.
          }
        }
        await exited;
        this.processes.delete(handle);
      },
    };
    this.processes.add(handle);
    return handle;
  }

  /** Kills every process started here and deletes every namespace (which deletes the veths). */
  async destroy(): Promise<void> {
    process.removeListener('exit', this.exitHook);
    await Promise.all([...this.processes].map((child) => child.kill()));
    for (const namespace of this.namespaces) {
      await killNamespaceProcesses(this.exec, this.ip, namespace);
      await this.exec(this.ip, ['netns', 'del', namespace]);
      this.namespaces.delete(namespace);
    }
  }

  /** The exit-hook path: synchronous, best effort. */
  private destroySync(): void {
    for (const child of this.processes) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    for (const namespace of this.namespaces) {
      try {
        for (const pid of execFileSync(this.ip, ['netns', 'pids', namespace], { encoding: 'utf8' }).split(/\s+/).filter(Boolean)) {
          process.kill(Number(pid), 'SIGKILL');
        }
      } catch {
        // Nothing left inside.
      }
      try {
        execFileSync(this.ip, ['netns', 'del', namespace], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
  }
}

async function killNamespaceProcesses(exec: Exec, ip: string, namespace: string): Promise<void> {
  const listed = await exec(ip, ['netns', 'pids', namespace]);
  for (const pid of listed.stdout.split(/\s+/).filter((text) => /^[0-9]+$/.test(text))) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

function ownerAlive(owner: string): boolean {
  if (!/^[0-9]+$/.test(owner)) return false;
  try {
    process.kill(Number(owner), 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes namespaces named `<prefix>-<owner>-...`, with the processes inside them, whose owner is
 * not a live process id (or every one of the prefix with `all`, for `make lab-down`). Returns the
 * names removed.
 */
export async function sweepNamespaces(prefix: string, options: { all?: boolean; exec?: Exec; ipPath?: string } = {}): Promise<string[]> {
  if (!PREFIX_PATTERN.test(prefix)) throw new Error(`netns prefix must match ${PREFIX_PATTERN}: ${prefix}`);
  const exec = options.exec ?? runCommand;
  const ip = options.ipPath ?? 'ip';
  const listed = await runChecked(exec, ip, ['netns', 'list']);
  const removed: string[] = [];
  for (const line of listed.split('\n')) {
    const namespace = line.trim().split(/\s+/)[0] ?? '';
    const match = namespace.match(/^([a-z0-9]+)-([a-z0-9]+)-/);
    if (!match || match[1] !== prefix) continue;
    if (!options.all && ownerAlive(match[2]!)) continue;
    await killNamespaceProcesses(exec, ip, namespace);
    await exec(ip, ['netns', 'del', namespace]);
    removed.push(namespace);
  }
  return removed;
}
