// A private Tor network for the lab and the tests, with Debian's tor (the way Tor's own chutney
// test networks work; written here from its documentation, not copied): three directory
// authorities, a middle relay and one exit, all in one test-created namespace on one address,
// with TestingTorNetwork's fast consensus. The exit reaches only the lab upstream: its namespace
// has no route anywhere else, and its policy accepts only the upstream's ports (Tor gives clients
// exit policies only as per-port summaries over the whole address space — tor#11264, as chutney
// notes — so an exit that accepts a single address is never chosen; the routing is what confines
// it to the upstream). It resolves names through the upstream's resolver. Nothing here reaches
// anything outside the lab namespaces.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NetnsHarness, NetnsProcess } from '../../test/support/netns.js';

export interface PrivateTorNetworkOptions {
  harness: NetnsHarness;
  /** Where every relay runs; `address` is configured there. */
  namespace: string;
  address: string;
  /** Working directory (created; removed by stop()). */
  dir: string;
  /** The upstream's addresses and ports the exit is for. */
  exit: { addresses: string[]; ports: number[]; resolver?: string };
  /** First of the ports the relays listen on (ORPort basePort+i, DirPort basePort+100+i). */
  basePort?: number;
  torPath?: string;
  consensusTimeoutMs?: number;
}

export interface PrivateTorNetwork {
  /** DirAuthority lines for clients (EgressPolicy spec.tor.network.dirAuthorities). */
  dirAuthorities: string[];
  /** Where the relays are (spec.tor.network.relays). */
  relays: string[];
  /** From the first relay's start to a consensus listing every relay and the exit's ports, held by the exit as well. */
  consensusMs: number;
  /** Relay processes, for tests that stop one. */
  processes: NetnsProcess[];
  stop(): Promise<void>;
}

const RELAYS = ['auth0', 'auth1', 'auth2', 'middle', 'exit'] as const;
const AUTHORITIES = RELAYS.filter((name) => name.startsWith('auth'));

function fingerprintOf(torPath: string, dataDir: string): string {
  const output = execFileSync(torPath, ['--ignore-missing-torrc', '-f', '/dev/null', '--orport', '1', '--DataDirectory', dataDir, '--list-fingerprint'], { encoding: 'utf8' });
  const fingerprint = output.trim().split('\n').at(-1)!.split(' ').slice(1).join('');
  if (!/^[0-9A-F]{40}$/.test(fingerprint)) throw new Error(`tor --list-fingerprint printed ${JSON.stringify(output.slice(-200))}`);
  return fingerprint;
}

function v3IdentityOf(certificate: string): string {
  const match = /^fingerprint ([0-9A-F]{40})$/m.exec(readFileSync(certificate, 'utf8'));
  if (!match) throw new Error(`${certificate} names no v3 identity`);
  return match[1]!;
}

/** The consensus an authority serves, if it lists every relay and lets the exit's ports out. */
function consensusReady(path: string, ports: number[]): boolean {
  if (!existsSync(path)) return false;
  const text = readFileSync(path, 'utf8');
  const routers = text.match(/^r /gm)?.length ?? 0;
  const exitSummary = /^r exit [^\n]*\n(?:[^r][^\n]*\n)*?p accept ([0-9,-]+)$/m.exec(text)?.[1] ?? '';
  const accepted = exitSummary.split(',');
  return routers === RELAYS.length && ports.every((port) => accepted.some((range) => {
    const [first, last = first] = range.split('-').map(Number);
    return port >= first! && port <= last!;
  }));
}

