// How the operator reaches the API server: a kubeconfig file, ~/.kube/config, or the in-cluster
// ServiceAccount. Read here rather than by @kubernetes/client-node, whose module graph (some 870
// modules, all of the generated API) costs the operator about 80 MB resident for the few fields it
// uses. The library is loaded only for credentials that need its plugins (`exec`, `auth-provider`),
// and then behaves exactly as before.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { parse } from 'yaml';

/** The server, its TLS material, and the headers that carry credentials. */
export interface ClusterAccess {
  server: URL;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Authorization and impersonation headers as of now (a rotating token is re-read). */
  headers(): Promise<Record<string, string>>;
}

/** How often credentials that can change (token files, plugin tokens) are read again; client-go does the same. */
export const CREDENTIAL_REFRESH_MS = 60_000;

/** Kubeconfig files larger than this are not kubeconfigs. */
const MAX_KUBECONFIG_BYTES = 4 * 1024 * 1024;

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The fields of a kubeconfig this reader honours (as @kubernetes/client-node did for the operator). */
interface KubeconfigFile {
  'current-context'?: string;
  clusters?: { name?: string; cluster?: { server?: string; 'certificate-authority'?: string; 'certificate-authority-data'?: string } }[];
  contexts?: { name?: string; context?: { cluster?: string; user?: string } }[];
  users?: {
    name?: string;
    user?: {
      token?: string;
      'token-file'?: string;
      'client-certificate'?: string;
      'client-certificate-data'?: string;
      'client-key'?: string;
      'client-key-data'?: string;
      as?: string;
      exec?: unknown;
      'auth-provider'?: unknown;
    };
  }[];
}

export interface KubeconfigSources {
  /** A kubeconfig file; without it ~/.kube/config, else the in-cluster ServiceAccount. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** Where the in-cluster token, CA and namespace are mounted. */
  serviceAccountDir?: string;
  now?: () => number;
}

function readBounded(path: string): Buffer {
  const bytes = readFileSync(path);
  if (bytes.length > MAX_KUBECONFIG_BYTES) throw new Error(`${path} is larger than ${MAX_KUBECONFIG_BYTES} bytes`);
  return bytes;
}

/** A file's contents, or base64 data inline; a relative path is relative to the kubeconfig's directory. */
function material(base: string, file: string | undefined, data: string | undefined): Buffer | undefined {
  if (file) return readBounded(isAbsolute(file) ? file : join(base, file));
  if (data) return Buffer.from(data, 'base64');
  return undefined;
}

function named<T extends { name?: string }>(list: T[] | undefined, name: string | undefined, what: string, file: string): T {
  const found = (list ?? []).find((e) => e.name === name);
  if (!found) throw new Error(`${file}: ${what} ${JSON.stringify(name)} not found`);
  return found;
}

/** A token read at most once per refresh interval. */
function tokenFrom(path: string, now: () => number): () => string {
  let token = '';
  let readAt = -Infinity;
  return () => {
    if (now() - readAt > CREDENTIAL_REFRESH_MS) {
      token = readBounded(path).toString('utf8').trim();
      readAt = now();
    }
    return token;
  };
}

/** The access a kubeconfig file describes; undefined when its user needs a credential plugin. */
export function accessFromKubeconfig(file: string, now: () => number = Date.now): ClusterAccess | undefined {
  const config = parse(readBounded(file).toString('utf8')) as KubeconfigFile | null;
  if (!config || typeof config !== 'object') throw new Error(`${file} is not a kubeconfig`);
  const base = dirname(file);
  const context = named(config.contexts, config['current-context'], 'context', file).context ?? {};
  const cluster = named(config.clusters, context.cluster, 'cluster', file).cluster ?? {};
  const user = named(config.users, context.user, 'user', file).user ?? {};
  if (user.exec || user['auth-provider']) return undefined;
  if (!cluster.server) throw new Error(`${file}: cluster ${context.cluster} has no server`);
  const cert = material(base, user['client-certificate'], user['client-certificate-data']);
  const key = material(base, user['client-key'], user['client-key-data']);
  const ca = material(base, cluster['certificate-authority'], cluster['certificate-authority-data']);
  const tokenFile = user['token-file'];
  const token = user.token ? () => user.token! : tokenFile ? tokenFrom(isAbsolute(tokenFile) ? tokenFile : join(base, tokenFile), now) : undefined;
  const impersonate = user.as;
  return {
    server: new URL(cluster.server.replace(/\/$/, '')),
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    headers: async () => ({
      ...(token ? { Authorization: `Bearer ${token()}` } : {}),
      ...(impersonate ? { 'Impersonate-User': impersonate } : {}),
    }),
  };
}

/** The Pod's own ServiceAccount: the token is projected and rotates, so it is re-read. */
export function inClusterAccess(env: NodeJS.ProcessEnv, dir: string, now: () => number = Date.now): ClusterAccess {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error('KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset: not in a cluster');
  const token = tokenFrom(join(dir, 'token'), now);
  token();
  return {
    server: new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`),
    ca: readBounded(join(dir, 'ca.crt')),
    headers: async () => ({ Authorization: `Bearer ${token()}` }),
  };
}

/** Access through @kubernetes/client-node's KubeConfig, which runs exec and auth-provider plugins. */
export async function accessFromKubeConfig(kc: KubeConfig, now: () => number = Date.now): Promise<ClusterAccess> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const options: { ca?: Buffer; cert?: Buffer; key?: Buffer; headers?: Record<string, string> } = {};
  await kc.applyToHTTPSOptions(options);
  let headers = { ...(options.headers ?? {}) };
  let refreshedAt = now();
  return {
    server: new URL(cluster.server),
    ...(options.ca ? { ca: options.ca } : {}),
    ...(options.cert ? { cert: options.cert } : {}),
    ...(options.key ? { key: options.key } : {}),
    headers: async () => {
      if (now() - refreshedAt > CREDENTIAL_REFRESH_MS) {
        refreshedAt = now();
        const fresh: { headers?: Record<string, string> } = {};
        await kc.applyToHTTPSOptions(fresh);
        headers = { ...(fresh.headers ?? {}) };
      }
      return { ...headers };
    },
  };
}

/**
 * The kubeconfig file given, else ~/.kube/config, else the in-cluster ServiceAccount (the
 * precedence of @kubernetes/client-node's default loading rules for one file).
 */
export async function loadClusterAccess(sources: KubeconfigSources = {}): Promise<ClusterAccess> {
  const env = sources.env ?? process.env;
  const now = sources.now ?? Date.now;
  const home = sources.home ?? homedir();
  const file = sources.file ?? (home && existsSync(join(home, '.kube', 'config')) ? join(home, '.kube', 'config') : undefined);
  if (!file) return inClusterAccess(env, sources.serviceAccountDir ?? SERVICE_ACCOUNT_DIR, now);
  const access = accessFromKubeconfig(file, now);
  if (access) return access;
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return accessFromKubeConfig(kc, now);
}
