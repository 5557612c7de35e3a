// make cluster-up / cluster-down: a standalone control plane for people, kubeconfig in .lab/kubeconfig.
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, startControlPlane, stopControlPlane } from './control-plane.js';
import { installCrds } from './crds.js';

const LAB = join(REPO_ROOT, '.lab');
const DIR = join(LAB, 'cluster');
const KUBECONFIG = join(LAB, 'kubeconfig');

async function up(): Promise<void> {
  mkdirSync(LAB, { recursive: true });
  const state = await startControlPlane({ dir: DIR, detached: true, log: (line) => console.log(line) });
  copyFileSync(state.kubeconfig, KUBECONFIG);
  const crdStart = Date.now();
  await installCrds(KUBECONFIG);
  console.log(`CRDs installed in ${Date.now() - crdStart} ms`);
  console.log(`control plane started in ${state.startupMs} ms`);
  console.log(`export KUBECONFIG=${KUBECONFIG}`);
  console.log('kubectl get crd -l "" ; kubectl get secai');
}

/** `down` removes the standalone control plane; `down <dir>` any other one (the test runner's). */
async function down(): Promise<void> {
  const dir = process.argv[3];
  await stopControlPlane(dir ?? DIR);
  if (!dir && existsSync(KUBECONFIG)) rmSync(KUBECONFIG);
  console.log('control plane stopped and removed');
}

const command = process.argv[2];
const action = command === 'up' ? up : command === 'down' ? down : undefined;
if (!action) {
  console.error('usage: cli.ts up | down [dir]');
  process.exit(2);
}
action().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
