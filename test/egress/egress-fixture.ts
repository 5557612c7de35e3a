// Two test-created namespaces joined by one veth pair, no default routes: "node" runs the agent
// side (egress-node-child.ts, a real EgressEnforcer) and "upstream" runs TCP, UDP and DNS servers
// (upstream-servers.ts). Every address a test dials is one of these namespaces' own.
import { join } from 'node:path';
import { runCommand } from '../../agents/src/exec.js';
import type { NftTarget } from '../../agents/src/egress/nft-target.js';
import { NetnsHarness, type NetnsProcess } from '../support/netns.js';
import type { NodeRequest } from './egress-node-child.js';

const HERE = new URL('.', import.meta.url).pathname;
const REPO_ROOT = join(HERE, '../..');

/** Addresses inside the test namespaces. */
export const NODE_V4 = '10.200.0.1';
export const UPSTREAM_V4 = '10.200.0.2';
/** A second upstream address, for "another destination on the same host". */
export const OTHER_V4 = '10.200.0.3';
export const RESOLVER_V4 = '10.200.0.53';
export const ROGUE_RESOLVER_V4 = '10.200.0.54';
export const NODE_V6 = 'fd00:200::1';
export const UPSTREAM_V6 = 'fd00:200::2';

export interface DnsZoneEntry {
  a?: string[];
  aaaa?: string[];
  ttl?: number;
  rcode?: number;
}

export interface EgressFixtureOptions {
  tcpPorts: number[];
  udpPorts?: number[];
  zone?: Record<string, DnsZoneEntry>;
}

export class NodeSide {
  private nextId = 1;
  private readonly pending = new Map<number, (value: Record<string, unknown>) => void>();
  private buffered = '';

  constructor(readonly process: NetnsProcess) {
    process.child.stdout!.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString('utf8');
      let newline: number;
      while ((newline = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, newline);
        this.buffered = this.buffered.slice(newline + 1);
        if (!line.startsWith('{')) continue;
        const message = JSON.parse(line) as { id: number } & Record<string, unknown>;
        this.pending.get(message.id)?.(message);
        this.pending.delete(message.id);
      }
    });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are JSON the tests inspect
  request(request: NodeRequest, timeoutMs = 60_000): Promise<any> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`node side did not answer ${request.op} within ${timeoutMs} ms; stderr: ${this.process.stderr().slice(-2000)}`));
      }, timeoutMs);
      this.pending.set(id, (message) => {
        clearTimeout(timer);
        if (typeof message.error === 'string') reject(new Error(`node side ${request.op}: ${message.error}`));
        else resolve(message);
      });
      this.process.send(JSON.stringify({ id, ...request }));
    });
  }
}

export class EgressFixture {
  private constructor(
    readonly harness: NetnsHarness,
    readonly nodeNamespace: string,
    readonly upstreamNamespace: string,
    readonly upstream: NetnsProcess,
    readonly node: NodeSide,
  ) {}

  static async start(options: EgressFixtureOptions): Promise<EgressFixture> {
    const harness = await NetnsHarness.create({ prefix: 'sfeg' });
    try {
      const nodeNamespace = await harness.addNamespace('node');
      const upstreamNamespace = await harness.addNamespace('upstream');
      await harness.connect(
        { namespace: nodeNamespace, device: 'up0', addresses: [`${NODE_V4}/24`, `${NODE_V6}/64`] },
        {
          namespace: upstreamNamespace,
          device: 'node0',
          addresses: [`${UPSTREAM_V4}/24`, `${OTHER_V4}/24`, `${RESOLVER_V4}/24`, `${ROGUE_RESOLVER_V4}/24`, `${UPSTREAM_V6}/64`],
        },
      );
      const listen = (hosts: string[], ports: number[]) => hosts.flatMap((host) => ports.map((port) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)));
      const upstream = harness.spawn(upstreamNamespace, process.execPath, [
        join(HERE, 'upstream-servers.ts'),
        // '::' is dual-stack: one listener serves IPv4 and IPv6.
        ...['--tcp', listen(['::'], options.tcpPorts).join(',')],
        ...(options.udpPorts?.length ? ['--udp', listen(['0.0.0.0'], options.udpPorts).join(',')] : []),
        ...['--dns', [`${RESOLVER_V4}:53`, `${ROGUE_RESOLVER_V4}:53`].join(',')],
        ...['--zone', JSON.stringify(options.zone ?? {})],
      ]);
      await upstream.waitForOutput(/^ready$/m);
      const node = await EgressFixture.startNodeSide(harness, nodeNamespace);
      return new EgressFixture(harness, nodeNamespace, upstreamNamespace, upstream, node);
    } catch (error) {
      await harness.destroy();
      throw error;
    }
  }

  /** Starts one more agent-side process in the node namespace. */
  static async startNodeSide(harness: NetnsHarness, nodeNamespace: string): Promise<NodeSide> {
    const child = harness.spawn(nodeNamespace, process.execPath, ['--import', 'tsx', join(HERE, 'egress-node-child.ts')], { cwd: REPO_ROOT });
    await child.waitForOutput(/^node side ready$/m, 30_000);
    return new NodeSide(child);
  }

  startNodeSide(): Promise<NodeSide> {
    return EgressFixture.startNodeSide(this.harness, this.nodeNamespace);
  }

  /** nft run from the test process into the node namespace. */
  nftTarget(): NftTarget {
    return { exec: runCommand, nftPath: 'nft', netns: this.nodeNamespace };
  }

  setZone(zone: Record<string, DnsZoneEntry>): Promise<RegExpMatchArray> {
    const seen = (this.upstream.stdout().match(/^zone updated$/gm) ?? []).length;
    this.upstream.send(JSON.stringify({ zone }));
    return this.upstream.waitForOutput(new RegExp(`(?:^zone updated\\n[^]*){${seen + 1}}`, 'm'), 5000);
  }

  async close(): Promise<void> {
    await this.harness.destroy();
  }
}
