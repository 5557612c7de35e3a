// The Tor duty: when the plan has via: Tor entries, the agent runs the node's Tor client as a
// supervised child (torrc from the plan, restarted with backoff when it dies, stopped when the plan
// no longer needs it) and reports whether it can carry traffic. It never decides where traffic
// goes: the egress table redirects via: Tor destinations to the TransPort, so with Tor stopped or
// without a consensus those connections are refused at the TransPort, never sent direct. That is
// why an unavailable Tor is Progressing, not a failure of enforcement; the report says
// TorUnavailable and the chart's alert fires.
import { type ChildProcess, spawn as spawnChild } from 'node:child_process';
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { DutyStatus, TorState, Via, type NodePlan, type Report, type TorReport } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { DutyReason } from '../../../api/proto/duty-results.js';
import type { Duty, DutyContext, DutyOutcome } from '../agent/node-agent.js';
import type { AuditSink } from '../audit/audit-sink.js';
import { queryTorStatus, type TorStatus } from './tor-control.js';
import { renderTorrc, TorConfigError } from './torrc.js';

export interface TorDutyOptions {
  /**
   * The Tor client's own directory (torrc, data, control socket). Not inside the agent's state
   * directory: Tor runs as its own user and must be able to reach it, and the agent's directory
   * lets nobody else in.
   */
  dir: string;
  torPath: string;
  /** The user Tor drops to, with its uid and gid (when the agent runs as root). */
  user?: { name: string; uid: number; gid: number };
  logger: Logger;
  registry: Registry;
  audit: AuditSink;
  spawn?: (command: string, args: readonly string[]) => ChildProcess;
}

export const TOR_RESYNC_MS = 10_000;
/** While Tor cannot carry traffic, it is asked again this often. */
const UNAVAILABLE_RECHECK_MS = 1_000;
const RESTART_INITIAL_MS = 1_000;
const RESTART_MAX_MS = 60_000;
/** This many exits within the window, and Tor is crashing rather than restarting. */
const CRASH_WINDOW_MS = 5 * 60_000;
const CRASHES_FOR_CRASHING = 3;
const KEPT_LOG_LINES = 20;
const MAX_LINE_CHARS = 400;

const notConfigured: TorReport = { state: TorState.TOR_STATE_NOT_CONFIGURED, bootstrapPercent: 0, reason: 'NotConfigured', message: 'the plan has no via: Tor entries', restarts: 0 };

export class TorDuty implements Duty {
  readonly name = 'tor' as const;
  readonly resyncMs = TOR_RESYNC_MS;
  private child: ChildProcess | undefined;
  private writtenTorrc: string | undefined;
  private restartAt = 0;
  private restarts = 0;
  private exits: number[] = [];
  private log: string[] = [];
  private report: TorReport = notConfigured;
  private ctx: Pick<DutyContext, 'wake'> | undefined;
  private readonly paths;
  private readonly metrics;

  constructor(private readonly options: TorDutyOptions) {
    const dir = options.dir;
    this.paths = { dir, torrc: join(dir, 'torrc'), dataDir: join(dir, 'data'), controlDir: join(dir, 'control'), controlSocket: join(dir, 'control', 'socket'), cookieFile: join(dir, 'control', 'cookie') };
    const registers = [options.registry];
    this.metrics = {
      configured: new Gauge({ name: 'secai_agent_tor_configured', help: 'Whether the plan asks for a Tor client (via: Tor entries).', registers }),
      available: new Gauge({ name: 'secai_agent_tor_available', help: 'Whether the Tor client is bootstrapped with a circuit (via: Tor traffic can flow).', registers }),
      bootstrap: new Gauge({ name: 'secai_agent_tor_bootstrap_percent', help: "The Tor client's bootstrap progress.", registers }),
      restarts: new Counter({ name: 'secai_agent_tor_restarts_total', help: 'Times the agent restarted a Tor client that exited.', registers }),
    };
  }

  watch(ctx: DutyContext): void {
    this.ctx = ctx;
  }

