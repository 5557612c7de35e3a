// A kubelet for a node of hack/cluster/containerd.ts, in the node's network and mount namespaces,
// with every directory it writes under the node's root and its cgroups under a cgroup root of its
// own. Without a kubeconfig it runs standalone: only the static Pods of its manifest directory.
//
// cgroup v1: kubelet 1.35 and later refuse to start on cgroup v1 unless `failCgroupV1: false`; this
// machine has no cgroup v2 to offer, so the configuration sets it.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { NetnsProcess } from '../../test/support/netns.js';
import type { ContainerdNode } from './containerd.js';
import { HACK_BIN } from './containerd.js';

export interface KubeletPaths {
  rootDir: string;
  staticPods: string;
  podLogs: string;
  config: string;
  certs: string;
}

export function kubeletPaths(nodeRoot: string): KubeletPaths {
  const base = join(nodeRoot, 'kubelet');
  return {
    rootDir: join(base, 'lib'),
    staticPods: join(base, 'manifests'),
    podLogs: join(base, 'pods-log'),
    config: join(base, 'config.yaml'),
    certs: join(base, 'pki'),
  };
}

export interface KubeletApiOptions {
  /** The kubelet API's listen address (default 127.0.0.1); the node's own address for the API server. */
  address?: string;
  /**
   * The test control plane's API server presents no client certificate to kubelets (it has no
   * --kubelet-client-certificate), so a kubelet it must reach (`kubectl logs`) admits anonymous
   * requests and asks the API server (webhook: SubjectAccessReview, RBAC) whether each is allowed.
   */
  anonymousWithWebhookAuthorization?: boolean;
  /**
   * The control plane's CA: the kubelet then authenticates the API server by its client
   * certificate (and bearer tokens by TokenReview), refuses anonymous requests, and authorizes each
   * through the API server (SubjectAccessReview), so `kubectl logs` and `kubectl exec` work for
   * whom RBAC lets.
   */
  clientCaFile?: string;
}

function kubeletAuth(api: KubeletApiOptions): Record<string, unknown> {
  if (api.clientCaFile) {
    return {
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: api.clientCaFile } },
      authorization: { mode: 'Webhook' },
    };
  }
  return {
    authentication: { anonymous: { enabled: api.anonymousWithWebhookAuthorization === true }, webhook: { enabled: false } },
    authorization: { mode: api.anonymousWithWebhookAuthorization ? 'Webhook' : 'AlwaysAllow' },
  };
}

/** The KubeletConfiguration of a lab node. */
export function renderKubeletConfig(paths: KubeletPaths, cgroupRoot: string, api: KubeletApiOptions = {}): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    cgroupRoot,
    cgroupsPerQOS: true,
    containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
    staticPodPath: paths.staticPods,
    podLogsDir: paths.podLogs,
    address: api.address ?? '127.0.0.1',
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: 10248,
    failSwapOn: false,
    // Pods inherit no resolver of the machine's (only lab namespaces' addresses are ever dialled);
    // with no cluster DNS either, a lab Pod resolves nothing.
    resolvConf: '',
    ...kubeletAuth(api),
    // A lab node's disk is the host's: no evictions for its fill level.
    evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '0%', 'imagefs.available': '0%' },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    syncFrequency: '5s',
    fileCheckFrequency: '2s',
    localStorageCapacityIsolation: false,
  });
}

/** Starts the kubelet in the node's namespaces (through nsenter into containerd's). */
export async function startKubelet(
  node: ContainerdNode,
  spawn: (command: string, args: readonly string[]) => NetnsProcess,
  options: { kubeconfig?: string; nodeIp?: string; api?: KubeletApiOptions } = {},
): Promise<{ process: NetnsProcess; paths: KubeletPaths; cgroupRoot: string }> {
  const paths = kubeletPaths(node.root);
  for (const dir of [paths.rootDir, paths.staticPods, paths.podLogs, paths.certs]) await mkdir(dir, { recursive: true });
  const cgroupRoot = `/${node.namespace}-kubelet`;
  await node.addCgroupRoot(cgroupRoot);
  await writeFile(paths.config, renderKubeletConfig(paths, cgroupRoot, options.api));
  const process = spawn('nsenter', [
    '--target',
    String(node.pid),
    '--mount',
    '--',
    join(HACK_BIN, 'kubelet'),
    `--config=${paths.config}`,
    `--root-dir=${paths.rootDir}`,
    `--cert-dir=${paths.certs}`,
    `--hostname-override=${node.name}`,
    ...(options.kubeconfig ? [`--kubeconfig=${options.kubeconfig}`] : []),
    ...(options.nodeIp ? [`--node-ip=${options.nodeIp}`] : []),
    '--v=1',
  ]);
  return { process, paths, cgroupRoot };
}

/**
 * Waits until a kubelet started with a kubeconfig has registered its Node with the API server, or
 * fails within `timeoutMs` naming the node and what the kubelet last said about the API server (for
 * a server it cannot reach: the dial error). A kubelet that cannot register is killed: nothing of it
 * is left running.
 */
export async function waitForRegistration(nodeName: string, kubelet: NetnsProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = kubelet.stderr();
    if (/Successfully registered node/.test(log)) return;
    const exited = kubelet.child.exitCode !== null || kubelet.child.signalCode !== null;
    if (exited || Date.now() > deadline) {
      const cause = apiServerFailure(log);
      await kubelet.kill();
      throw Object.assign(
        new Error(
          exited
            ? `node ${nodeName}: the kubelet exited before registering with the API server: ${cause}`
            : `node ${nodeName}: the kubelet cannot reach the API server (not registered within ${timeoutMs} ms): ${cause}`,
        ),
        { log },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The kubelet's last word on the API server: its last registration or connection error. */
export function apiServerFailure(log: string): string {
  const lines = log.split('\n');
  const line = [...lines].reverse().find((l) => /Unable to register node|connection refused|dial tcp|no route to host|i\/o timeout|x509|Unauthorized|forbidden/i.test(l));
  if (!line) return lines.filter((l) => l.trim()).at(-1)?.trim() ?? '(no output)';
  const err = line.match(/err="((?:[^"\\]|\\.)*)"/)?.[1]?.replaceAll('\\"', '"');
  return err ?? line.trim();
}
