// Starts hack/cluster/control-plane-here.ts in a lab network namespace as one process (node with
// tsx as a loader, not the tsx launcher, whose child would outlive a killed parent): it dies with
// the caller (the harness's pdeathsig) and takes etcd and kube-apiserver with it (theirs).
import { join } from 'node:path';
import type { NetnsHarness, NetnsProcess } from '../../test/support/netns.js';
import { REPO_ROOT } from '../control-plane/control-plane.js';

export function startControlPlaneIn(harness: NetnsHarness, netns: string, dir: string, address?: string): NetnsProcess {
  return harness.spawn(netns, process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'hack/cluster/control-plane-here.ts'), dir, ...(address ? [address] : [])], { cwd: REPO_ROOT });
}
