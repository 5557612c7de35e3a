// The scanner sandbox, for real: bubblewrap and prlimit around the scanner (and around probe
// programs that try what the scanner must not be able to do). A crash, a kill, a resource limit
// or a timeout turns into a Sandbox stage failure with its reason code; the caller never throws.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, existsSync, mkdtempSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { tinyModelBytes } from '../../../test/support/tiny-model.js';
import { runCommand } from '../exec.js';
import { DEFAULT_QUARANTINE_POLICY, type ScannerPolicy } from './policy.js';
import { createScannerSandbox, SANDBOX_PROJECT_PATH, sandboxCommand } from './scanner-sandbox.js';
import { SCANNER_PROTOCOL_VERSION, type ScanJob } from './scanner-protocol.js';
import { computeTensorTree } from './tensor-tree.js';
import { Reason } from './verdict.js';

const PROJECT = resolve(import.meta.dirname, '../../..');
const PROBE = 'test/quarantine/sandbox-probe.ts';
let dir: string;
let artifact: string;
let sha256: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'scanner-sandbox-'));
  artifact = join(dir, 'model.gguf');
  const bytes = tinyModelBytes();
  writeFileSync(artifact, bytes, { mode: 0o600 });
  sha256 = createHash('sha256').update(bytes).digest('hex');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const job = (): ScanJob => ({ version: SCANNER_PROTOCOL_VERSION, artifactPath: '', pin: { sha256 }, blockedDigests: [], requireSignature: false });

function probe(args: string[], policy: Partial<ScannerPolicy> = {}) {
  return createScannerSandbox({ exec: runCommand, policy: { ...DEFAULT_QUARANTINE_POLICY.scanner, ...policy }, entry: PROBE, entryArgs: args });
}

it('runs the scanner and returns its verdicts on the model', async () => {
  const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
  const { sandbox: stage, outcome } = await sandbox.scan(artifact, job(), statSync(artifact).size);
  expect(stage).toMatchObject({ stage: 'Sandbox', status: 'passed' });
  expect(outcome?.stages.map((s) => s.status)).toEqual(['passed', 'skipped', 'passed', 'passed']);
  expect(outcome?.facts.sha256).toBe(sha256);
}, 30_000);

