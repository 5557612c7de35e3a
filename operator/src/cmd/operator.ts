// Assembles the operator: client, caches, shared fleet state, the five controllers, metrics and
// health endpoints, and leader election. Caches run on every replica (a standby is warm); the
// controllers run only on the leader.
import { hostname } from 'node:os';
import { randomBytes, type X509Certificate } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createEgressPolicyController } from '../controllers/egresspolicy/controller.js';
import { createAuditLogController } from '../controllers/auditlog/controller.js';
import { createEvidenceController } from '../controllers/evidence/controller.js';
import { ensureEvidenceKey, type EvidenceKey } from '../evidence/evidence-key.js';
import { createInferenceServiceController } from '../controllers/inferenceservice/controller.js';
import { createModelController } from '../controllers/model/controller.js';
import { createNodeController } from '../controllers/node/controller.js';
import { createVaultPolicyController } from '../controllers/vaultpolicy/controller.js';
import { resourcePath } from '../../../api/crd/paths.js';
import type { SecAINodeStatus } from '../../../api/gen/crd-types.js';
import { removeAnnotation } from '../attestation/annotations.js';
import { ATTESTATION_REENROL_ANNOTATION, AttestationVerifier } from '../attestation/attestation-verifier.js';
import { AuditVerdicts } from '../fleet/audit-verdicts.js';
import { FleetCaches } from '../fleet/caches.js';
import { lockVaultOnAuditFailure } from '../fleet/incident-lock.js';
import type { FleetContext, FleetSettings } from '../fleet/context.js';
import { NodeReportIntake } from '../fleet/intake.js';
import { FleetMetrics } from '../fleet/metrics.js';
import { DEFAULT_FLEET_SELECTOR, FIELD_MANAGER, REPORTING_CONTROLLER } from '../fleet/names.js';
import { PlanPublisher } from '../fleet/plan-publisher.js';
import { CacheReferenceResolver } from '../fleet/resolver.js';
import { RolloutRecords } from '../fleet/rollout-records.js';
import { ServicePlacement } from '../fleet/service-placement.js';
import { Applier } from '../runtime/apply.js';
import { TOKEN_AUDIENCE } from '../../../api/proto/protocol.js';
import { publishChannelEndpoint } from '../channel/channel-endpoint.js';
import { AgentChannelServer } from '../channel/server.js';
import { ensureChannelTls } from '../channel/tls-bootstrap.js';
import { systemClock } from '../runtime/clock.js';
import type { Controller } from '../runtime/controller.js';
import { KubeEventRecorder } from '../runtime/events.js';
import { startHealthServer, type HealthServer } from '../runtime/health-server.js';
import type { InformerOptions, KubeObject } from '../runtime/informer.js';
import { KubeClient } from '../runtime/kube-client.js';
import { LeaderElector } from '../runtime/leader-election.js';
import { RuntimeMetrics } from '../runtime/metrics.js';

export interface OperatorOptions {
  /** A kubeconfig file; without it ~/.kube/config, else the in-cluster ServiceAccount. */
  kubeconfig?: string;
  /** The operator's namespace: its Lease, rollout records, and the ConfigMaps and Secrets it may read. */
  namespace: string;
  fleetSelector?: string;
  /** `host:port` of /metrics, /healthz and /readyz (port 0: any free port). */
  metricsAddress?: string;
  leaderElection?: {
    enabled: boolean;
    identity?: string;
    leaseName?: string;
    leaseDurationMs?: number;
    renewDeadlineMs?: number;
    retryPeriodMs?: number;
  };
  /** Called when leadership is lost; the process should exit (main does). */
  onLeadershipLost?: () => void;
  logger?: Logger;
  settings?: Partial<Omit<FleetSettings, 'startedAt'>>;
  informerOptions?: Partial<InformerOptions<KubeObject>>;
  nodeControllerConcurrency?: number;
  /** The agent channel; served by the leader only, so agents always reach the replica with plans. */
  channel?: ChannelOptions;
  /** Remote attestation of nodes with a TPM (quotes every intervalMs, default 60 s). */
  attestation?: { intervalMs?: number; ekCas?: X509Certificate[]; nonceMaxAgeMs?: number };
}

export interface ChannelOptions {
  /** gRPC addresses: `0.0.0.0:9443`, `unix:///run/secai/channel.sock`. */
  listen: string[];
  /** DNS names in the serving certificate (the channel Service). */
  dnsNames: string[];
  /** The Secret with tls.crt, tls.key and ca.crt; made by the operator when absent. */
  tlsSecret: string;
  /** The ConfigMap agents read the CA bundle from. */
  caConfigMap: string;
  /** The ServiceAccount (in the operator's namespace) agent Pods run as. */
  agentServiceAccount: string;
  heartbeatSeconds?: number;
  version: string;
  /** In a cluster: the selector-less Service to point at this replica (its Pod IP) while it leads. */
  endpoint?: { service: string; podIP: string };
}

