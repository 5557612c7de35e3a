// The operator's HTTP endpoint: Prometheus metrics, liveness (/healthz) and readiness (/readyz).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

export interface HealthCheck {
  name: string;
  check(): boolean;
}

export interface HealthServerOptions {
  /** `host:port`; port 0 picks a free one. */
  address: string;
  registry: Registry;
  healthz: HealthCheck[];
  readyz: HealthCheck[];
  logger: Logger;
}

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

function parseAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = colon > 0 ? address.slice(0, colon).replace(/^\[|\]$/g, '') : '0.0.0.0';
  const port = Number(address.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid address ${address}`);
  return { host, port };
}

export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const probe = (checks: HealthCheck[]): { ok: boolean; text: string } => {
    const failed = checks.filter((c) => {
      try {
        return !c.check();
      } catch {
        return true;
      }
    });
    return failed.length === 0
      ? { ok: true, text: 'ok' }
      : { ok: false, text: failed.map((c) => `[-]${c.name} failed`).join('\n') };
  };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/metrics') {
      opts.registry
        .metrics()
        .then((text) => res.writeHead(200, { 'content-type': opts.registry.contentType }).end(text))
        .catch((err: unknown) => {
          opts.logger.error({ err }, 'metrics collection failed');
          res.writeHead(500).end();
        });
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      const { ok, text } = probe(path === '/healthz' ? opts.healthz : opts.readyz);
      res.writeHead(ok ? 200 : 500, { 'content-type': 'text/plain' }).end(text);
      return;
    }
    res.writeHead(404).end();
  });
  const { host, port } = parseAddress(opts.address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  opts.logger.info({ address: `${host}:${bound}` }, 'serving /metrics, /healthz and /readyz');
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
