// Proven containment of the inference worker. A probe runs in exactly the sandbox a worker gets
// (the worker's own spec, only the program swapped), inside the first of two test-created network
// namespaces whose second holds a listener the namespace itself can reach. The worker itself, run
// the same way, reports the same confinement from inside.
import { existsSync, mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSandboxed } from '../../agents/src/sandbox/bubblewrap.js';
import type { SandboxSupport } from '../../agents/src/sandbox/sandbox-support.js';
import { InferenceWorker } from '../../agents/src/inference/inference-worker.js';
import { inferenceWorkerSandboxSpec, MODEL_PATH_INSIDE, workerInstallation } from '../../agents/src/inference/worker-sandbox.js';
import { NetnsHarness, type NetnsProcess } from '../support/netns.js';
import { ModelDir, nodeSandbox, type ModelFile } from './inference-fixtures.js';

// TEST-NET-1 (RFC 5737) addresses, only ever inside the two test namespaces.
const WORKER_NS_ADDRESS = '192.0.2.1';
const PEER_ADDRESS = '192.0.2.2';
const PEER_PORT = 8080;

const installation = workerInstallation();
const models = new ModelDir();
let model: ModelFile;
let secretBesideModel: string;
let secretElsewhere: string;
let elsewhere: string;
let netns: NetnsHarness;
let workerNs: string;
let peer: NetnsProcess;
let hostListener: Server;
let hostPort: number;
let support: SandboxSupport;

beforeAll(async () => {
  support = await nodeSandbox();
  model = models.tiny();
  secretBesideModel = join(models.dir, 'secret-beside-model');
  writeFileSync(secretBesideModel, 'not for the worker');
  elsewhere = mkdtempSync(join(tmpdir(), 'secai-secret-'));
  secretElsewhere = join(elsewhere, 'secret');
  writeFileSync(secretElsewhere, 'not for the worker');

  netns = await NetnsHarness.create({ prefix: 'sfinf' });
  workerNs = await netns.addNamespace('worker');
  const peerNs = await netns.addNamespace('peer');
  await netns.connect(
    { namespace: workerNs, device: 'sfinf0', addresses: [`${WORKER_NS_ADDRESS}/30`] },
    { namespace: peerNs, device: 'sfinf1', addresses: [`${PEER_ADDRESS}/30`] },
  );
  peer = netns.spawn(peerNs, process.execPath, [
    '-e',
    `require('net').createServer((s) => s.end('peer')).listen(${PEER_PORT}, '${PEER_ADDRESS}', () => console.log('listening'))`,
  ]);
  await peer.waitForOutput(/listening/);

  hostListener = createServer((socket) => socket.end('host'));
  await new Promise<void>((resolve) => hostListener.listen(0, '127.0.0.1', resolve));
  hostPort = (hostListener.address() as { port: number }).port;
}, 60_000);

afterAll(async () => {
  await netns?.destroy();
  await new Promise((resolve) => (hostListener ? hostListener.close(resolve) : resolve(undefined)));
  models.remove();
  rmSync(elsewhere, { recursive: true, force: true });
});

const CONNECT = (host: string, port: number) => `await new Promise((resolve) => {
  const s = require('net').connect(${port}, '${host}');
  s.setTimeout(3000, () => { s.destroy(); resolve('ETIMEDOUT'); });
  s.on('data', (d) => { s.destroy(); resolve('connected:' + d); });
  s.on('error', (e) => resolve(e.code));
})`;

const probeScript = (hostPort: number) => String.raw`
(async () => {
  const fs = require('fs');
  const attempt = (fn) => { try { const v = fn(); return v === undefined ? 'ok' : v; } catch (e) { return e.code || String(e); } };
  const out = {
    peer: ${CONNECT(PEER_ADDRESS, PEER_PORT)},
    hostLoopback: ${CONNECT('127.0.0.1', hostPort)},
    readModel: attempt(() => 'bytes:' + fs.readFileSync('${MODEL_PATH_INSIDE}').length),
    readSecretBesideModel: attempt(() => fs.readFileSync(process.env.SECRET_BESIDE)),
    readSecretElsewhere: attempt(() => fs.readFileSync(process.env.SECRET_ELSEWHERE)),
    readPasswd: attempt(() => fs.readFileSync('/etc/passwd')),
    readOtherAgentCode: attempt(() => fs.readdirSync(process.env.OTHER_CODE)),
    listRoot: attempt(() => fs.readdirSync('/')),
    writeModel: attempt(() => fs.writeFileSync('${MODEL_PATH_INSIDE}', 'x')),
    writeModelDir: attempt(() => fs.writeFileSync('/model/new', 'x')),
    writeCode: attempt(() => fs.writeFileSync(process.env.CODE_DIR + '/planted.ts', 'x')),
    writeSystem: attempt(() => fs.writeFileSync('/usr/planted', 'x')),
    writeRoot: attempt(() => fs.writeFileSync('/planted', 'x')),
    writeDevShm: attempt(() => fs.writeFileSync('/dev/shm/planted', 'x')),
    writeScratch: attempt(() => fs.writeFileSync('/tmp/' + process.env.SCRATCH_NAME, 'x')),
  };
  process.stdout.write(JSON.stringify(out));
})();
`;

