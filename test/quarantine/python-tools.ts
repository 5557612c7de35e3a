// The pinned Python tools (PyPI gguf, model-signing) from hack/python-tools: `make tools` builds the
// venv into the tools cache; a test that finds none builds it the same way (cached, seconds after
// the first time). SECAI_PYTHON_TOOLS names another venv with the same packages.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

/** The venv's bin directory (python, model_signing). */
export function pythonToolsBin(): string {
  if (process.env.SECAI_PYTHON_TOOLS) return join(process.env.SECAI_PYTHON_TOOLS, 'bin');
  const venv = join(ROOT, 'hack/bin/python-tools');
  if (!existsSync(join(venv, 'installed'))) execFileSync(join(ROOT, 'hack/python-tools/install.sh'), { stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 });
  return join(venv, 'bin');
}
