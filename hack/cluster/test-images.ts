// The verified images in a node's runtime, as the cluster tests need them: built by
// hack/images/build.sh into `work` (or taken from SECAI_TEST_IMAGES, a directory `make images`
// filled, to skip the build while working on a test), then imported by hack/images/import.sh,
// which verifies each signature first.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { runCommand } from '../../agents/src/exec.js';
import { REPO_ROOT } from '../control-plane/control-plane.js';
import type { ContainerdNode } from './containerd.js';

export async function importVerifiedImages(node: ContainerdNode, work: string): Promise<void> {
  const images = process.env.SECAI_TEST_IMAGES ?? join(work, 'images');
  if (!process.env.SECAI_TEST_IMAGES) execFileSync(join(REPO_ROOT, 'hack/images/build.sh'), [images], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 20 * 60_000 });
  const imported = await runCommand(
    join(REPO_ROOT, 'hack/images/import.sh'),
    ['--address', join(node.root, 'run/containerd/containerd.sock'), '--namespace', 'k8s.io', join(images, 'cosign.pub'), images, 'secai-fleet', 'pause'],
    { timeoutMs: 300_000 },
  );
  if (imported.code !== 0) throw new Error(`import failed: ${imported.stderr}`);
}

/** A kubeconfig of one cluster, one user and one context, as a kubelet reads it. */
export function kubeletKubeconfig(cluster: Record<string, unknown>, user: { name: string; user: Record<string, unknown> }): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'lab', cluster }],
    users: [user],
    contexts: [{ name: 'lab', context: { cluster: 'lab', user: user.name } }],
    'current-context': 'lab',
  });
}
