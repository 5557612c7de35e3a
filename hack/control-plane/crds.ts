// Installs (or upgrades) the CRDs with server-side apply and waits until the API server serves them.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, toolPath } from './control-plane.js';

const run = promisify(execFile);

export const CRD_DIR = join(REPO_ROOT, 'crds');

export async function installCrds(kubeconfig: string): Promise<void> {
  const kubectl = toolPath('kubectl');
  await run(kubectl, ['--kubeconfig', kubeconfig, 'apply', '--server-side', '--field-manager=secai-installer',
    '--force-conflicts', '-f', CRD_DIR]);
  // Discovery, not only the Established condition, decides whether clients can use the kinds.
  await run(kubectl, ['--kubeconfig', kubeconfig, 'wait', '--for=condition=Established', '--timeout=60s', 'crd', '-l', '', '--all']);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { stdout } = await run(kubectl, ['--kubeconfig', kubeconfig, 'api-resources', '--api-group=secai.io', '-o', 'name']);
    if (stdout.trim().split('\n').filter(Boolean).length >= 5) return;
    if (Date.now() > deadline) throw new Error(`secai.io kinds not served after 30 s: ${stdout}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
