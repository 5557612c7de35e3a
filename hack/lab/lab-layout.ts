// Where everything of a lab lives: files under its directory, network namespaces, addresses and
// ports. Every address here belongs to a namespace the lab creates; the root namespace never dials
// any of them (it reaches agents' metrics through UNIX sockets, bridged to loopback).
import { join, resolve } from 'node:path';

export const LAB_NAMESPACE_PREFIX = 'seclab';
export const K8S_NAMESPACE = 'secai-system';
export const OPERATOR_SERVICE_ACCOUNT = 'secai-fleet-operator';
export const AGENT_SERVICE_ACCOUNT = 'secai-agent';
export const CHANNEL_SERVER_NAME = `secai-operator.${K8S_NAMESPACE}.svc`;

/** The upstream namespace's bridge address: the model server, the lab resolver, blocked ports. */
export const UPSTREAM_ADDRESS = '10.240.0.1';
/** A second upstream address no policy allows. */
export const OTHER_UPSTREAM_ADDRESS = '10.240.0.2';
export const UPSTREAM_PREFIX = 24;
export const MODEL_PORT = 8080;
export const BLOCKED_PORTS = [9000, 2222];
/** The private Tor network's relays, on the lab bridge; the upstream port reached only through Tor. */
export const TOR_RELAY_ADDRESS = '10.240.0.50';
export const TOR_UPSTREAM_PORT = 8443;
export const TOR_TRANS_PORT = 9040;
export const TOR_DNS_PORT = 9053;
export const DNS_PORT = 53;
/** The name the lab resolver answers, allowed by host in the lab EgressPolicy. */
export const MODEL_HOST = 'models.lab.secai.internal';
export const INFERENCE_PORT = 8000;
export const MODEL_FILE = 'secai-tiny.gguf';

export function nodeName(index: number): string {
  return `secai-lab-${index}`;
}

export function nodeAddress(index: number): string {
  return `10.240.0.${10 + index}`;
}

export interface LabPaths {
  dir: string;
  cluster: string;
  kubeconfig: string;
  operatorKubeconfig: string;
  topology: string;
  logs: string;
  state: string;
  supervisorPid: string;
  channelSocket: string;
  caFile: string;
  upstream: string;
  inferenceTokenFile: string;
  prometheus: string;
  node(name: string): {
    dir: string;
    state: string;
    audit: string;
    store: string;
    token: string;
    metricsSocket: string;
    tpm: string;
    vaultHeader: string;
    mapperDir: string;
    efiDir: string;
  };
}

export function labPaths(dir: string): LabPaths {
  const root = resolve(dir);
  return {
    dir: root,
    cluster: join(root, 'cluster'),
    kubeconfig: join(root, 'kubeconfig'),
    operatorKubeconfig: join(root, 'operator.kubeconfig'),
    topology: join(root, 'topology.json'),
    logs: join(root, 'logs'),
    state: join(root, 'state.json'),
    supervisorPid: join(root, 'supervisor.pid'),
    channelSocket: join(root, 'channel.sock'),
    caFile: join(root, 'channel-ca.crt'),
    upstream: join(root, 'upstream'),
    inferenceTokenFile: join(root, 'inference-token'),
    prometheus: join(root, 'prometheus'),
    node: (name: string) => {
      const nodeDir = join(root, 'nodes', name);
      return {
        dir: nodeDir,
        state: join(nodeDir, 'state'),
        audit: join(nodeDir, 'audit'),
        store: join(nodeDir, 'models'),
        token: join(nodeDir, 'token'),
        metricsSocket: join(nodeDir, 'metrics.sock'),
        tpm: join(nodeDir, 'tpm'),
        vaultHeader: join(nodeDir, 'vault.luks'),
        mapperDir: join(nodeDir, 'mapper'),
        efiDir: join(nodeDir, 'efi'),
      };
    },
  };
}

/** The boot event log a lab node's simulated firmware leaves (the agent's --event-log). */
export function labEventLog(node: { dir: string }): string {
  return join(node.dir, 'binary_bios_measurements');
}
