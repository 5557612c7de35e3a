// The verified images in a node's runtime, as the cluster tests need them: built by
// hack/images/build.sh into `work` (or taken from SECAI_TEST_IMAGES, a directory `make images`
// filled, to skip the build while working on a test), then imported by hack/images/import.sh,
// which verifies each signature first.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { runCommand } from '../../agents/src/exec.js';
import { REPO_ROOT } from '../control-plane/control-plane.js';
import type { ContainerdNode } from './containerd.js';

const run = promisify(execFile);
const builds = new Map<string, Promise<void>>();

/**
 * Builds both images into `dir` once per process (nodes that import concurrently share the build).
 * `epoch` (SOURCE_DATE_EPOCH) other than the default gives the same content other file times, so
 * another digest: a "new release" for an upgrade.
 */
export function buildImages(dir: string, epoch?: number): Promise<void> {
  let build = builds.get(dir);
  if (!build) {
    const env = { ...process.env, ...(epoch === undefined ? {} : { SOURCE_DATE_EPOCH: String(epoch) }) };
    build = run(join(REPO_ROOT, 'hack/images/build.sh'), [dir], { env, timeout: 20 * 60_000, maxBuffer: 64 * 1024 * 1024 }).then(() => undefined);
    builds.set(dir, build);
  }
  return build;
}

/** The directory of the images the tests run: SECAI_TEST_IMAGES, or built into `work/images`. */
export async function testImages(work: string): Promise<string> {
  const given = process.env.SECAI_TEST_IMAGES;
  if (given) return given;
  const dir = join(work, 'images');
  await buildImages(dir);
  return dir;
}

/** The manifest digest of a built image (`sha256:…`), as the chart's image.digest takes it. */
export function imageDigest(images: string, name = 'secai-fleet'): string {
  return readFileSync(join(images, `${name}.digest`), 'utf8').trim();
}

export async function importVerifiedImages(node: ContainerdNode, work: string, images?: string): Promise<void> {
  const dir = images ?? (await testImages(work));
  const imported = await runCommand(
    join(REPO_ROOT, 'hack/images/import.sh'),
    ['--address', join(node.root, 'run/containerd/containerd.sock'), '--namespace', 'k8s.io', join(dir, 'cosign.pub'), dir, 'secai-fleet', 'pause'],
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
