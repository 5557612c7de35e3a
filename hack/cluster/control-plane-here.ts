// The test control plane (hack/control-plane) in whatever network namespace this runs in, for as long
// as this process lives: `ip netns exec NS tsx hack/cluster/control-plane-here.ts DIR [ADDRESS]`
// (ADDRESS: one of the namespace's own, for kubelets and Pods of other lab namespaces; see
// StartOptions.address). A node's
// kubelet in the same namespace reaches the API server on that namespace's loopback, and the API
// server reaches the kubelet on the node's own address, so no traffic crosses into the root
// namespace. Prints `ready <state json>` once the API server answers; SIGTERM stops and removes it.
import { startControlPlane, stopControlPlane } from '../control-plane/control-plane.js';

const [dir, address] = process.argv.slice(2);
if (!dir) {
  console.error('usage: control-plane-here.ts DIR [ADDRESS]');
  process.exit(2);
}
const state = await startControlPlane({ dir, detached: false, ...(address ? { address } : {}) });
console.log(`ready ${JSON.stringify(state)}`);
const stop = () => void stopControlPlane(dir).finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1 << 30);
