// A thin REST client for the Kubernetes API on top of the kubeconfig handling of
// @kubernetes/client-node: every request sets its content type explicitly (server-side apply,
// merge patch, status subresource) and returns the decoded Status on failure.
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest, Agent, type RequestOptions } from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';

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

/** How often credentials are re-read from the kubeconfig (projected ServiceAccount tokens rotate). */
const CREDENTIAL_REFRESH_MS = 60_000;

export interface KubeClientOptions {
  /** Called once per completed request with its method and status code (for rest_client_requests_total). */
  onResponse?: (method: string, status: number) => void;
}

export class KubeClient {
  private credentialsRefreshedAt = Date.now();
  private onResponse?: KubeClientOptions['onResponse'];

  private constructor(
    private readonly server: URL,
    private readonly baseOptions: RequestOptions,
    private readonly kubeConfig?: KubeConfig,
  ) {}

  static async fromKubeconfigFile(path: string, clientOptions: KubeClientOptions = {}): Promise<KubeClient> {
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    return KubeClient.fromKubeConfig(kc, clientOptions);
  }

  static async fromKubeConfig(kc: KubeConfig, clientOptions: KubeClientOptions = {}): Promise<KubeClient> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    const options: RequestOptions = {};
    await kc.applyToHTTPSOptions(options);
    const agent = new Agent({
      keepAlive: true,
      maxSockets: 32,
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.cert ? { cert: options.cert } : {}),
      ...(options.key ? { key: options.key } : {}),
    });
    const client = new KubeClient(new URL(cluster.server), { headers: { ...(options.headers ?? {}) }, agent }, kc);
    client.onResponse = clientOptions.onResponse;
    return client;
  }

  private async headers(): Promise<Record<string, string>> {
    if (this.kubeConfig && Date.now() - this.credentialsRefreshedAt > CREDENTIAL_REFRESH_MS) {
      this.credentialsRefreshedAt = Date.now();
      const fresh: RequestOptions = {};
      await this.kubeConfig.applyToHTTPSOptions(fresh);
      this.baseOptions.headers = { ...(fresh.headers ?? {}) };
    }
    return { ...(this.baseOptions.headers as Record<string, string>), accept: 'application/json' };
  }

  /** Sends a request and returns the status code and decoded JSON body, whatever the status. */
  async raw<T = unknown>(spec: RequestSpec): Promise<{ status: number; body: T }> {
    const url = new URL(spec.path, this.server);
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
        { ...this.baseOptions, method: spec.method, headers, signal: spec.signal, timeout: spec.timeoutMs ?? 30_000 },
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
    const url = new URL(spec.path, this.server);
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers = await this.headers();
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { ...this.baseOptions, method: 'GET', headers, signal: spec.signal });
      req.on('response', (res) => {
        this.onResponse?.('WATCH', res.statusCode ?? 0);
        resolve(res);
      });
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    (this.baseOptions.agent as Agent | undefined)?.destroy();
  }
}
