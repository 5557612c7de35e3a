// The sandbox an inference worker runs in: the system libraries, the Node binary, the agent's
// packages and the worker's own code read-only, the one model file read-only at a fixed path, a
// bounded tmpfs as the only writable place, and GPU device nodes only when GPU layers are asked for.
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { SandboxBind, SandboxSpec } from '../sandbox/bubblewrap.js';

/** Where the agent's code lives on the host; the worker sees it at the same paths. */
export interface WorkerInstallation {
  nodeBinary: string;
  packageRoot: string;
  /** Directory holding the worker's modules (this folder). */
  workerDir: string;
  entry: string;
  /** Preloaded module that lets Node's type stripping follow the project's `.js` import names. */
  resolutionHook: string;
}

export function workerInstallation(): WorkerInstallation {
  const workerDir = dirname(fileURLToPath(import.meta.url));
  const packageRoot = resolve(workerDir, '../../..');
  return {
    nodeBinary: realpathSync(process.execPath),
    packageRoot,
    workerDir,
    entry: join(workerDir, 'worker-main.ts'),
    resolutionHook: join(workerDir, 'worker-module-resolution.ts'),
  };
}

export const MODEL_PATH_INSIDE = '/model/model.gguf';
const SCRATCH = '/tmp';
const DEFAULT_SCRATCH_BYTES = 64 * 1024 * 1024;
const GPU_DEVICES = [
  '/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools', '/dev/nvidia-modeset',
  ...Array.from({ length: 8 }, (_, i) => `/dev/nvidia${i}`),
  '/dev/dri', '/dev/kfd',
];

export interface WorkerSandboxOptions {
  /** The model file on the host. */
  modelPath: string;
  installation: WorkerInstallation;
  gpu: boolean;
  scratchBytes?: number;
  /** Replaces the worker entry (containment tests run a probe in the identical sandbox). */
  argv?: readonly string[];
  exists?: (path: string) => boolean;
}

function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'));
}

export function inferenceWorkerSandboxSpec(options: WorkerSandboxOptions): SandboxSpec {
  const exists = options.exists ?? existsSync;
  const { installation: code } = options;
  const nodeModules = join(code.packageRoot, 'node_modules');
  const packageJson = join(code.packageRoot, 'package.json');
  const system = ['/usr', '/lib', '/lib64'].filter(exists);
  const binds: SandboxBind[] = [
    ...system.map((path) => ({ source: path, target: path })),
    { source: packageJson, target: packageJson },
    { source: nodeModules, target: nodeModules },
    { source: code.workerDir, target: code.workerDir },
  ];
  const nodeBinaryBound = [...system, nodeModules].some((dir) => isInside(code.nodeBinary, dir));
  if (!nodeBinaryBound) binds.push({ source: code.nodeBinary, target: code.nodeBinary });
  binds.push({ source: options.modelPath, target: MODEL_PATH_INSIDE });
  const devices = options.gpu ? GPU_DEVICES.filter(exists) : [];
  return {
    argv: options.argv ?? [code.nodeBinary, '--no-warnings', '--import', pathToFileURL(code.resolutionHook).href, code.entry],
    readOnlyBinds: binds,
    devices,
    symlinks: [],
    scratch: { path: SCRATCH, sizeBytes: options.scratchBytes ?? DEFAULT_SCRATCH_BYTES },
    env: { HOME: SCRATCH, TMPDIR: SCRATCH, PATH: '/usr/bin' },
    cwd: SCRATCH,
    landlock: {
      // node-llama-cpp starts a second node to test its binding, so node must be executable.
      readExec: [...system, code.nodeBinary],
      read: [packageJson, nodeModules, code.workerDir, MODEL_PATH_INSIDE, '/proc', '/dev'],
      write: [SCRATCH, '/dev/null'],
      devices,
    },
  };
}