export interface OperatorHandle {
  /** The in-process interface the agent channel calls (reports, connections, plan subscriptions). */
  intake: NodeReportIntake;
  plans: PlanPublisher;
  registry: Registry;
  metricsPort: number;
  identity: string;
  /** The bound channel addresses once leading (TCP ports resolved). */
  channelAddresses(): string[];
  isLeader(): boolean;
  /** Resolves once this replica leads and its controllers run. */
  leading: Promise<void>;
  stop(): Promise<void>;
}

export const DEFAULT_LEASE_NAME = 'secai-fleet-operator';

export async function startOperator(opts: OperatorOptions): Promise<OperatorHandle> {
  const logger = opts.logger ?? pino({ base: { component: 'secai-fleet-operator' } });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const runtimeMetrics = new RuntimeMetrics(registry);
  const client = await KubeClient.load(opts.kubeconfig ? { file: opts.kubeconfig } : {}, {
    onResponse: (method, status) => runtimeMetrics.restClientRequests.inc({ method, code: String(status) }),
  });
  const identity = opts.leaderElection?.identity ?? `${hostname()}_${randomBytes(4).toString('hex')}`;
  const clock = systemClock;

  const caches = new FleetCaches({
    client,
    logger,
    namespace: opts.namespace,
    fleetSelector: opts.fleetSelector ?? DEFAULT_FLEET_SELECTOR,
    ...(opts.informerOptions ? { informerOptions: opts.informerOptions } : {}),
  });
  const plans = new PlanPublisher();
  let channel: AgentChannelServer | undefined;
  let evidenceKey: Promise<EvidenceKey> | undefined;
  const events = new KubeEventRecorder({ client, reportingController: REPORTING_CONTROLLER, reportingInstance: identity, logger });
  const applier = new Applier(client, FIELD_MANAGER);
  const intake = new NodeReportIntake({
    publisher: plans,
    clock,
    isEnrolled: (node) => caches.nodes.get(node) !== undefined && caches.secaiNodes.get(node) !== undefined,
  });
  const auditVerdicts = new AuditVerdicts((node) => {
    const cached = caches.secaiNodes.get(node);
    if (!cached?.metadata.uid) return undefined;
    return { uid: cached.metadata.uid, status: applier.observedStatus<SecAINodeStatus>(resourcePath('secainodes', node), cached) };
  });
  const attestation = new AttestationVerifier({
    observations: (node) => intake.observations(node),
    secaiNode: (node) => {
      const cached = caches.secaiNodes.get(node);
      return cached ? { object: cached, status: applier.observedStatus<SecAINodeStatus>(resourcePath('secainodes', node), cached) } : undefined;
    },
    vaultPlan: (node) => plans.current(node)?.plan.vault,
    clearReenrol: (node, value) => removeAnnotation(client, resourcePath('secainodes', node), ATTESTATION_REENROL_ANNOTATION, value),
    events,
    clock,
    logger,
    registry,
    ...opts.attestation,
  });
  intake.onChange((node) => attestation.kick(node));
  caches.secaiNodes.addHandler({ onUpdate: (_, n) => attestation.kick(n.metadata.name ?? '') });
  const fleetMetrics = new FleetMetrics(registry, {
    secaiNodes: () => caches.secaiNodes.list(),
    models: () => caches.models.list(),
    egressPolicies: () => caches.egressPolicies.list(),
    vaultPolicies: () => caches.vaultPolicies.list(),
  });
  const ctx: FleetContext = {
    client,
    applier,
    caches,
    resolver: new CacheReferenceResolver(opts.namespace, caches.configMaps, caches.secrets),
    plans,
    intake,
    auditVerdicts,
    attestation,
    rollouts: new RolloutRecords(caches.configMaps, opts.namespace),
    placement: new ServicePlacement(caches),
    events,
    clock,
    logger,
    namespace: opts.namespace,
    settings: {
      statusRefreshMs: opts.settings?.statusRefreshMs ?? 5 * 60_000,
      agentReconnectGraceMs: opts.settings?.agentReconnectGraceMs ?? 60_000,
      startedAt: clock.now(),
    },
    runtimeMetrics,
    fleetMetrics,
  };
  const controllers: Controller[] = [
    createNodeController(ctx, opts.nodeControllerConcurrency ? { maxConcurrentReconciles: opts.nodeControllerConcurrency } : {}),
    createModelController(ctx),
    createEgressPolicyController(ctx),
    createVaultPolicyController(ctx),
    createInferenceServiceController(ctx),
    createAuditLogController({
      verdicts: auditVerdicts,
      observations: (node) => intake.observations(node),
      commander: () => channel,
      clock,
      registry,
      intake,
      logger,
      runtimeMetrics,
      onFailure: (node, verdict) =>
        void lockVaultOnAuditFailure({ plans, commander: () => channel, secaiNode: (n) => caches.secaiNodes.get(n), events, logger }, node, verdict),
    }),
    createEvidenceController({
      client,
      namespace: opts.namespace,
      fieldManager: FIELD_MANAGER,
      secaiNodes: caches.secaiNodes,
      secaiNode: (node) => caches.secaiNodes.get(node),
      status: (node, cached) => applier.observedStatus<SecAINodeStatus>(resourcePath('secainodes', node), cached),
      observations: (node) => intake.observations(node),
      commander: () => channel,
      // Made on first use: an operator that is never asked for evidence needs no key.
      key: () => (evidenceKey ??= ensureEvidenceKey(client, opts.namespace, FIELD_MANAGER)),
      events,
      clock,
      intake,
      logger,
      runtimeMetrics,
    }),
  ];

  let controllersRunning = false;
  let health: HealthServer | undefined;
  let elector: LeaderElector | undefined;
  let markLeading!: () => void;
  const leading = new Promise<void>((resolve) => (markLeading = resolve));
  let channelAddresses: string[] = [];
  const startChannel = async (options: ChannelOptions) => {
    const tls = await ensureChannelTls(client, {
      namespace: opts.namespace,
      secretName: options.tlsSecret,
      caConfigMapName: options.caConfigMap,
      dnsNames: options.dnsNames,
      fieldManager: FIELD_MANAGER,
    });
    channel = new AgentChannelServer({
      client,
      identity: { audience: TOKEN_AUDIENCE, serviceAccount: { namespace: opts.namespace, name: options.agentServiceAccount } },
      backend: intake,
      tls,
      listen: options.listen,
      ...(options.heartbeatSeconds ? { heartbeatSeconds: options.heartbeatSeconds } : {}),
      operatorVersion: options.version,
      logger: logger.child({ component: 'agent-channel' }),
      registry,
    });
    channelAddresses = await channel.start();
    attestation.attach(channel);
    if (options.endpoint) {
      const tcp = channelAddresses.find((a) => !a.startsWith('unix:'));
      const port = Number(/:(\d+)$/.exec(tcp ?? '')?.[1]);
      if (!port) throw new Error('publishing the channel endpoint needs a TCP channel address');
      await publishChannelEndpoint(client, {
        namespace: opts.namespace,
        service: options.endpoint.service,
        address: options.endpoint.podIP,
        port,
        fieldManager: FIELD_MANAGER,
      });
      logger.info({ service: options.endpoint.service, address: options.endpoint.podIP }, 'channel Service points at this leader');
    }
  };
  const startControllers = async () => {
    await caches.waitForSync(120_000);
    await Promise.all(controllers.map((c) => c.start()));
    controllersRunning = true;
    if (opts.channel) await startChannel(opts.channel);
    markLeading();
  };

  try {
    health = await startHealthServer({
      address: opts.metricsAddress ?? ':8080',
      registry,
      healthz: [{ name: 'ping', check: () => true }],
      readyz: [{ name: 'informers-synced', check: () => caches.synced() }],
      logger,
    });
    caches.start();
    if (opts.leaderElection?.enabled) {
      elector = new LeaderElector({
        client,
        namespace: opts.namespace,
        name: opts.leaderElection.leaseName ?? DEFAULT_LEASE_NAME,
        identity,
        logger,
        metrics: runtimeMetrics,
        ...(opts.leaderElection.leaseDurationMs ? { leaseDurationMs: opts.leaderElection.leaseDurationMs } : {}),
        ...(opts.leaderElection.renewDeadlineMs ? { renewDeadlineMs: opts.leaderElection.renewDeadlineMs } : {}),
        ...(opts.leaderElection.retryPeriodMs ? { retryPeriodMs: opts.leaderElection.retryPeriodMs } : {}),
      });
      elector.start({
        onStartedLeading: startControllers,
        onStoppedLeading: () => (opts.onLeadershipLost ?? (() => logger.error('leadership lost')))(),
      });
    } else {
      await startControllers();
    }
  } catch (err) {
    await health?.close();
    await caches.stop();
    client.close();
    throw err;
  }
  logger.info({ identity, namespace: opts.namespace, leaderElection: opts.leaderElection?.enabled ?? false }, 'operator started');

  let stopping: Promise<void> | undefined;
  return {
    intake,
    plans,
    registry,
    metricsPort: health.port,
    identity,
    channelAddresses: () => [...channelAddresses],
    isLeader: () => controllersRunning,
    leading,
    stop: () =>
      (stopping ??= (async () => {
        // Stop serving agents and taking work, drain, then hand the lease over, then stop watching.
        attestation.stop();
        await channel?.stop();
        await Promise.all(controllers.map((c) => c.stop()));
        controllersRunning = false;
        await elector?.stop();
        await caches.stop();
        await health?.close();
        client.close();
      })()),
  };
}
