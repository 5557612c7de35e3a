// The project's images, built for real without Docker (hack/images/build.sh: mmdebstrap, umoci,
// cosign against a loopback registry): built twice from the same inputs they have the same
// digests; the secai-fleet image, imported into a real containerd only after its signature
// verifies, runs the operator and the agent under runc, as the operator's non-root user by default,
// with the native helpers already compiled in the image (a read-only root finds them).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../agents/src/exec.js';
import { ContainerdNode } from '../../hack/cluster/containerd.js';
import { REPO_ROOT } from '../../hack/control-plane/control-plane.js';
import { NetnsHarness } from '../support/netns.js';

const BUILD = join(REPO_ROOT, 'hack/images/build.sh');
const IMPORT = join(REPO_ROOT, 'hack/images/import.sh');
const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = `ghcr.io/secai-fleet/secai-fleet:${VERSION}`;
const NODE_VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules/node/package.json'), 'utf8')) as { version: string }).version;
// A cold build downloads the Debian packages (~110 MB) on two shared cores.
const BUILD_TIMEOUT_MS = 20 * 60_000;

let work: string;
let first: string;
let second: string;
const buildSeconds: number[] = [];
let harness: NetnsHarness;
let node: ContainerdNode;

function build(out: string, key?: string): void {
  const started = Date.now();
  execFileSync(BUILD, [out], {
    env: { ...process.env, SOURCE_DATE_EPOCH: '1767225600', ...(key ? { COSIGN_KEY: key } : {}) },
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: BUILD_TIMEOUT_MS,
  });
  buildSeconds.push(Math.round((Date.now() - started) / 1000));
}

function digest(dir: string, name: string): string {
  return readFileSync(join(dir, `${name}.digest`), 'utf8').trim();
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'secai-images-'));
  first = join(work, 'first');
  second = join(work, 'second');
  build(first);
  build(second, join(first, 'cosign.key'));
  process.stderr.write(
    `image builds: ${buildSeconds.join(' s, ')} s; secai-fleet ${digest(first, 'secai-fleet')} (${statSync(join(first, 'secai-fleet.oci.tar')).size} bytes), pause ${digest(first, 'pause')} (${statSync(join(first, 'pause.oci.tar')).size} bytes)\n`,
  );
  harness = await NetnsHarness.create({ prefix: 'sfoci' });
  node = new ContainerdNode({ name: 'images', root: join(work, 'node'), netns: await harness.addNamespace('node'), harness, namespace: `secai-im-${process.pid}` });
  await node.start();
  const imported = await runCommand(IMPORT, ['--address', join(node.root, 'run/containerd/containerd.sock'), '--namespace', node.namespace, join(first, 'cosign.pub'), first, 'secai-fleet', 'pause'], {
    timeoutMs: 300_000,
  });
  if (imported.code !== 0) throw new Error(`import failed: ${imported.stderr}`);
}, 3 * BUILD_TIMEOUT_MS);