describe('follows a download: reads the staging file as the progress on its stdin says it grows', () => {
  const sandbox = () => createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
  /** A staging file written in pieces, each announced once on disk; `lines` replaces the announcements. */
  function download(name: string, options: { stopAt?: number; lines?: string[] } = {}) {
    const bytes = tinyModelBytes();
    const path = join(dir, name);
    writeFileSync(path, Buffer.alloc(0), { mode: 0o600 });
    const progress = new PassThrough();
    const controller = new AbortController();
    const feed = async () => {
      if (options.lines) {
        for (const line of options.lines) progress.write(line);
        return;
      }
      const stopAt = options.stopAt ?? bytes.length;
      for (let at = 0; at < stopAt; ) {
        const n = Math.min(3000, stopAt - at);
        appendFileSync(path, bytes.subarray(at, at + n));
        at += n;
        progress.write(`${at}\n`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const scanned = sandbox().scanFollowing!(path, { ...job(), follow: { sizeBytes: bytes.length } }, { progress, signal: controller.signal, timeoutMs: 0 });
    return { scanned, feed, progress, controller };
  }

  it('the same verdicts as over the finished file', async () => {
    const { scanned, feed, progress } = download('followed.gguf');
    await feed();
    progress.end();
    const { sandbox: stage, outcome } = await scanned;
    expect(stage).toMatchObject({ stage: 'Sandbox', status: 'passed' });
    const whole = await sandbox().scan(artifact, job(), statSync(artifact).size);
    expect(outcome?.stages).toEqual(whole.outcome?.stages);
    expect(outcome?.facts).toMatchObject({ sha256, sizeBytes: whole.outcome?.facts.sizeBytes });
  }, 30_000);

  it.each([
    ['a download that ends short', { stopAt: 5000 }],
    ['a progress line that is not a byte count', { lines: ['100\n', 'x\n'] }],
    ['progress that goes back', { lines: ['100\n', '50\n'] }],
    ['progress past the size', { lines: ['99999999\n'] }],
  ] as [string, { stopAt?: number; lines?: string[] }][])('rejects %s (the scanner exits)', async (name, options) => {
    const { scanned, feed, progress } = download(`bad-${name.replace(/ /g, '-')}.gguf`, options);
    await feed();
    progress.end();
    expect((await scanned).sandbox).toMatchObject({ status: 'failed', reason: Reason.ScannerCrashed });
  }, 30_000);

  it('is killed when the download fails', async () => {
    const { scanned, progress, controller } = download('abandoned.gguf');
    progress.write('0\n');
    await new Promise((r) => setTimeout(r, 300));
    controller.abort();
    expect((await scanned).sandbox).toMatchObject({ status: 'failed', reason: Reason.ScannerKilled });
  }, 30_000);
});

it('runs the tensor-tree job and returns the tree the scanner code computes in-process', async () => {
  const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner });
  const { sandbox: stage, outcome } = await sandbox.tensorTree(artifact, statSync(artifact).size);
  expect(stage).toMatchObject({ stage: 'Sandbox', status: 'passed' });
  const local = await computeTensorTree(artifact);
  expect(outcome).toMatchObject({ status: 'ok', sizeBytes: local.sizeBytes, tensorCount: local.tensorCount, tensorMerkleRoot: local.tensorMerkleRoot });
}, 30_000);

it('gives the child no network, no credentials, no capabilities, a read-only artifact and project', async () => {
  // A listener on the host's loopback: inside its own network namespace the child cannot reach it.
  const server = createServer((s) => s.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  try {
    const { command, args } = sandboxCommand({
      projectRoot: PROJECT,
      nodeBinary: realpathSync(process.execPath),
      bwrap: 'bwrap',
      artifactPath: artifact,
      limits: { addressSpaceBytes: 16 * 1024 ** 3, dataBytes: 2 * 1024 ** 3, fileSizeBytes: 1024 ** 2, cpuSeconds: 30 },
      entry: PROBE,
      entryArgs: ['isolation', String(port)],
    });
    const result = await runCommand(command, args, { timeoutMs: 20_000 });
    expect(result.code).toBe(0);
    const printed = result.stdout;
    const seen = JSON.parse(printed);
    expect(seen).toMatchObject({
      uid: 65534,
      // bwrap sets PWD from --chdir; nothing of the agent's environment gets through.
      env: ['PATH', 'PWD'],
      interfaces: ['lo'],
      hostLoopback: 'ECONNREFUSED',
      capEff: '0000000000000000',
      noNewPrivs: '1',
      readArtifact: 'allowed',
      writeArtifact: 'EROFS',
      writeProject: 'EROFS',
      writeTmp: 'allowed',
      rootVisible: 'ENOENT',
      etcVisible: 'ENOENT',
    });
    expect(seen.pids).toBeLessThanOrEqual(3);
    // The scanner's code and dependencies only: no lab kubeconfigs, no test PKI, no other sources.
    expect(seen.project.filter((p: string) => !['agents', 'node_modules', 'package.json', 'test', 'tsconfig.json'].includes(p))).toEqual([]);
    expect(existsSync(join(PROJECT, 'sandbox-probe-was-here'))).toBe(false);
  } finally {
    server.close();
  }
}, 30_000);

describe('turns every way the child can fail into a rejection', () => {
  it.each([
    ['a non-zero exit', ['exit', '7'], {}, Reason.ScannerCrashed],
    ['an abort (a crash by signal)', ['abort'], {}, Reason.ScannerKilled],
    // Node turns a refused allocation and a refused write (it ignores SIGXFSZ) into exceptions: exit 1.
    ['memory beyond the data limit', ['memory'], { dataBytes: 1.5 * 1024 ** 3 }, Reason.ScannerCrashed],
    ['CPU beyond the limit', ['hang'], { cpuSeconds: 1, cpuSecondsPerGiB: 0 }, Reason.ScannerKilled],
    ['a file beyond the file-size limit', ['file-size'], { fileSizeBytes: 1024 * 1024 }, Reason.ScannerCrashed],
    ['a hang past the timeout', ['hang'], { timeoutMs: 1500, timeoutMsPerGiB: 0 }, Reason.ScannerTimedOut],
    ['output that is not an outcome', ['garbage'], {}, Reason.ScannerOutputInvalid],
  ] as const)('%s', async (_name, args, limits, reason) => {
    const started = Date.now();
    const { sandbox: stage, outcome } = await probe([...args], limits).scan(artifact, job(), 1);
    expect(stage).toMatchObject({ stage: 'Sandbox', status: 'failed', reason });
    expect(outcome).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 90_000);

  it('a missing sandbox tool', async () => {
    const sandbox = createScannerSandbox({ exec: runCommand, policy: DEFAULT_QUARANTINE_POLICY.scanner, prlimit: join(dir, 'no-such-prlimit') });
    expect((await sandbox.scan(artifact, job(), 1)).sandbox).toMatchObject({ status: 'failed', reason: Reason.SandboxUnavailable });
  });
});

it('builds the command with limits first and the artifact bound read-only', () => {
  const { command, args } = sandboxCommand({ projectRoot: PROJECT, nodeBinary: '/usr/bin/node', bwrap: 'bwrap', artifactPath: '/data/a.gguf', limits: { addressSpaceBytes: 1, dataBytes: 2, fileSizeBytes: 3, cpuSeconds: 4 } });
  expect(command).toBe('prlimit');
  expect(args.slice(0, 7)).toEqual(['--as=1', '--data=2', '--fsize=3', '--cpu=4', '--core=0', '--nofile=256', '--']);
  const ro = args.indexOf('/data/a.gguf');
  expect(args.slice(ro - 1, ro + 2)).toEqual(['--ro-bind', '/data/a.gguf', '/quarantine/artifact']);
  for (const flag of ['--unshare-all', '--clearenv', '--die-with-parent', '--disable-userns']) expect(args).toContain(flag);
  expect(args.slice(args.indexOf('--cap-drop'), args.indexOf('--cap-drop') + 2)).toEqual(['--cap-drop', 'ALL']);
});

it('mounts its /tmp before any bind, and the project at a fixed path, wherever the checkout is', () => {
  const { args } = sandboxCommand({ projectRoot: '/tmp/checkout', nodeBinary: '/usr/bin/node', bwrap: 'bwrap', artifactPath: '/tmp/staging/a.gguf', limits: { addressSpaceBytes: 1, dataBytes: 2, fileSizeBytes: 3, cpuSeconds: 4 } });
  const tmpfs = args.indexOf('--tmpfs');
  expect(args[tmpfs + 1]).toBe('/tmp');
  expect(args.lastIndexOf('--tmpfs')).toBe(tmpfs);
  expect(tmpfs).toBeLessThan(args.indexOf('--ro-bind'));
  // The code at a fixed path on the read-only root, not where the checkout is.
  const code = args.indexOf('/tmp/checkout/agents/src/quarantine');
  expect(args.slice(code - 1, code + 2)).toEqual(['--ro-bind', '/tmp/checkout/agents/src/quarantine', `${SANDBOX_PROJECT_PATH}/agents/src/quarantine`]);
  expect(args.slice(args.indexOf('--chdir'), args.indexOf('--chdir') + 2)).toEqual(['--chdir', SANDBOX_PROJECT_PATH]);
});
