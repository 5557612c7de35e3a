// The custom resources the lab applies: the tiny model served by the upstream namespace, an egress
// policy that allows exactly the model server and the lab resolver (and not the blocked ports), the
// vault policy the lab vaults satisfy, and an InferenceService on every node.
import { createHash } from 'node:crypto';
import { API_VERSION } from '../../api/crd/common.js';
import { TpmAlg } from '../../operator/src/attestation/tpm-structures.js';
import { expectedPcrs, simulatedFirmwareBoot } from '../../test/attestation/event-log-writer.js';
import {
  INFERENCE_PORT,
  K8S_NAMESPACE,
  MODEL_FILE,
  MODEL_HOST,
  MODEL_PORT,
  TOR_DNS_PORT,
  TOR_TRANS_PORT,
  TOR_UPSTREAM_PORT,
  UPSTREAM_ADDRESS,
} from './lab-layout.js';

export const LAB_MODEL = 'secai-tiny';
export const LAB_SERVICE = 'secai-tiny-chat';
export const LAB_TOKEN_SECRET = 'secai-tiny-chat-token';
/** PCR 7 after the lab's simulated UEFI boot with Secure Boot on (the same on every lab node). */
export const LAB_PCR7 = expectedPcrs(simulatedFirmwareBoot({ secureBoot: true }), TpmAlg.SHA256).get(7)!.toString('hex');

export interface LabObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [key: string]: unknown;
}

export function labSamples(model: Buffer, inferenceToken: string, tor: { dirAuthorities: string[]; relays: string[] }): LabObject[] {
  const sha256 = createHash('sha256').update(model).digest('hex');
  return [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: LAB_TOKEN_SECRET, namespace: K8S_NAMESPACE },
      stringData: { token: inferenceToken },
    },
    {
      apiVersion: API_VERSION,
      kind: 'Model',
      metadata: { name: LAB_MODEL },
      spec: {
        // The lab upstream serves plain http inside the lab's own namespaces; the digest pin holds.
        source: { url: `http://${UPSTREAM_ADDRESS}:${MODEL_PORT}/${MODEL_FILE}`, allowInsecureHTTP: true },
        format: 'gguf',
        sha256,
        sizeBytes: model.length,
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'EgressPolicy',
      metadata: { name: 'lab-egress' },
      spec: {
        mode: 'Enforce',
        allow: [
          { ip: UPSTREAM_ADDRESS, ports: [{ port: MODEL_PORT }], description: 'the lab model server' },
          { host: MODEL_HOST, ports: [{ port: MODEL_PORT }], description: 'the model server by name, resolved by the lab resolver' },
          { ip: UPSTREAM_ADDRESS, ports: [{ port: TOR_UPSTREAM_PORT }], via: 'Tor', description: 'reached only through the lab\'s private Tor network' },
        ],
        dns: { resolvers: [UPSTREAM_ADDRESS], queriesPerMinute: 600 },
        tor: { transPort: TOR_TRANS_PORT, dnsPort: TOR_DNS_PORT, network: { dirAuthorities: tor.dirAuthorities, relays: tor.relays, testingNetwork: true } },
        rollout: { canary: 1, maxUnavailable: '50%', stopOnFailure: true, progressDeadlineSeconds: 120 },
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'VaultPolicy',
      metadata: { name: 'lab-vault' },
      spec: {
        luks: { type: 'luks2', cipher: 'aes-xts-plain64', minKeySizeBits: 512, pbkdf: 'argon2id', minPbkdfMemoryKiB: 65536 },
        tpm2: { mode: 'Required', pcrBank: 'sha256', pcrs: [7] },
        autoLock: { idleMinutes: 30 },
        relockOnIncident: true,
        attestation: { requireSecureBoot: false, expectedPcrs: [{ index: 7, value: LAB_PCR7 }] },
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'InferenceService',
      metadata: { name: LAB_SERVICE },
      spec: {
        modelRef: { name: LAB_MODEL },
        engine: 'llamacpp',
        resources: { gpuLayers: 0, contextSize: 256, threads: 1, parallelRequests: 1, queueDepth: 8 },
        listen: { port: INFERENCE_PORT, authTokenSecretRef: { namespace: K8S_NAMESPACE, name: LAB_TOKEN_SECRET, key: 'token' } },
      },
    },
  ];
}
