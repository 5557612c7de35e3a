// The rest of a control plane beside hack/control-plane's etcd and kube-apiserver: the pinned
// kube-controller-manager and kube-scheduler, and kube-proxy for a node, each with a client
// certificate of the control plane's CA whose name RBAC's bootstrap policy already grants
// (system:kube-controller-manager, system:kube-scheduler, system:kube-proxy). They run in the lab
// namespace the caller gives (`spawn`), so they reach the API server only on that namespace's
// addresses.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { NetnsProcess } from '../../test/support/netns.js';
import { HACK_BIN, issueClientCertificate } from '../control-plane/control-plane.js';
import { kubeletKubeconfig } from './test-images.js';

export type Spawn = (command: string, args: readonly string[]) => NetnsProcess;

/** A kubeconfig for `cn` (groups `groups`) at `server`, its certificate issued by the CA in `pki`. */
export async function componentKubeconfig(pki: string, server: string, name: string, cn: string, groups: string[] = []): Promise<string> {
  const { cert, key } = await issueClientCertificate(pki, name, cn, groups);
  const path = join(pki, `${name}.kubeconfig`);
  await writeFile(path, kubeletKubeconfig({ server, 'certificate-authority': join(pki, 'ca.crt') }, { name, user: { 'client-certificate': cert, 'client-key': key } }), { mode: 0o600 });
  return path;
}

/**
 * kube-controller-manager: one controller client per controller (its own ServiceAccount, tokens by
 * TokenRequest), the root CA published to every namespace (kube-root-ca.crt, which projected
 * ServiceAccount volumes read), no serving port, no leader election (one instance).
 */
export async function startControllerManager(spawn: Spawn, pki: string, server: string): Promise<NetnsProcess> {
  const kubeconfig = await componentKubeconfig(pki, server, 'controller-manager', 'system:kube-controller-manager');
  return spawn(join(HACK_BIN, 'kube-controller-manager'), [
    `--kubeconfig=${kubeconfig}`,
    '--use-service-account-credentials=true',
    `--service-account-private-key-file=${join(pki, 'sa.key')}`,
    `--root-ca-file=${join(pki, 'ca.crt')}`,
    '--cluster-name=secai-lab',
    '--leader-elect=false',
    '--secure-port=0',
    '--v=1',
  ]);
}

export async function startScheduler(spawn: Spawn, pki: string, server: string): Promise<NetnsProcess> {
  const kubeconfig = await componentKubeconfig(pki, server, 'scheduler', 'system:kube-scheduler');
  return spawn(join(HACK_BIN, 'kube-scheduler'), [`--kubeconfig=${kubeconfig}`, '--leader-elect=false', '--secure-port=0', '--v=1']);
}

/**
 * kube-proxy in nftables mode (there is no iptables here) for one node: Service addresses and node
 * ports rewritten in that node's namespace only. It leaves the namespace's conntrack limits alone
 * (a network namespace cannot set them).
 */
export async function startKubeProxy(spawn: Spawn, pki: string, server: string, options: { node: string; dir: string; clusterCidr: string; nodePortAddresses: string[] }): Promise<NetnsProcess> {
  const kubeconfig = await componentKubeconfig(pki, server, `kube-proxy-${options.node}`, 'system:kube-proxy');
  const config = join(options.dir, `kube-proxy-${options.node}.yaml`);
  await writeFile(
    config,
    stringify({
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'nftables',
      clientConnection: { kubeconfig },
      hostnameOverride: options.node,
      clusterCIDR: options.clusterCidr,
      nodePortAddresses: options.nodePortAddresses,
      healthzBindAddress: '127.0.0.1:10256',
      metricsBindAddress: '127.0.0.1:10249',
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    }),
  );
  return spawn(join(HACK_BIN, 'kube-proxy'), [`--config=${config}`, '--v=1']);
}
