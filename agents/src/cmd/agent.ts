// The node agent process: re-applies the stored plan (egress first) before anything else, then
// connects to the operator, applies every plan it receives, answers commands and reports. Losing
// the operator changes nothing on the node.
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { type EgressRule, Protocol, Via } from '../../../api/gen/proto/secai/fleet/v1/agent.js';
import { AttestationDuty } from '../agent/duties/attestation-duty.js';
import { AuditDuty } from '../agent/duties/audit-duty.js';
import { QuarantineDuty } from '../agent/duties/quarantine-duty.js';
import { VaultDuty } from '../agent/duties/vault-duty.js';
import { NodeAgent, type Duty } from '../agent/node-agent.js';
import { PlanStore } from '../agent/plan-store.js';
import { Attestor } from '../attestation/attestation.js';
import { tpm2ToolsAttestation } from '../attestation/tpm-attestation.js';
import { tpm2ToolsClient } from '../attestation/tpm2-tools.js';
import { AuditLog } from '../audit/audit-log.js';
import { TorDuty } from '../tor/tor-duty.js';
import { lookUpUser } from '../tor/tor-user.js';
import { AgentChannelClient } from '../channel/client.js';
import { EgressEnforcer } from '../egress/egress-enforcer.js';
import { egressMetrics } from '../egress/egress-metrics.js';
import { withNftSession } from '../egress/nft-session.js';
import type { NftTarget } from '../egress/nft-target.js';
import { nativeHelperCacheDir, withSetElementReader } from '../egress/set-element-reader.js';
import { runCommand } from '../exec.js';
import { inferenceMetrics } from '../inference/inference-metrics.js';
import { InferenceServiceManager } from '../inference/inference-service-manager.js';
import { loadModelForSmokeTest } from '../inference/smoke-test-model.js';
import { createQuarantineMetrics } from '../quarantine/pipeline.js';
import { DEFAULT_QUARANTINE_POLICY } from '../quarantine/policy.js';
import { createScannerSandbox } from '../quarantine/scanner-sandbox.js';
import { TrustedStore } from '../quarantine/trusted-store.js';
import { sandboxCacheDir } from '../sandbox/landlock-launcher.js';
import { detectSandboxSupport } from '../sandbox/sandbox-support.js';
import { VaultGuard } from '../vault/vault-guard.js';
import { cryptsetupLockExecutor, mapperLockProbe } from '../vault/vault-lock.js';
import { cryptsetupHeaderReader } from '../vault/vault-reader.js';
import { ConfigError, parseAgentConfig, type AgentConfig } from './agent-config.js';

export const AGENT_VERSION = '0.1.0';

/** `ip[/prefix][:port]` as an egress rule that every plan gets (TCP). */
export function parseAlwaysAllow(spec: string): EgressRule {
  const match = /^([0-9a-fA-F.:]+?)(?:\/(\d{1,3}))?(?::(\d{1,5}))?$/.exec(spec);
  const address = match?.[1];
  if (!match || !address || !isIP(address)) throw new ConfigError(`--always-allow ${spec}: expected ip[/prefix][:port]`);
  const port = match[3] === undefined ? undefined : Number(match[3]);
  if (port !== undefined && (port < 1 || port > 65535)) throw new ConfigError(`--always-allow ${spec}: bad port`);
  return {
    destination: match[2] === undefined ? { $case: 'ip', value: address } : { $case: 'cidr', value: `${address}/${match[2]}` },
    ports: port === undefined ? [] : [{ port, endPort: 0 }],
    protocol: Protocol.PROTOCOL_TCP,
    via: Via.VIA_DIRECT,
    policy: 'agent --always-allow',
  };
}

function serveMetrics(listen: string, registry: Registry, log: Logger): Server {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry
        .metrics()
        .then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text))
        .catch(() => res.writeHead(500).end());
    } else if (req.url === '/healthz') {
      res.writeHead(200).end('ok');
    } else {
      res.writeHead(404).end();
    }
  });
  if (listen.startsWith('unix:')) {
    const path = listen.slice('unix:'.length);
    rmSync(path, { force: true });
    server.listen(path);
  } else {
    const at = listen.lastIndexOf(':');
    server.listen(Number(listen.slice(at + 1)), listen.slice(0, at));
  }
  server.on('listening', () => log.info({ listen }, 'metrics listening'));
  return server;
}

/**
 * How the agent runs nftables: the set element reader for the read-back, and one libnftables
 * session for every command. An `--nft` other than the default names a program to run for each
 * command instead (no session).
 */
async function nftTarget(nftPath: string, log: Logger): Promise<NftTarget> {
  const build = { exec: runCommand, cacheDir: nativeHelperCacheDir() };
  const target = await withSetElementReader({ exec: runCommand, nftPath }, build, log);
  return nftPath === 'nft' ? withNftSession(target, build, log) : target;
}

