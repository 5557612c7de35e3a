import { inferenceWorkerSandboxSpec, MODEL_PATH_INSIDE, type WorkerInstallation } from './worker-sandbox.js';

const installation: WorkerInstallation = {
  nodeBinary: '/opt/agent/node_modules/node/bin/node',
  packageRoot: '/opt/agent',
  workerDir: '/opt/agent/agents/src/inference',
  entry: '/opt/agent/agents/src/inference/worker-main.ts',
  resolutionHook: '/opt/agent/agents/src/inference/worker-module-resolution.ts',
};
const present = new Set(['/usr', '/lib', '/lib64', '/dev/nvidiactl', '/dev/nvidia0']);
const exists = (path: string) => present.has(path);

describe('the inference worker sandbox', () => {
  const spec = inferenceWorkerSandboxSpec({ modelPath: '/vault/store/ab12.gguf', installation, gpu: false, exists });

  it('binds the one model read-only at a fixed path, and nothing else of the store', () => {
    expect(spec.readOnlyBinds).toContainEqual({ source: '/vault/store/ab12.gguf', target: MODEL_PATH_INSIDE });
    expect(spec.readOnlyBinds.filter((b) => b.source.startsWith('/vault'))).toHaveLength(1);
  });

  it('binds the agent code but not its whole installation', () => {
    const sources = spec.readOnlyBinds.map((b) => b.source);
    expect(sources).toEqual(expect.arrayContaining(['/opt/agent/node_modules', '/opt/agent/package.json', '/opt/agent/agents/src/inference']));
    expect(sources).not.toContain('/opt/agent');
    expect(sources).not.toContain('/opt/agent/agents/src');
  });

  it('writes only to its scratch tmpfs and /dev/null', () => {
    expect(spec.landlock.write).toEqual(['/tmp', '/dev/null']);
    expect(spec.scratch.path).toBe('/tmp');
    expect(spec.landlock.read).toContain(MODEL_PATH_INSIDE);
  });

  it('may execute only system paths and node', () => {
    expect(spec.landlock.readExec).toEqual(['/usr', '/lib', '/lib64', installation.nodeBinary]);
  });

  it('runs the worker on Node type stripping, not tsx', () => {
    expect(spec.argv).toEqual([installation.nodeBinary, '--no-warnings', '--import', `file://${installation.resolutionHook}`, installation.entry]);
  });

  it('has no devices on a CPU service and the present GPU devices otherwise', () => {
    expect(spec.devices).toEqual([]);
    const gpu = inferenceWorkerSandboxSpec({ modelPath: '/m', installation, gpu: true, exists });
    expect(gpu.devices).toEqual(['/dev/nvidiactl', '/dev/nvidia0']);
    expect(gpu.landlock.devices).toEqual(['/dev/nvidiactl', '/dev/nvidia0']);
  });

  it('clears the environment down to a home, a temp dir and a path', () => {
    expect(spec.env).toEqual({ HOME: '/tmp', TMPDIR: '/tmp', PATH: '/usr/bin' });
  });
});
