// The node's Tor client configuration, rendered from the plan: a transparent proxy (TransPort) and
// a DNSPort on loopback only, no SOCKS port, no control port on the network (a control socket in
// the agent's private directory, cookie-authenticated), client only, and the network the plan
// names (its directory authorities; TestingTorNetwork for a private lab network). Pure: what goes
// into torrc is tested line by line, and an authority line that is not one is refused.
import type { TorNetwork } from '../../../api/gen/proto/secai/fleet/v1/agent.js';

export interface TorClientPlan {
  transPort: number;
  dnsPort: number;
  network?: TorNetwork;
}

export interface TorClientPaths {
  dataDir: string;
  controlSocket: string;
  cookieFile: string;
}

export interface TorrcOptions {
  /** Tor drops to this user after start (only when the agent runs as root). */
  user?: string;
  /** Tor exits when this process does (__OwningControllerProcess). */
  owningPid?: number;
}

export class TorConfigError extends Error {
  override name = 'TorConfigError';
}

const DIR_AUTHORITY = /^[A-Za-z0-9]{1,19} orport=[0-9]{1,5}( no-v2)? v3ident=[0-9A-F]{40} [0-9.]{7,15}:[0-9]{1,5} [0-9A-F]{40}$/;
const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const SAFE_PATH = /^\/[A-Za-z0-9._/-]{1,4000}$/;
const MAX_AUTHORITIES = 16;

function port(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw new TorConfigError(`${what} ${value} is not a port`);
  return value;
}

function path(value: string, what: string): string {
  if (!SAFE_PATH.test(value)) throw new TorConfigError(`${what} ${JSON.stringify(value.slice(0, 80))} is not a plain absolute path`);
  return value;
}

export function renderTorrc(plan: TorClientPlan, paths: TorClientPaths, options: TorrcOptions = {}): string {
  const authorities = plan.network?.dirAuthorities ?? [];
  if (authorities.length > MAX_AUTHORITIES) throw new TorConfigError(`at most ${MAX_AUTHORITIES} directory authorities`);
  for (const line of authorities) if (!DIR_AUTHORITY.test(line)) throw new TorConfigError(`not a DirAuthority line: ${JSON.stringify(line.slice(0, 80))}`);
  if (options.user !== undefined && !USER.test(options.user)) throw new TorConfigError(`not a user name: ${options.user}`);
  const lines = [
    '# Written by the SecAI agent from the node plan; it rewrites this file, do not edit.',
    ...(plan.network?.testingNetwork ? ['TestingTorNetwork 1'] : []),
    `DataDirectory ${path(paths.dataDir, 'DataDirectory')}`,
    'RunAsDaemon 0',
    'ClientOnly 1',
    'SocksPort 0',
    `TransPort 127.0.0.1:${port(plan.transPort, 'TransPort')}`,
    ...(plan.dnsPort > 0 ? [`DNSPort 127.0.0.1:${port(plan.dnsPort, 'DNSPort')}`] : []),
    // Control only through a socket in the agent's own directory: nothing on the network.
    'ControlPort 0',
    `ControlSocket ${path(paths.controlSocket, 'ControlSocket')}`,
    'CookieAuthentication 1',
    `CookieAuthFile ${path(paths.cookieFile, 'CookieAuthFile')}`,
    'Log notice stdout',
    // Names reach Tor only through its DNSPort; the client never resolves one locally.
    'SafeLogging 1',
    ...(options.user ? [`User ${options.user}`] : []),
    ...(options.owningPid ? [`__OwningControllerProcess ${options.owningPid}`] : []),
    ...authorities.map((line) => `DirAuthority ${line}`),
  ];
  return `${lines.join('\n')}\n`;
}