async function probe(layers: SandboxSupport, scratchName: string): Promise<Record<string, string>> {
  const spec = inferenceWorkerSandboxSpec({ modelPath: model.path, installation, gpu: false, argv: [installation.nodeBinary, '-e', probeScript(hostPort)] });
  const env = {
    ...spec.env,
    SECRET_BESIDE: secretBesideModel,
    SECRET_ELSEWHERE: secretElsewhere,
    OTHER_CODE: realpathSync(join(installation.workerDir, '..', 'agent')),
    CODE_DIR: installation.workerDir,
    SCRATCH_NAME: scratchName,
  };
  const { child } = spawnSandboxed({ ...spec, env }, layers, { prefix: ['ip', 'netns', 'exec', workerNs] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`probe exited ${code}: ${stderr}`);
  return JSON.parse(stdout) as Record<string, string>;
}

describe('the test network', () => {
  it('lets the worker namespace reach the peer listener without a sandbox', async () => {
    const result = await netns.run(workerNs, process.execPath, ['-e', `(async () => console.log(${CONNECT(PEER_ADDRESS, PEER_PORT)}))()`]);
    expect(result.stdout.trim()).toBe('connected:peer');
  });
});

describe('the inference worker sandbox', () => {
  let full: Record<string, string>;
  let namespacesOnly: Record<string, string>;

  beforeAll(async () => {
    full = await probe(support, 'full');
    namespacesOnly = await probe({ ...support, seccomp: { available: false, why: 'test' }, landlock: { available: false, why: 'test' } }, 'bare');
  }, 60_000);

  it('cannot connect to an address of the test namespace (its namespace alone: unreachable; seccomp: refused)', () => {
    expect(full.peer).toBe('EPERM');
    expect(namespacesOnly.peer).toBe('ENETUNREACH');
  });

  it("cannot reach the host's loopback", () => {
    expect(full.hostLoopback).toBe('EPERM');
    expect(namespacesOnly.hostLoopback).toBe('ECONNREFUSED');
  });

  it('reads its model and nothing else of the host', () => {
    expect(full.readModel).toBe(`bytes:${model.sizeBytes}`);
    for (const key of ['readSecretBesideModel', 'readSecretElsewhere', 'readPasswd', 'readOtherAgentCode']) {
      expect({ key, result: full[key] }).toEqual({ key, result: 'ENOENT' });
      expect({ key, result: namespacesOnly[key] }).toEqual({ key, result: 'ENOENT' });
    }
    expect(full.listRoot).toBe('EACCES');
  });

  it('writes only to its scratch tmpfs', () => {
    for (const key of ['writeModel', 'writeModelDir', 'writeCode', 'writeSystem', 'writeRoot', 'writeDevShm']) {
      expect({ key, result: full[key] }).toEqual({ key, result: expect.stringMatching(/^(EROFS|EACCES)$/) });
    }
    expect(full.writeScratch).toBe('ok');
    expect(existsSync(join(tmpdir(), 'full'))).toBe(false);
    expect(readdirSync(installation.workerDir)).not.toContain('planted.ts');
  });
});

describe('the inference worker', () => {
  it('reports the same confinement from inside', async () => {
    const worker = await InferenceWorker.start({
      model: { path: model.path, sha256: model.sha256 },
      gpuLayers: 0,
      contextSize: 512,
      threads: 1,
      sequences: 1,
      sandbox: support,
      spawnPrefix: ['ip', 'netns', 'exec', workerNs],
    });
    try {
      // The namespace has sfinf0; the worker's own network namespace has only loopback.
      expect(worker.ready.containment).toEqual({ seccomp: true, landlock: true, networkInterfaces: ['lo'] });
    } finally {
      await worker.stop();
    }
  }, 60_000);
});
