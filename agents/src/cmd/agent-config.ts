// The agent's command line. Every option has an environment variable too (SECAI_<NAME>), so the
// DaemonSet and the systemd unit can configure it either way.
import { parseArgs } from 'node:util';
import { DEFAULT_AK_HANDLE, DEFAULT_EK_HANDLE, DEFAULT_EVENT_LOG } from '../attestation/tpm-attestation.js';

export interface AgentConfig {
  nodeName: string;
  stateDir: string;
  auditDir: string;
  /** The trusted store and its quarantine staging (inside the vault on a real node). */
  storeDir: string;
  operatorAddress: string;
  operatorServerName: string;
  caFile: string;
  tokenFile: string;
  /** `host:port` or `unix:/path`. */
  metricsListen: string;
  /** TCP ports the node accepts connections on besides loopback (inference, metrics). */
  inboundPorts: number[];
  /** Destinations always allowed (`ip[/prefix][:port]`): the operator channel and the API server over TCP. */
  alwaysAllow: string[];
  /** Base chains of other tables the node expects on egress hooks (`family/table/chain`): kube-proxy's, a CNI's. */
  allowForeignHooks: string[];
  /** How often every trusted model is hashed in full (ms). */
  storeRehashMs: number;
  nftPath: string;
  inferenceHost: string;
  vaultHeader?: string;
  vaultMapper: string;
  vaultMapperDir: string;
  vaultMountPoint?: string;
  tpmTcti?: string;
  /** Persistent handles of the EK and of the AK the agent creates under it (remote attestation). */
  tpmEkHandle: string;
  tpmAkHandle: string;
  /** The boot event log sent with every quote (none when the file does not exist). */
  eventLog: string;
  efiDir: string;
  /** The Tor binary, and the user its client drops to when the agent runs as root. */
  torPath: string;
  torUser: string;
  /** The Tor client's directory (beside the state directory, which Tor's user cannot enter). */
  torDir: string;
  logLevel: string;
}

const OPTIONS = {
  'node-name': { type: 'string' },
  'state-dir': { type: 'string' },
  'audit-dir': { type: 'string' },
  'store-dir': { type: 'string' },
  'operator-address': { type: 'string' },
  'operator-server-name': { type: 'string' },
  'ca-file': { type: 'string' },
  'token-file': { type: 'string' },
  'metrics-listen': { type: 'string' },
  'inbound-port': { type: 'string', multiple: true },
  'always-allow': { type: 'string', multiple: true },
  'allow-foreign-hook': { type: 'string', multiple: true },
  'store-rehash-interval': { type: 'string' },
  nft: { type: 'string' },
  'inference-host': { type: 'string' },
  'vault-header': { type: 'string' },
  'vault-mapper': { type: 'string' },
  'vault-mapper-dir': { type: 'string' },
  'vault-mount-point': { type: 'string' },
  'tpm-tcti': { type: 'string' },
  'tpm-ek-handle': { type: 'string' },
  'tpm-ak-handle': { type: 'string' },
  'event-log': { type: 'string' },
  'efi-dir': { type: 'string' },
  tor: { type: 'string' },
  'tor-user': { type: 'string' },
  'tor-dir': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

export class ConfigError extends Error {}

const DURATION_UNITS_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `30m`, `24h`, `7d` in milliseconds; at least a minute, at most a year. */
function duration(option: string, text: string): number {
  const match = /^(\d{1,6})([smhd])$/.exec(text);
  const ms = match ? Number(match[1]) * DURATION_UNITS_MS[match[2]!]! : NaN;
  if (!(ms >= 60_000 && ms <= 365 * 86_400_000)) throw new ConfigError(`--${option} ${text}: expected a duration such as 30m, 24h or 7d (1 minute to a year)`);
  return ms;
}

function envName(option: string): string {
  return `SECAI_${option.toUpperCase().replaceAll('-', '_')}`;
}

export function parseAgentConfig(argv: readonly string[], env: NodeJS.ProcessEnv): AgentConfig {
  const { values } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: false, strict: true });
  const get = (option: keyof typeof OPTIONS): string | undefined => {
    const value = values[option];
    if (typeof value === 'string') return value;
    return env[envName(option)];
  };
  const list = (option: 'inbound-port' | 'always-allow' | 'allow-foreign-hook'): string[] => {
    const value = values[option];
    if (Array.isArray(value) && value.length > 0) return value;
    return (env[envName(option)] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  };
  const need = (option: keyof typeof OPTIONS, fallback?: string): string => {
    const value = get(option) ?? fallback;
    if (!value) throw new ConfigError(`--${option} (or ${envName(option)}) is required`);
    return value;
  };
  const stateDir = need('state-dir', '/var/lib/secai');
  const handle = (option: 'tpm-ek-handle' | 'tpm-ak-handle', fallback: string): string => {
    const value = need(option, fallback);
    if (!/^0x81[0-9a-fA-F]{6}$/.test(value)) throw new ConfigError(`--${option} ${value} is not a persistent handle (0x81xxxxxx)`);
    return value;
  };
  const inboundPorts = list('inbound-port').map((p) => {
    const port = Number(p);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`--inbound-port ${p} is not a port`);
    return port;
  });
  const foreignHooks = list('allow-foreign-hook');
  for (const hook of foreignHooks) {
    if (!/^(inet|ip|ip6)\/[^/\s]{1,256}\/[^/\s]{1,256}$/.test(hook)) throw new ConfigError(`--allow-foreign-hook ${hook}: expected FAMILY/TABLE/CHAIN (family inet, ip or ip6)`);
  }
  return {
    nodeName: need('node-name', env.NODE_NAME),
    stateDir,
    auditDir: need('audit-dir', `${stateDir}/audit`),
    storeDir: need('store-dir', `${stateDir}/models`),
    operatorAddress: need('operator-address'),
    operatorServerName: need('operator-server-name', 'secai-operator.secai-system.svc'),
    caFile: need('ca-file', '/etc/secai/channel/ca.crt'),
    tokenFile: need('token-file', '/var/run/secrets/secai.io/token'),
    metricsListen: need('metrics-listen', '0.0.0.0:9464'),
    inboundPorts,
    alwaysAllow: list('always-allow'),
    allowForeignHooks: foreignHooks,
    storeRehashMs: duration('store-rehash-interval', need('store-rehash-interval', '24h')),
    nftPath: need('nft', 'nft'),
    inferenceHost: need('inference-host', '0.0.0.0'),
    vaultHeader: get('vault-header'),
    vaultMapper: need('vault-mapper', 'secai-vault'),
    vaultMapperDir: need('vault-mapper-dir', '/dev/mapper'),
    vaultMountPoint: get('vault-mount-point'),
    tpmTcti: get('tpm-tcti'),
    tpmEkHandle: handle('tpm-ek-handle', DEFAULT_EK_HANDLE),
    tpmAkHandle: handle('tpm-ak-handle', DEFAULT_AK_HANDLE),
    eventLog: need('event-log', DEFAULT_EVENT_LOG),
    efiDir: need('efi-dir', '/sys/firmware/efi'),
    torPath: need('tor', 'tor'),
    torUser: need('tor-user', 'debian-tor'),
    torDir: need('tor-dir', `${stateDir.replace(/\/+$/, '')}-tor`),
    logLevel: need('log-level', 'info'),
  };
}