afterAll(async () => {
  await node?.stop();
  await harness?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

it.each(['secai-fleet', 'pause'])('%s: the same inputs give the same digest and the same archive', (name) => {
  expect(digest(first, name)).toMatch(/^sha256:[0-9a-f]{64}$/);
  expect(digest(second, name)).toBe(digest(first, name));
  const sum = (dir: string) => execFileSync('sha256sum', [join(dir, `${name}.oci.tar`)], { encoding: 'utf8' }).split(' ')[0];
  expect(sum(second)).toBe(sum(first));
});

it('records the epoch, not the build time, and the operator user by default', () => {
  const config = JSON.parse(readImageConfig(first, 'secai-fleet')) as {
    config: { User: string; WorkingDir: string; Env: string[] };
    created: string;
    history: { created: string; created_by: string }[];
  };
  expect(config.config.User).toBe('65532:65532');
  expect(config.config.WorkingDir).toBe('/opt/secai-fleet');
  expect(config.created).toBe('2026-01-01T00:00:00Z');
  expect(config.history.map((h) => [h.created, h.created_by])).toEqual([
    ['2026-01-01T00:00:00Z', 'mmdebstrap bookworm'],
    ['2026-01-01T00:00:00Z', 'hack/images/build.sh: /opt/secai-fleet'],
  ]);
});

// The image's config blob, found through the archive's index and manifest.
function readImageConfig(dir: string, name: string): string {
  const archive = join(dir, `${name}.oci.tar`);
  const blob = (d: string) => execFileSync('tar', ['-xOf', archive, `./blobs/sha256/${d.replace('sha256:', '')}`], { encoding: 'utf8' });
  const index = JSON.parse(execFileSync('tar', ['-xOf', archive, './index.json'], { encoding: 'utf8' })) as { manifests: [{ digest: string }] };
  const manifest = JSON.parse(blob(index.manifests[0].digest)) as { config: { digest: string } };
  return blob(manifest.config.digest);
}

// ctr warns on every run that containerd's cgroup v1 support is deprecated; nothing else may be on stderr.
async function run(id: string, args: readonly string[], options: readonly string[] = []) {
  const result = await node.ctr(['run', '--rm', ...options, IMAGE, id, ...args], 120_000);
  const stderr = result.stderr
    .split('\n')
    .filter((line) => !/level=warning msg="DEPRECATION: The support for cgroup v1/.test(line))
    .join('\n');
  return { ...result, stderr };
}

it('is in the runtime under its name, at the signed manifest', async () => {
  const listed = await node.ctrChecked(['images', 'ls']);
  const line = listed.split('\n').find((l) => l.startsWith(`${IMAGE} `));
  expect(line).toContain(digest(first, 'secai-fleet'));
});

it('runs Node 24 from the npm package as uid 65532', async () => {
  const result = await run('node-version', ['node', '-e', 'console.log(process.version, process.getuid(), process.getgid())']);
  expect(result.stderr).toBe('');
  expect(result.stdout.trim()).toBe(`v${NODE_VERSION} 65532 65532`);
});

it('loads the operator bundle with its production dependencies', async () => {
  // An unknown flag: parseArgs refuses it after every module of the bundle has loaded.
  const result = await run('operator-args', ['node', 'dist/operator.mjs', '--no-such-flag']);
  expect(result.code).not.toBe(0);
  expect(result.stderr).toContain("Unknown option '--no-such-flag'");
  expect(result.stderr).not.toMatch(/Cannot find (module|package)/);
});

it('loads the agent with its production dependencies, as root', async () => {
  const result = await run('agent-args', ['node', '--import', 'tsx', 'agents/src/cmd/agent.ts', '--no-such-flag'], ['--user', '0:0']);
  expect(result.code).toBe(2);
  expect(result.stderr).toContain("Unknown option '--no-such-flag'");
});

it('finds the native helpers compiled at build time, on a read-only root', async () => {
  for (const [i, script] of ['agents/src/egress/build-set-element-reader.ts', 'agents/src/egress/build-nft-session.ts', 'agents/src/sandbox/build-landlock-launcher.ts'].entries()) {
    // As the chart runs the agent: read-only root, /tmp an emptyDir (tsx keeps its cache there).
    const result = await run(`helper-${i}`, ['node', '--import', 'tsx', script], ['--read-only', '--mount', 'type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev', '--user', '0:0']);
    expect(result.stderr).toBe('');
    expect(result.stdout.split('\n')[0]).toMatch(/^\/opt\/secai-fleet\/native\/(nft-set-elements|nft-session|landlock-exec)\/[0-9a-f]{32}\/(nft-set-elements|nft-session|landlock-exec)$/);
  }
});

it('names protocols as nft lists them back (netbase: /etc/protocols)', async () => {
  // Without it nft prints `meta l4proto { 6, 17 }` for the `{ tcp, udp }` the agent wrote, and
  // the agent's read-back never matches its intent.
  const result = await run('protocols', ['getent', 'protocols', 'tcp', 'udp']);
  expect(result.stdout.split('\n').map((l) => l.split(/\s+/).slice(0, 2).join(' '))).toEqual(['tcp 6', 'udp 17', '']);
});

it('has no development dependencies', async () => {
  // (typescript is there: node-llama-cpp, a production dependency, depends on it.)
  const dev = ['jest', 'eslint', 'node', '@bufbuild/buf', 'fast-check', 'ts-proto'];
  const result = await run('dev-deps', ['sh', '-c', `ls -d ${dev.map((d) => `node_modules/${d}`).join(' ')} 2>&1; ls node_modules/tsx/package.json`]);
  expect(result.stdout).toContain('node_modules/tsx/package.json');
  for (const name of dev) expect(result.stdout).toContain(`cannot access 'node_modules/${name}'`);
});
