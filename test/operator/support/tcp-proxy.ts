// A loopback TCP proxy that a test can cut and restore, to partition a client from the API server
// without stopping the server: connections are dropped and new ones refused while cut.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  private cut = false;
  port = 0;

  private constructor(targetPort: number) {
    this.server = createServer((client) => {
      if (this.cut) {
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const proxy = new TcpProxy(targetPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', () => resolve()));
    const address = proxy.server.address();
    if (typeof address !== 'object' || !address) throw new Error('proxy has no address');
    proxy.port = address.port;
    return proxy;
  }

  /** Drops every connection and refuses new ones until `restore`. */
  partition(): void {
    this.cut = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.cut = false;
  }

  async close(): Promise<void> {
    this.partition();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Writes a copy of `kubeconfig` whose server is this proxy. */
  kubeconfigThrough(kubeconfig: string, out: string): string {
    const text = readFileSync(kubeconfig, 'utf8').replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: https://127.0.0.1:${this.port}`);
    writeFileSync(out, text, { mode: 0o600 });
    return out;
  }
}
