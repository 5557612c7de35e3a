// Runs the scanner child (scanner-main.ts) under bubblewrap, as SecAI OS runs its quarantine
// scanner: new user, pid, net, ipc, uts and mount namespaces (so no network at all), all
// capabilities dropped, an empty environment, no nested user namespaces, nobody inside, the
// system and the scanner's code (as plain JavaScript, scanner-code.ts) read-only, the artifact
// bound read-only at a fixed path, the code at a fixed path too (SANDBOX_PROJECT_PATH, wherever the
// checkout is), a private /tmp,
// resource limits set by prlimit before bwrap starts, and a wall-clock timeout. The job goes in on
// stdin, the outcome comes back on stdout; a crash, a kill or a timeout is a rejection with a
// reason code, never an exception of the agent.
import { existsSync, lstatSync, realpathSync } from 'node:fs';
import { Readable } from 'node:stream';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Exec } from '../exec.js';
import type { ScannerPolicy } from './policy.js';
import { scannerCode } from './scanner-code.js';
import { MAX_OUTCOME_BYTES, parseScanOutcome, parseTensorTreeOutcome, SANDBOX_ARTIFACT_PATH, SCANNER_PROTOCOL_VERSION, type ScanJob, type ScannerJob, type ScanOutcome, type TensorTreeOutcome } from './scanner-protocol.js';
import { failed, passed, Reason, Stage, type StageResult } from './verdict.js';

export interface ScannerSandbox {
  /** The verdict job: scans `artifactPath` (a host path) with `job` (whose artifactPath is replaced). */
  scan(artifactPath: string, job: ScanJob, sizeBytes: number): Promise<{ sandbox: StageResult; outcome?: ScanOutcome }>;
  /**
   * The verdict job over a file still being downloaded (`job.follow` says its final size): the
   * scanner reads it as `progress` (lines of leading bytes written; its end is the end of the
   * download) says it grows. `signal` stops it (the download failed); `timeoutMs` is added to the
   * scanner's own time limit, for the download's.
   */
  scanFollowing?(artifactPath: string, job: ScanJob & { follow: { sizeBytes: number } }, follow: { progress: Readable; signal: AbortSignal; timeoutMs: number }): Promise<{ sandbox: StageResult; outcome?: ScanOutcome }>;
  /** The tensor-tree job over `artifactPath`, for an artifact that passed every check. */
  tensorTree(artifactPath: string, sizeBytes: number): Promise<{ sandbox: StageResult; outcome?: TensorTreeOutcome }>;
}

export interface ScannerSandboxOptions {
  exec: Exec;
  policy: ScannerPolicy;
  /** Bound read-only: node_modules and the scanner's TypeScript. Default: this checkout. */
  projectRoot?: string;
  /** Default: the real path of the running Node. */
  nodeBinary?: string;
  bwrap?: string;
  prlimit?: string;
  /** The program run inside, relative to the project root; default the scanner. Tests run probes. */
  entry?: string;
  entryArgs?: string[];
}

const HERE = dirname(fileURLToPath(import.meta.url));
const DEFAULT_PROJECT_ROOT = resolve(HERE, '../../..');
const GIB = 1024 ** 3;