export async function startPrivateTorNetwork(options: PrivateTorNetworkOptions): Promise<PrivateTorNetwork> {
  const tor = options.torPath ?? 'tor';
  const base = options.basePort ?? 7000;
  const { address, dir } = options;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const processes: NetnsProcess[] = [];
  const stop = async () => {
    await Promise.all(processes.map((p) => p.kill('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const nodes = RELAYS.map((name, i) => ({ name, dataDir: join(dir, name), orPort: base + i, dirPort: base + 100 + i }));
    for (const node of nodes) mkdirSync(join(node.dataDir, 'keys'), { recursive: true, mode: 0o700 });
    // Authority keys: an offline identity key certifying a signing key (empty passphrase, lab only).
    for (const node of nodes.filter((n) => AUTHORITIES.includes(n.name as (typeof AUTHORITIES)[number]))) {
      const keys = join(node.dataDir, 'keys');
      execFileSync('tor-gencert', ['--create-identity-key', '--passphrase-fd', '0', '-i', join(keys, 'authority_identity_key'), '-s', join(keys, 'authority_signing_key'), '-c', join(keys, 'authority_certificate'), '-m', '12', '-a', `${address}:${node.dirPort}`], { input: '\n', stdio: ['pipe', 'ignore', 'pipe'] });
    }
    const dirAuthorities = nodes
      .filter((n) => n.name.startsWith('auth'))
      .map((n) => `${n.name} orport=${n.orPort} no-v2 v3ident=${v3IdentityOf(join(n.dataDir, 'keys', 'authority_certificate'))} ${address}:${n.dirPort} ${fingerprintOf(tor, n.dataDir)}`);
    for (const n of nodes.filter((x) => !x.name.startsWith('auth'))) fingerprintOf(tor, n.dataDir);
    const resolvConf = join(dir, 'exit-resolv.conf');
    writeFileSync(resolvConf, options.exit.resolver ? `nameserver ${options.exit.resolver}\n` : '');
    const started = Date.now();
    for (const node of nodes) {
      const authority = node.name.startsWith('auth');
      const exit = node.name === 'exit';
      const torrc = [
        'TestingTorNetwork 1',
        // Enough descriptors to build circuits in a five-relay network; every relay may be chosen
        // for every position (the network is too young for Guard and Exit by the usual rules).
        'PathsNeededToBuildCircuits 0.67',
        'TestingDirAuthVoteExit *',
        'TestingDirAuthVoteGuard *',
        'TestingDirAuthVoteHSDir *',
        'TestingMinExitFlagThreshold 0',
        'V3AuthNIntervalsValid 2',
        `DataDirectory ${node.dataDir}`,
        'RunAsDaemon 0',
        `Nickname ${node.name}`,
        'ShutdownWaitLength 0',
        'Log notice stdout',
        'SafeLogging 0',
        'SocksPort 0',
        'AssumeReachable 1',
        `Address ${address}`,
        `ORPort ${address}:${node.orPort}`,
        `DirPort ${address}:${node.dirPort}`,
        `ContactInfo ${node.name}@lab.invalid`,
        ...dirAuthorities.map((line) => `DirAuthority ${line}`),
        ...(authority
          ? [
              'AuthoritativeDirectory 1',
              'V3AuthoritativeDirectory 1',
              // The fastest consensus cycle that stays stable (votes and distribution inside half an interval).
              'TestingV3AuthInitialVotingInterval 20',
              'TestingV3AuthInitialVoteDelay 4',
              'TestingV3AuthInitialDistDelay 4',
              'V3AuthVotingInterval 20',
              'V3AuthVoteDelay 4',
              'V3AuthDistDelay 4',
            ]
          : []),
        ...(exit
          ? [
              'ExitRelay 1',
              'ExitPolicyRejectPrivate 0',
              ...options.exit.addresses.flatMap((a) => options.exit.ports.map((p) => `ExitPolicy accept ${a}:${p}`)),
              ...options.exit.ports.map((p) => `ExitPolicy accept *:${p}`),
              'ExitPolicy reject *:*',
              `ServerDNSResolvConfFile ${resolvConf}`,
              'ServerDNSDetectHijacking 0',
              'ServerDNSTestAddresses',
              'ServerDNSAllowNonRFC953Hostnames 1',
            ]
          : ['ExitRelay 0']),
      ].join('\n');
      writeFileSync(join(node.dataDir, 'torrc'), `${torrc}\n`);
      processes.push(options.harness.spawn(options.namespace, tor, ['-f', join(node.dataDir, 'torrc')]));
    }
    const deadline = started + (options.consensusTimeoutMs ?? 180_000);
    const consensus = join(nodes[0]!.dataDir, 'cached-consensus');
    // A consensus at the authorities is not yet one the exit holds, and an exit without a usable
    // consensus of its own ends every stream it is asked to open ("no usable consensus"): the
    // network is ready when the exit has fetched it too (either flavour).
    const exitDir = nodes.find((n) => n.name === 'exit')!.dataDir;
    const exitHasConsensus = () => ['cached-consensus', 'cached-microdesc-consensus'].some((file) => consensusReady(join(exitDir, file), options.exit.ports));
    while (!consensusReady(consensus, options.exit.ports) || !exitHasConsensus()) {
      const dead = processes.find((p) => p.child.exitCode !== null);
      if (dead) throw new Error(`a relay of the private Tor network exited: ${dead.stdout().slice(-1000)}`);
      if (Date.now() > deadline) throw new Error(`no consensus with every relay and the exit, held by the exit, within ${options.consensusTimeoutMs ?? 180_000} ms`);
      await new Promise((r) => setTimeout(r, 500));
    }
    return { dirAuthorities, relays: [`${address}/32`], consensusMs: Date.now() - started, processes, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
