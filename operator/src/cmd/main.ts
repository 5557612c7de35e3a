// The operator process. Flags (or environment): --kubeconfig (KUBECONFIG), --namespace
// (POD_NAMESPACE), --fleet-node-selector, --metrics-bind-address, --leader-elect,
// --leader-election-id, --identity (POD_NAME), --log-level, and the agent channel: --channel-listen
// (repeatable; none disables the channel), --channel-dns-name (repeatable), --channel-tls-secret,
// --agent-ca-configmap, --agent-service-account, --channel-endpoint-service (a selector-less Service
// the leader points at its own POD_IP), and remote attestation: --attestation-interval-seconds,
// --attestation-ek-ca (a PEM bundle of EK CAs). Logs are JSON lines on stdout.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { parseCertificateBundle } from '../attestation/enrolment.js';
import { DEFAULT_FLEET_SELECTOR } from '../fleet/names.js';
import { GracefulShutdown } from '../runtime/shutdown.js';
import { DEFAULT_LEASE_NAME, startOperator } from './operator.js';

const OPERATOR_VERSION = '0.1.0';

// Node 24 carves small Buffers out of shared 64 KiB slabs, and a slab lives as long as any slice of
// it. Every agent's TLS socket keeps a few bytes (its ALPN list) for the connection's lifetime, so at
// 1,000 agents some 140 slabs (9 MB) stayed pinned (heap snapshot); the 8 KiB slabs of earlier Node
// versions pin an eighth of that.
Buffer.poolSize = 8 * 1024;

const { values } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    namespace: { type: 'string' },
    'fleet-node-selector': { type: 'string' },
    'metrics-bind-address': { type: 'string' },
    'leader-elect': { type: 'string' },
    'leader-election-id': { type: 'string' },
    identity: { type: 'string' },
    'log-level': { type: 'string' },
    'status-refresh-seconds': { type: 'string' },
    'channel-listen': { type: 'string', multiple: true },
    'channel-dns-name': { type: 'string', multiple: true },
    'channel-tls-secret': { type: 'string' },
    'agent-ca-configmap': { type: 'string' },
    'agent-service-account': { type: 'string' },
    'channel-endpoint-service': { type: 'string' },
    'attestation-interval-seconds': { type: 'string' },
    'attestation-ek-ca': { type: 'string' },
  },
  strict: true,
});

const logger = pino({ level: values['log-level'] ?? process.env.LOG_LEVEL ?? 'info', base: { component: 'secai-fleet-operator' } });
const shutdown = new GracefulShutdown({ logger });
shutdown.trapSignals();

const refreshSeconds = Number(values['status-refresh-seconds'] ?? 300);
if (!Number.isFinite(refreshSeconds) || refreshSeconds < 1) {
  logger.fatal('--status-refresh-seconds must be a positive number');
  process.exit(2);
}

const attestationSeconds = Number(values['attestation-interval-seconds'] ?? 60);
if (!Number.isFinite(attestationSeconds) || attestationSeconds < 1) {
  logger.fatal('--attestation-interval-seconds must be a positive number');
  process.exit(2);
}
// A PEM bundle of the CAs that issue the fleet's EK certificates: with it, every EK must chain to one.
const ekCaFile = values['attestation-ek-ca'];
const ekCas = ekCaFile ? parseCertificateBundle(readFileSync(ekCaFile, 'utf8')) : undefined;
if (ekCaFile && !ekCas?.length) {
  logger.fatal(`--attestation-ek-ca ${ekCaFile} holds no PEM certificate`);
  process.exit(2);
}

const namespace = values.namespace ?? process.env.POD_NAMESPACE ?? 'secai-system';
const channelListen = values['channel-listen'] ?? ['0.0.0.0:9443'];
const endpointService = values['channel-endpoint-service'];
const podIP = process.env.POD_IP;
if (endpointService && (!podIP || channelListen.every((a) => a.startsWith('unix:')))) {
  logger.fatal('--channel-endpoint-service needs POD_IP in the environment and a TCP --channel-listen');
  process.exit(2);
}

try {
  const identity = values.identity ?? process.env.POD_NAME;
  // KUBECONFIG may list several files; the operator reads the first (it does not merge them).
  const kubeconfig = values.kubeconfig ?? process.env.KUBECONFIG?.split(':').find((p) => p !== '');
  const operator = await startOperator({
    ...(kubeconfig ? { kubeconfig } : {}),
    namespace,
    fleetSelector: values['fleet-node-selector'] ?? DEFAULT_FLEET_SELECTOR,
    metricsAddress: values['metrics-bind-address'] ?? ':8080',
    leaderElection: {
      enabled: (values['leader-elect'] ?? 'true') !== 'false',
      leaseName: values['leader-election-id'] ?? DEFAULT_LEASE_NAME,
      ...(identity ? { identity } : {}),
    },
    // controller-runtime exits at once when leadership is lost: another replica is already acting.
    onLeadershipLost: () => {
      logger.fatal('leader election lost; exiting');
      process.exit(1);
    },
    settings: { statusRefreshMs: refreshSeconds * 1000 },
    attestation: { intervalMs: attestationSeconds * 1000, ...(ekCas ? { ekCas } : {}) },
    ...(channelListen.length > 0 && channelListen[0] !== ''
      ? {
          channel: {
            listen: channelListen,
            dnsNames: values['channel-dns-name'] ?? [`secai-operator.${namespace}.svc`, `secai-operator.${namespace}.svc.cluster.local`],
            tlsSecret: values['channel-tls-secret'] ?? 'secai-channel-tls',
            caConfigMap: values['agent-ca-configmap'] ?? 'secai-agent-ca',
            agentServiceAccount: values['agent-service-account'] ?? 'secai-agent',
            version: OPERATOR_VERSION,
            ...(endpointService && podIP ? { endpoint: { service: endpointService, podIP } } : {}),
          },
        }
      : {}),
    logger,
  });
  shutdown.add('operator', () => operator.stop());
} catch (err) {
  logger.fatal({ err }, 'operator failed to start');
  process.exit(1);
}