/** Top-level system directories: bound read-only, or recreated as the symlinks they are (merged /usr). */
function systemMounts(): string[] {
  const args = ['--ro-bind', '/usr', '/usr'];
  for (const dir of ['/bin', '/sbin', '/lib', '/lib32', '/lib64']) {
    if (!existsSync(dir)) continue;
    const stat = lstatSync(dir);
    if (stat.isSymbolicLink()) args.push('--symlink', realpathSync(dir).replace(/^\//, ''), dir);
    else args.push('--ro-bind', dir, dir);
  }
  return args;
}

/**
 * Where the project's files appear inside: a fixed path on the sandbox's read-only root, so that the
 * code is read-only and no host path leaks in wherever the checkout is (under /tmp, the private
 * /tmp would otherwise hold it, writable).
 */
export const SANDBOX_PROJECT_PATH = '/scanner';

/** The bwrap and prlimit command line; pure, so a test can read it. */
export const SCANNER_CODE = 'agents/src/quarantine';
export const SCANNER_ENTRY = `${SCANNER_CODE}/scanner-main.ts`;

export function sandboxCommand(options: {
  projectRoot: string;
  nodeBinary: string;
  bwrap: string;
  artifactPath: string;
  limits: { addressSpaceBytes: number; dataBytes: number; fileSizeBytes: number; cpuSeconds: number };
  entry?: string;
  entryArgs?: string[];
  /** The scanner's code with types stripped (scanner-code.ts), bound where its sources are. */
  codeDir?: string;
}): { command: string; args: string[] } {
  const { projectRoot, nodeBinary, artifactPath, limits } = options;
  const code = resolve(projectRoot, SCANNER_CODE);
  const under = (p: string, root: string) => p === root || p.startsWith(`${root}/`);
  /** A host path as the sandbox sees it: the project's files under SANDBOX_PROJECT_PATH. */
  const inside = (p: string) => (under(p, projectRoot) ? join(SANDBOX_PROJECT_PATH, relative(projectRoot, p)) : p);
  let entry = resolve(projectRoot, options.entry ?? SCANNER_ENTRY);
  if (options.codeDir && under(entry, code)) entry = entry.replace(/\.ts$/, '.js');
  const mounts = systemMounts();
  const nodeModules = resolve(projectRoot, 'node_modules');
  if (!under(nodeBinary, '/usr') && !under(nodeBinary, nodeModules)) mounts.push('--ro-bind', nodeBinary, inside(nodeBinary));
  // Only what the scanner loads: the project may hold lab kubeconfigs and test PKI, and a
  // compromised scanner could copy them into the verdict message it prints. package.json makes
  // the code ES modules; node_modules holds the sigstore libraries.
  for (const p of [nodeModules, resolve(projectRoot, 'package.json')].filter((p) => existsSync(p))) mounts.push('--ro-bind', p, inside(p));
  mounts.push('--ro-bind', options.codeDir ?? code, inside(code));
  // An entry outside the scanner's code (a test probe) runs on Node's own type stripping.
  if (!under(entry, code)) mounts.push('--ro-bind', entry, inside(entry));
  const bwrap = [
    options.bwrap,
    '--unshare-all',
    '--unshare-user',
    '--disable-userns',
    '--uid', '65534',
    '--gid', '65534',
    '--die-with-parent',
    '--new-session',
    '--cap-drop', 'ALL',
    '--clearenv',
    '--setenv', 'PATH', '/usr/bin:/bin',
    // The scratch tmpfs first: bwrap mounts in order, and a tmpfs mounted over /tmp after the binds
    // would hide any of them under /tmp (a checkout in /tmp, the artifact's staging directory).
    '--tmpfs', '/tmp',
    ...mounts,
    '--ro-bind', artifactPath, SANDBOX_ARTIFACT_PATH,
    '--proc', '/proc',
    '--dev', '/dev',
    // The root bwrap builds is a tmpfs; nothing outside /tmp needs to be writable.
    '--remount-ro', '/',
    '--chdir', SANDBOX_PROJECT_PATH,
    '--',
    inside(nodeBinary),
    // Without the trap handler V8 bounds-checks WebAssembly instead of reserving 8 GiB guard
    // regions per memory, which the address-space limit would refuse.
    '--disable-wasm-trap-handler',
    '--max-old-space-size=512',
    '--disable-warning=ExperimentalWarning',
    inside(entry),
    ...(options.entryArgs ?? []),
  ];
  return {
    command: 'prlimit',
    args: [
      `--as=${limits.addressSpaceBytes}`,
      `--data=${limits.dataBytes}`,
      `--fsize=${limits.fileSizeBytes}`,
      `--cpu=${limits.cpuSeconds}`,
      '--core=0',
      '--nofile=256',
      '--',
      ...bwrap,
    ],
  };
}

export function createScannerSandbox(options: ScannerSandboxOptions): ScannerSandbox {
  const projectRoot = options.projectRoot ?? DEFAULT_PROJECT_ROOT;
  const nodeBinary = options.nodeBinary ?? realpathSync(process.execPath);
  const { policy } = options;

  /** Runs one job in a fresh sandbox: its stdout, or the Sandbox failure that stopped it. */
  async function run(artifactPath: string, job: ScannerJob, sizeBytes: number, follow?: { progress: Readable; signal: AbortSignal; timeoutMs: number }): Promise<{ stdout: string; timeoutMs: number } | { failure: StageResult }> {
    const gib = Math.max(1, Math.ceil(sizeBytes / GIB));
    let codeDir: string | undefined;
    if (!options.entry) {
      try {
        codeDir = await scannerCode(resolve(projectRoot, SCANNER_CODE), basename(SCANNER_ENTRY, '.ts'));
      } catch (e) {
        return { failure: failed(Stage.Sandbox, Reason.SandboxUnavailable, `cannot prepare the scanner's code: ${(e as Error).message.slice(0, 200)}`) };
      }
    }
    const { command, args } = sandboxCommand({
      ...(codeDir ? { codeDir } : {}),
      projectRoot,
      nodeBinary,
      bwrap: options.bwrap ?? 'bwrap',
      artifactPath,
      limits: { addressSpaceBytes: policy.addressSpaceBytes, dataBytes: policy.dataBytes, fileSizeBytes: policy.fileSizeBytes, cpuSeconds: policy.cpuSeconds + policy.cpuSecondsPerGiB * gib },
      ...(options.entry ? { entry: options.entry } : {}),
      ...(options.entryArgs ? { entryArgs: options.entryArgs } : {}),
    });
    const finalCommand = options.prlimit ?? command;
    const timeoutMs = policy.timeoutMs + policy.timeoutMsPerGiB * gib + (follow?.timeoutMs ?? 0);
    const line = JSON.stringify({ ...job, artifactPath: SANDBOX_ARTIFACT_PATH });
    // Following a download, the job is the first line and the progress comes after it.
    const input = follow ? Readable.from((async function* () {
      yield `${line}\n`;
      for await (const chunk of follow.progress) yield chunk as Buffer;
    })()) : line;
    let result;
    try {
      result = await options.exec(finalCommand, args, {
        input,
        ...(follow ? { signal: follow.signal } : {}),
        timeoutMs,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        maxOutputBytes: MAX_OUTCOME_BYTES + 1,
      });
    } catch (e) {
      return { failure: failed(Stage.Sandbox, Reason.SandboxUnavailable, `cannot start the scanner sandbox: ${(e as Error).message}`) };
    }
    if (result.timedOut) return { failure: failed(Stage.Sandbox, Reason.ScannerTimedOut, `the scanner did not finish within ${timeoutMs} ms`, { timeoutMs }) };
    if (result.signal) return { failure: failed(Stage.Sandbox, Reason.ScannerKilled, `the scanner was killed by ${result.signal} (a resource limit or a crash)`, { signal: result.signal }) };
    // bwrap reports its own setup failures with exit status 1 before the scanner runs.
    if (result.code !== 0) {
      const crashed = result.code !== null && result.code > 128;
      return { failure: failed(Stage.Sandbox, crashed ? Reason.ScannerKilled : Reason.ScannerCrashed, `the scanner exited with status ${result.code}`, { exitCode: result.code }) };
    }
    return { stdout: result.stdout.trim(), timeoutMs };
  }

  const invalid = () => failed(Stage.Sandbox, Reason.ScannerOutputInvalid, 'the scanner printed no valid outcome');
  return {
    async scan(artifactPath, job, sizeBytes) {
      const ran = await run(artifactPath, { ...job, kind: 'verdict' }, sizeBytes);
      if ('failure' in ran) return { sandbox: ran.failure };
      const outcome = parseScanOutcome(ran.stdout);
      if (!outcome) return { sandbox: invalid() };
      return { sandbox: passed(Stage.Sandbox, `scanned in the sandbox in ${outcome.facts.scanMs} ms`, { scanMs: outcome.facts.scanMs, timeoutMs: ran.timeoutMs }), outcome };
    },
    async scanFollowing(artifactPath, job, follow) {
      const ran = await run(artifactPath, { ...job, kind: 'verdict' }, job.follow.sizeBytes, follow);
      if ('failure' in ran) return { sandbox: ran.failure };
      const outcome = parseScanOutcome(ran.stdout);
      if (!outcome) return { sandbox: invalid() };
      return { sandbox: passed(Stage.Sandbox, `scanned in the sandbox in ${outcome.facts.scanMs} ms, as it was downloaded`, { scanMs: outcome.facts.scanMs, timeoutMs: ran.timeoutMs }), outcome };
    },
    async tensorTree(artifactPath, sizeBytes) {
      const ran = await run(artifactPath, { kind: 'tensor-tree', version: SCANNER_PROTOCOL_VERSION, artifactPath: SANDBOX_ARTIFACT_PATH }, sizeBytes);
      if ('failure' in ran) return { sandbox: ran.failure };
      const outcome = parseTensorTreeOutcome(ran.stdout);
      if (!outcome) return { sandbox: invalid() };
      return { sandbox: passed(Stage.Sandbox, 'tensor hash tree computed in the sandbox', { timeoutMs: ran.timeoutMs }), outcome };
    },
  };
}