export async function runAgent(config: AgentConfig, log: Logger): Promise<() => Promise<void>> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const audit = await AuditLog.open({ dir: config.auditDir, registry, logger: log });
  // Tor drops to its own user when the agent is root; otherwise it runs as the agent does. That uid
  // alone may reach the Tor network.
  const torUser = process.getuid?.() === 0 ? lookUpUser(config.torUser) : undefined;
  const torClientUid = torUser?.uid ?? process.getuid?.();
  // The model duty tells inference when trust changed; the agent is made after the duties.
  const agentRef: { current?: NodeAgent } = {};

  const duties: Duty[] = [
    new EgressEnforcer({
      nft: await nftTarget(config.nftPath, log),
      inboundTcpPorts: config.inboundPorts,
      fixedAllow: config.alwaysAllow.map(parseAlwaysAllow),
      allowForeignHooks: config.allowForeignHooks,
      torClientUid,
      logger: log,
      metrics: egressMetrics(registry),
      audit,
    }),
  ];
  const sandbox = await detectSandboxSupport({ exec: runCommand, cacheDir: sandboxCacheDir() });
  const nodePolicy = DEFAULT_QUARANTINE_POLICY;
  // Inference is woken when trust changes: it re-checks what it may serve against the plan.
  const models = new QuarantineDuty({
    deps: {
      store: new TrustedStore(config.storeDir),
      sandbox: createScannerSandbox({ exec: runCommand, policy: nodePolicy.scanner }),
      audit,
      clock: () => new Date(),
      logger: log.child({ duty: 'models' }),
      metrics: createQuarantineMetrics(registry),
      openSmokeTestModel: async (modelPath, sha256) => loadModelForSmokeTest({ modelPath, sha256, sandbox }),
    },
    nodePolicy,
    audit,
    logger: log,
    trustChanged: () => void agentRef.current?.wake('inference'),
    rehashMs: config.storeRehashMs,
  });
  const inference = new InferenceServiceManager({
    trustedModels: models,
    sandbox,
    metrics: inferenceMetrics(registry),
    logger: log,
    audit,
    listenHost: config.inferenceHost,
  });
  duties.push(models, inference);
  if (config.vaultHeader) {
    const guard = await VaultGuard.create({
      reader: cryptsetupHeaderReader(config.vaultHeader),
      probe: mapperLockProbe(config.vaultMapper, config.vaultMapperDir),
      executor: cryptsetupLockExecutor({ mapperName: config.vaultMapper, mountPoint: config.vaultMountPoint }),
      stateFile: join(config.stateDir, 'vault-state.json'),
      audit,
      registry,
      logger: log,
    });
    duties.push(new VaultDuty(guard));
  }
  const attestationDir = join(config.stateDir, 'attestation');
  mkdirSync(attestationDir, { recursive: true, mode: 0o700 });
  const remoteAttestation = config.tpmTcti
    ? {
        tpm: tpm2ToolsAttestation({ tcti: config.tpmTcti, workDir: attestationDir, ekHandle: config.tpmEkHandle, akHandle: config.tpmAkHandle }),
        eventLogPath: config.eventLog,
        audit,
      }
    : undefined;
  duties.push(
    new AttestationDuty(
      new Attestor({ tpm: config.tpmTcti ? tpm2ToolsClient(config.tpmTcti) : undefined, efiDir: config.efiDir, audit, registry, logger: log }),
      undefined,
      remoteAttestation,
    ),
    new AuditDuty(audit),
    new TorDuty({ dir: config.torDir, torPath: config.torPath, user: torUser, logger: log, registry, audit }),
  );
  const capabilities = ['nftables', 'bubblewrap', 'quarantine', ...(config.vaultHeader ? ['luks2'] : []), ...(config.tpmTcti ? ['tpm2'] : [])];
  const agent = new NodeAgent({
    nodeName: config.nodeName,
    version: AGENT_VERSION,
    capabilities,
    store: new PlanStore(config.stateDir),
    duties,
    audit,
    auditPublicKey: audit.publicKey,
    logger: log,
    registry,
  });
  agentRef.current = agent;
  const metrics = serveMetrics(config.metricsListen, registry, log);
  // Enforcement first: the stored plan is back in force before the agent talks to anyone.
  await agent.start();
  const channel = new AgentChannelClient({
    address: config.operatorAddress,
    caFile: config.caFile,
    serverName: config.operatorServerName,
    tokenFile: config.tokenFile,
    hello: () => agent.hello(),
    onPlan: (plan) => agent.receivePlan(plan),
    onCommand: (command) => agent.handleCommand(command),
    logger: log,
  });
  agent.attach(channel);
  channel.start();
  return async () => {
    channel.stop();
    await agent.stop();
    await audit.close();
    metrics.close();
  };
}

export async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    config = parseAgentConfig(process.argv.slice(2), process.env);
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  const log = pino({ level: config.logLevel, base: { node: config.nodeName, component: 'agent' } });
  const stop = await runAgent(config, log);
  const shutdown = (signal: string) => {
    log.info({ signal }, 'stopping; the node keeps enforcing its plan');
    stop().finally(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: Error) => {
    console.error(err.stack ?? err.message);
    process.exit(1);
  });
}
