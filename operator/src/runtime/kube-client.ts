// A thin REST client for the Kubernetes API: every request sets its content type explicitly
// (server-side apply, merge patch, status subresource) and returns the decoded Status on failure.
// Credentials come from ./kubeconfig.js.
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest, Agent } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { accessFromKubeConfig, loadClusterAccess, type ClusterAccess, type KubeconfigSources } from './kubeconfig.js';

export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes?: { reason?: string; message?: string; field?: string }[] };
}

export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: KubeStatus,
    readonly method: string,
    readonly path: string,
  ) {
    super(`${method} ${path}: ${status} ${body.reason ?? ''}: ${body.message ?? ''}`.trim());
    this.name = 'KubeApiError';
  }

  get reason(): string | undefined {
    return this.body.reason;
  }
}

export const CONTENT_TYPE = {
  json: 'application/json',
  mergePatch: 'application/merge-patch+json',
  jsonPatch: 'application/json-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

export interface RequestSpec {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  /** Milliseconds before the request is abandoned (default 30 s). */
  timeoutMs?: number;
}

/** Longest response body accepted (the API server's own limit on objects is about 1.5 MiB). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

export interface KubeClientOptions {
  /** Called once per completed request with its method and status code (for rest_client_requests_total). */
  onResponse?: (method: string, status: number) => void;
}

export class KubeClient {
  private onResponse?: KubeClientOptions['onResponse'];

  private constructor(
    private readonly access: ClusterAccess,
    private readonly agent: Agent,
  ) {}

  /** A kubeconfig file; without one ~/.kube/config, else the in-cluster ServiceAccount. */
  static async load(sources: KubeconfigSources = {}, clientOptions: KubeClientOptions = {}): Promise<KubeClient> {
    return KubeClient.fromAccess(await loadClusterAccess(sources), clientOptions);
  }

  static async fromKubeconfigFile(path: string, clientOptions: KubeClientOptions = {}): Promise<KubeClient> {
    return KubeClient.load({ file: path }, clientOptions);
  }

  /** For callers that already hold a @kubernetes/client-node KubeConfig. */
  static async fromKubeConfig(kc: KubeConfig, clientOptions: KubeClientOptions = {}): Promise<KubeClient> {
    return KubeClient.fromAccess(await accessFromKubeConfig(kc), clientOptions);
  }

  static fromAccess(access: ClusterAccess, clientOptions: KubeClientOptions = {}): KubeClient {
    const agent = new Agent({
      keepAlive: true,
      maxSockets: 32,
      ...(access.ca ? { ca: access.ca } : {}),
      ...(access.cert ? { cert: access.cert } : {}),
      ...(access.key ? { key: access.key } : {}),
    });
    const client = new KubeClient(access, agent);
    client.onResponse = clientOptions.onResponse;
    return client;
  }

  private async headers(): Promise<Record<string, string>> {
    return { ...(await this.access.headers()), accept: 'application/json' };
  }

  /** Sends a request and returns the status code and decoded JSON body, whatever the status. */
  async raw<T = unknown>(spec: RequestSpec): Promise<{ status: number; body: T }> {
    const url = new URL(spec.path, this.access.server);
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const payload = spec.body === undefined ? undefined : typeof spec.body === 'string' ? spec.body : JSON.stringify(spec.body);
    const headers = await this.headers();
    if (payload !== undefined) {
      headers['content-type'] = spec.contentType ?? CONTENT_TYPE.json;
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        url,
        { agent: this.agent, method: spec.method, headers, signal: spec.signal, timeout: spec.timeoutMs ?? 30_000 },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              req.destroy(new Error(`response from ${spec.path} exceeds ${MAX_RESPONSE_BYTES} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let body: unknown = text;
            try {
              body = text.length > 0 ? JSON.parse(text) : undefined;
            } catch {
              body = { message: text };
            }
            this.onResponse?.(spec.method, res.statusCode ?? 0);
            resolve({ status: res.statusCode ?? 0, body: body as T });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${spec.method} ${spec.path} timed out`)));
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** Sends a request and throws KubeApiError on any status other than 2xx. */
  async request<T = unknown>(spec: RequestSpec): Promise<T> {
    const { status, body } = await this.raw<T>(spec);
    if (status < 200 || status >= 300) throw new KubeApiError(status, (body ?? {}) as KubeStatus, spec.method, spec.path);
    return body;
  }

  /** Opens a streaming GET (watch) and returns the response for line-by-line reading. */
  async stream(spec: Omit<RequestSpec, 'method' | 'body'>): Promise<IncomingMessage> {
    const url = new URL(spec.path, this.access.server);
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers = await this.headers();
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { agent: this.agent, method: 'GET', headers, signal: spec.signal });
      req.on('response', (res) => {
        this.onResponse?.('WATCH', res.statusCode ?? 0);
        resolve(res);
      });
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