  async converge(plan: NodePlan, ctx: DutyContext): Promise<DutyOutcome> {
    this.ctx = ctx;
    const egress = plan.egress;
    const wanted = egress && egress.torTransPort > 0 && egress.allow.some((rule) => rule.via === Via.VIA_TOR);
    if (!wanted) {
      await this.stopChild();
      this.setReport(notConfigured, false);
      return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message: notConfigured.message };
    }
    let torrc: string;
    try {
      torrc = renderTorrc(
        { transPort: egress.torTransPort, dnsPort: egress.torDnsPort, network: egress.torNetwork },
        { dataDir: this.paths.dataDir, controlSocket: this.paths.controlSocket, cookieFile: this.paths.cookieFile },
        { user: this.options.user?.name, owningPid: process.pid },
      );
    } catch (error) {
      if (!(error instanceof TorConfigError)) throw error;
      return { status: DutyStatus.DUTY_STATUS_FAILED, reason: DutyReason.Failed, message: `the plan's Tor configuration cannot be used: ${error.message}` };
    }
    if (torrc !== this.writtenTorrc) {
      await this.prepareDirectories();
      await writeFile(this.paths.torrc, torrc, { mode: 0o600 });
      if (this.child) {
        this.options.logger.info({ duty: 'tor' }, 'Tor configuration changed; restarting the Tor client');
        await this.stopChild();
        this.restartAt = 0;
      }
      this.writtenTorrc = torrc;
    }
    if (!this.child && Date.now() >= this.restartAt) this.startChild();
    const report = await this.observe();
    this.setReport(report, true);
    if (report.state === TorState.TOR_STATE_AVAILABLE) return { status: DutyStatus.DUTY_STATUS_OK, reason: DutyReason.Converged, message: report.message };
    return { status: DutyStatus.DUTY_STATUS_PROGRESSING, reason: DutyReason.TorUnavailable, message: report.message, requeueAfterMs: UNAVAILABLE_RECHECK_MS };
  }

  private async prepareDirectories(): Promise<void> {
    // Traversable by the Tor user, readable by nobody else; the torrc inside is root's alone.
    await mkdir(this.paths.dir, { recursive: true, mode: 0o711 });
    await chmod(this.paths.dir, 0o711);
    for (const dir of [this.paths.dataDir, this.paths.controlDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      // Tor refuses a data or socket directory that is not its own.
      if (this.options.user) await chown(dir, this.options.user.uid, this.options.user.gid);
    }
  }

  private startChild(): void {
    const spawn = this.options.spawn ?? ((command, args) => spawnChild(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const child = spawn(this.options.torPath, ['-f', this.paths.torrc]);
    this.child = child;
    const keep = (line: string) => {
      this.log.push(line.slice(0, MAX_LINE_CHARS));
      if (this.log.length > KEPT_LOG_LINES) this.log.shift();
    };
    if (child.stdout) createInterface({ input: child.stdout }).on('line', keep);
    if (child.stderr) createInterface({ input: child.stderr }).on('line', keep);
    child.once('error', (error) => keep(`cannot start ${this.options.torPath}: ${error.message}`));
    child.once('close', (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      const now = Date.now();
      this.exits = [...this.exits.filter((at) => now - at < CRASH_WINDOW_MS), now];
      const delay = Math.min(RESTART_MAX_MS, RESTART_INITIAL_MS * 2 ** Math.min(this.exits.length - 1, 10));
      this.restartAt = now + delay;
      this.restarts += 1;
      this.metrics.restarts.inc();
      this.options.logger.warn({ duty: 'tor', code, signal, restartInMs: delay, last: this.log.at(-1) }, 'the Tor client exited; via: Tor traffic is refused until it is back');
      void this.options.audit.record({ type: 'tor.exited', data: { code, signal, restartInMs: delay } }).catch(() => undefined);
      this.ctx?.wake();
    });
    this.options.logger.info({ duty: 'tor', pid: child.pid }, 'Tor client started');
  }

  private async stopChild(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await closed;
    clearTimeout(timer);
  }

  private async observe(): Promise<TorReport> {
    const restarts = this.restarts;
    if (!this.child) {
      const crashing = this.exits.length >= CRASHES_FOR_CRASHING;
      const inMs = Math.max(0, this.restartAt - Date.now());
      return {
        state: TorState.TOR_STATE_UNAVAILABLE,
        bootstrapPercent: 0,
        reason: crashing ? 'Crashing' : 'NotRunning',
        message: `the Tor client is not running (${crashing ? `${this.exits.length} exits in 5 minutes; ` : ''}restart in ${Math.ceil(inMs / 1000)} s): ${this.log.at(-1) ?? 'no output'}`,
        restarts,
      };
    }
    let status: TorStatus;
    try {
      status = await queryTorStatus(this.paths.controlSocket, this.paths.cookieFile);
    } catch (error) {
      return { state: TorState.TOR_STATE_UNAVAILABLE, bootstrapPercent: 0, reason: 'Starting', message: `the Tor client does not answer on its control socket yet: ${(error as Error).message}`, restarts };
    }
    if (status.bootstrapPercent === 100 && status.circuitEstablished && status.enoughDirInfo) {
      return { state: TorState.TOR_STATE_AVAILABLE, bootstrapPercent: 100, reason: 'Bootstrapped', message: 'bootstrapped, with a circuit', restarts };
    }
    const reason = status.bootstrapPercent === 100 ? 'NoConsensus' : 'Bootstrapping';
    const message =
      reason === 'NoConsensus'
        ? 'the Tor client has no usable consensus or circuit'
        : `bootstrapping (${status.bootstrapPercent}%, ${status.tag}): ${this.log.filter((l) => /\[(warn|err)\]/.test(l)).at(-1) ?? 'no warning'}`;
    return { state: TorState.TOR_STATE_UNAVAILABLE, bootstrapPercent: status.bootstrapPercent, reason, message: message.slice(0, 1024), restarts };
  }

  private setReport(report: TorReport, configured: boolean): void {
    this.report = report;
    this.metrics.configured.set(configured ? 1 : 0);
    this.metrics.available.set(report.state === TorState.TOR_STATE_AVAILABLE ? 1 : 0);
    this.metrics.bootstrap.set(report.bootstrapPercent);
  }

  /** The Tor client's last log lines (notice level and above), newest last. */
  recentLog(): readonly string[] {
    return [...this.log];
  }

  async contribute(report: Report): Promise<void> {
    report.tor = { ...this.report };
  }

  async stop(): Promise<void> {
    await this.stopChild();
  }

}
