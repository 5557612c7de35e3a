// The operator as a real child process, run as it ships (dist/operator.mjs with OPERATOR_NODE_FLAGS;
// the jest global setup builds the bundle), with its JSON log in a file and its metrics on a loopback port. It dies with the test process (pdeathsig) whatever happens.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, REPO_ROOT } from '../../../hack/control-plane/control-plane.js';
import { OPERATOR_BUNDLE, OPERATOR_NODE_FLAGS } from '../../../operator/build.js';

export class OperatorProcess {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    private readonly child: ChildProcess,
    readonly logFile: string,
    readonly metricsPort: number,
    readonly identity: string,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** `nodeFlags` go to node itself instead of the shipped OPERATOR_NODE_FLAGS, before the operator's own flags. */
  static async start(opts: { kubeconfig: string; namespace: string; identity: string; dir: string; args?: string[]; nodeFlags?: readonly string[]; env?: Record<string, string> }): Promise<OperatorProcess> {
    const metricsPort = await freePort();
    const logFile = join(opts.dir, `operator-${opts.identity}.log`);
    writeFileSync(logFile, '');
    const fd = openSync(logFile, 'a');
    const child = spawn(
      'setpriv',
      [
        '--pdeathsig', 'KILL', '--',
        process.execPath, ...(opts.nodeFlags ?? OPERATOR_NODE_FLAGS), join(REPO_ROOT, OPERATOR_BUNDLE),
        '--kubeconfig', opts.kubeconfig,
        '--namespace', opts.namespace,
        '--identity', opts.identity,
        '--metrics-bind-address', `127.0.0.1:${metricsPort}`,
        // The agent channel on a UNIX socket in the test's directory (never a shared TCP port).
        '--channel-listen', `unix://${join(opts.dir, `channel-${opts.identity}.sock`)}`,
        ...(opts.args ?? []),
      ],
      { cwd: REPO_ROOT, stdio: ['ignore', fd, fd], env: { ...process.env, KUBECONFIG: '', ...opts.env } },
    );
    closeSync(fd);
    return new OperatorProcess(child, logFile, metricsPort, opts.identity);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  logs(): string {
    return readFileSync(this.logFile, 'utf8');
  }

  async metrics(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, { signal: AbortSignal.timeout(2000) });
    return res.text();
  }

  /** Sum of controller_runtime_reconcile_total over every label set. */
  async reconciles(): Promise<number> {
    const text = await this.metrics();
    return [...text.matchAll(/^controller_runtime_reconcile_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  async stop(): Promise<void> {
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), 35_000);
    await this.exited;
    clearTimeout(timer);
  }
}
